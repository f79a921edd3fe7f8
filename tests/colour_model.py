"""A classifier whose right preprocessing is known by construction: it sorts
pictures by their mean colour, nearest prototype first, after a tanh (the
saturating first layer real networks have), with the prototypes placed where
one preprocessing puts the class colours. Fed that preprocessing it is
confident and tells the colours apart; fed another (a swapped channel order,
a wrong scale, no mean) it is not: too large an input saturates the tanh and
the colours run together, too small a one leaves only the biases.

The colours are chosen so that swapping red and blue gives colours that are
not classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from builders import IR_VERSION, OPSET
from guiapp.core.data.preprocess import PreprocessSpec, normalize

COLOURS = {
    "orange": (255, 140, 0),
    "chartreuse": (140, 255, 0),
    "pink": (255, 0, 140),
    "olive": (128, 128, 0),
    "brown": (150, 75, 0),
    "lavender": (200, 160, 255),
}


def colour_classifier(path: Path, spec: PreprocessSpec, sharpness: float = 6.0, softmax: bool = False, batch="N",
                      hw: int = 16, layout: str = "nchw") -> onnx.ModelProto:
    """logits_c = -sharpness * |x - p_c|^2 with x the mean of tanh(input) and
    p_c = tanh(class colour, normalized by ``spec``), up to a term shared by
    all classes: 2 s x.p_c - s |p_c|^2 (a MatMul and an Add)."""
    ref = spec if spec.layout != "auto" else PreprocessSpec(mean=spec.mean, std=spec.std, color=spec.color, layout="nhwc")
    pixels = np.array(list(COLOURS.values()), np.uint8)
    if spec.color == "bgr":
        pixels = pixels[:, ::-1]
    protos = normalize(pixels[:, None, None, :], PreprocessSpec(mean=ref.mean, std=ref.std, color=ref.color, layout="nhwc"))
    protos = np.tanh(protos.reshape(len(COLOURS), 3).astype(np.float64))
    weights = (2 * sharpness * protos.T).astype(np.float32)  # [3, C]
    bias = (-sharpness * (protos ** 2).sum(1)).astype(np.float32)  # [C]
    shape = [batch, 3, hw, hw] if layout == "nchw" else [batch, hw, hw, 3]
    axes = [2, 3] if layout == "nchw" else [1, 2]
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)
    out = "probabilities" if softmax else "logits"
    y = helper.make_tensor_value_info(out, TensorProto.FLOAT, [batch, len(COLOURS)])
    nodes = [
        helper.make_node("Tanh", ["image"], ["squashed"], name="squash"),
        helper.make_node("ReduceMean", ["squashed"], ["colour"], axes=axes, keepdims=0, name="mean_colour"),
        helper.make_node("MatMul", ["colour", "w"], ["proj"], name="project"),
        helper.make_node("Add", ["proj", "b"], ["logits"], name="bias"),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1, name="softmax"))
    graph = helper.make_graph(nodes, "colours", [x], [y],
                              initializer=[numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tests")
    model.ir_version = IR_VERSION
    onnx.save(model, str(path))
    return model


def colour_images(folder: Path, per_class: int = 6, seed: int = 0, size: int = 24) -> list[tuple[Path, int]]:
    """Noisy pictures of each class colour, in class-named sub-folders
    (``folder/<index>/...``); returns (path, class index)."""
    rng = np.random.default_rng(seed)
    out = []
    for c, rgb in enumerate(COLOURS.values()):
        (folder / str(c)).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.normal(0, 18, (size, size, 3))
            shade = np.linspace(-15, 15, size)[None, :, None]
            img = np.clip(np.array(rgb, np.float64) + noise + shade, 0, 255).astype(np.uint8)
            p = folder / str(c) / f"{c}_{i}.png"
            Image.fromarray(img, "RGB").save(p)
            out.append((p, c))
    return out
