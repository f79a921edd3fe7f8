"""Small ONNX models and image folders built by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image, ImageDraw

IR_VERSION = 8  # onnxruntime loads IR <= 13; the project rule is <= 10
OPSET = 13


def _conv_weights(rng, cout, cin, k=3):
    return (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)


def convnet(
    path: Path | None = None,
    *,
    channels: int = 3,
    hw: tuple = (32, 32),
    batch="N",
    layout: str = "nchw",
    classes: int = 4,
    constant_weights: bool = False,
    opset: int = OPSET,
    ir_version: int = IR_VERSION,
    metadata: dict | None = None,
    seed: int = 0,
    width: int = 8,
) -> onnx.ModelProto:
    """A small conv classifier: 2 convs + ReLU, global pool, Gemm to ``classes``.

    ``constant_weights`` stores the weights as Constant nodes (as some
    exporters do) instead of initializers.
    """
    rng = np.random.default_rng(seed)
    h, w = hw
    shape = [batch, channels, h, w] if layout == "nchw" else [batch, h, w, channels]
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])
    tensors = {
        "w1": _conv_weights(rng, width, channels),
        "b1": (rng.standard_normal(width) * 0.1).astype(np.float32),
        "w2": _conv_weights(rng, 2 * width, width),
        "b2": (rng.standard_normal(2 * width) * 0.1).astype(np.float32),
        "wf": (rng.standard_normal((classes, 2 * width)) * 0.5).astype(np.float32),
        "bf": (rng.standard_normal(classes) * 0.1).astype(np.float32),
    }
    nodes = []
    src = "image"
    if layout == "nhwc":
        nodes.append(helper.make_node("Transpose", ["image"], ["image_nchw"], perm=[0, 3, 1, 2], name="to_nchw"))
        src = "image_nchw"
    nodes += [
        helper.make_node("Conv", [src, "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], transB=1, name="fc"),
    ]
    if constant_weights:
        consts = [
            helper.make_node("Constant", [], [k], value=numpy_helper.from_array(v, k), name=f"const_{k}")
            for k, v in tensors.items()
        ]
        nodes = consts + nodes
        inits = []
    else:
        inits = [numpy_helper.from_array(v, k) for k, v in tensors.items()]
    graph = helper.make_graph(nodes, "convnet", [x], [y], initializer=inits, doc_string="graph doc")
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="tests", producer_version="1.2"
    )
    model.ir_version = ir_version
    if ir_version < 4:  # IR 3 lists every initializer among the graph inputs
        for t in inits:
            model.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    model.doc_string = "model doc"
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=v)
    if path is not None:
        onnx.save(model, str(path))
    return model


def opset8_convnet(path: Path) -> onnx.ModelProto:
    """Like mnist.onnx: opset 8, IR 3, batch fixed to 1, one gray channel."""
    return convnet(path, channels=1, hw=(16, 16), batch=1, opset=8, ir_version=3)


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def picture(rng: np.random.Generator, size=(48, 40)) -> Image.Image:
    """A structured random picture: a gradient background and a few shapes."""
    w, h = size
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, w)[None, :, None]
    bg = (c0 * (1 - t) + c1 * t) * np.ones((h, 1, 1))
    img = Image.fromarray(bg.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
        x1, y1 = x0 + int(rng.integers(6, w // 2)), y0 + int(rng.integers(6, h // 2))
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=color)
    return img


def image_folder(folder: Path, n: int, seed: int = 0, size=(48, 40), ext: str = ".png", prefix: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        p = folder / f"{prefix}_{i:03d}{ext}"
        picture(rng, size).save(p)
        out.append(p)
    return out


def deepnet(path: Path, depth: int = 30, channels: int = 8, hw: int = 16, seed: int = 0) -> onnx.ModelProto:
    """A chain of ``depth`` Conv+Relu layers: many tensors to calibrate."""
    rng = np.random.default_rng(seed)
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, hw, hw])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", channels, hw, hw])
    nodes, inits, src, cin = [], [], "image", 3
    for i in range(depth):
        inits.append(numpy_helper.from_array(_conv_weights(rng, channels, cin), f"w{i}"))
        out = "out" if i == depth - 1 else f"r{i}"
        nodes.append(helper.make_node("Conv", [src, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1], name=f"conv{i}"))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [out], name=f"relu{i}"))
        src, cin = out, channels
    model = helper.make_model(helper.make_graph(nodes, "deep", [x], [y], inits), opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.save(model, str(path))
    return model


def two_input_net(path: Path, scale_shape=("N", 1)) -> onnx.ModelProto:
    """convnet whose logits are multiplied by a second input, `scale`."""
    m = convnet()
    m.graph.input.append(helper.make_tensor_value_info("scale", TensorProto.FLOAT, list(scale_shape)))
    m.graph.node[-1].output[0] = "raw_logits"
    m.graph.node.append(helper.make_node("Mul", ["raw_logits", "scale"], ["logits"], name="scale_mul"))
    onnx.save(m, str(path))
    return m
