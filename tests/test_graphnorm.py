"""Normalization inside the graph: the first nodes' arithmetic on the image,
with its values, on models built here."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper, numpy_helper

from builders import convnet, save
from guiapp.cli import main
from guiapp.core.model.graphnorm import graph_normalization
from guiapp.core.model.modelinfo import inspect_model
from guiapp.core.data.preprocess import preset
from guiapp.core.data.preview import build_preview, warnings_for
from PIL import Image


def prepend(model, steps, layout="nchw"):
    """Put ``steps`` (op, constant, constant first?) between the image input
    and the network; returns the model."""
    src = "image"
    nodes = []
    for i, (op, value, first) in enumerate(steps):
        name = f"k{i}"
        model.graph.initializer.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        out = f"n{i}"
        nodes.append(helper.make_node(op, [name, src] if first else [src, name], [out], name=f"norm{i}"))
        src = out
    for n in model.graph.node:
        for j, inp in enumerate(n.input):
            if inp == "image":
                n.input[j] = src
    for i, n in enumerate(nodes):
        model.graph.node.insert(i, n)
    return model


def gn_of(model, layout="nchw"):
    return graph_normalization(model, "image", layout, 3)


def test_scalar_sub_div_folds_to_mean_and_std():
    g = gn_of(prepend(convnet(), [("Sub", 127.5, False), ("Div", 127.5, False)]))
    assert g.ops == ("Sub", "Div")
    assert g.mean == pytest.approx((127.5,) * 3) and g.std == pytest.approx((127.5,) * 3)
    assert g.expects == "pixels" and g.preset == "raw"
    assert "Sub 127.5, then Div 127.5" in g.describe() and "mean 127.5, std 127.5" in g.describe()


def test_torchvision_in_the_graph_gives_the_imagenet_values_in_pixel_units():
    steps = [("Mul", 1 / 255, False),
             ("Sub", np.array([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1), False),
             ("Div", np.array([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1), False)]
    g = gn_of(prepend(convnet(), steps))
    assert g.mean == pytest.approx(preset("imagenet").mean, abs=1e-3)
    assert g.std == pytest.approx(preset("imagenet").std, abs=1e-3)
    assert g.preset == "raw"
    assert "(0.485, 0.456, 0.406)" in g.describe()


def test_constants_in_unit_scale_ask_for_the_unit_preset():
    g = gn_of(prepend(convnet(), [("Sub", 0.5, False), ("Div", 0.25, False)]))
    # In the graph input's own units: made for 0..1 images.
    assert g.mean == pytest.approx((0.5,) * 3) and g.std == pytest.approx((0.25,) * 3)
    assert g.expects == "unit" and g.preset == "unit"
    g = gn_of(prepend(convnet(), [("Sub", np.array([0.5, 0.4, 0.3]).reshape(1, 3, 1, 1), False)]))
    assert g.expects == "unit" and g.preset == "unit" and "unit preset" in g.advice()


def test_constant_first_operand_and_add_mul():
    g = gn_of(prepend(convnet(), [("Sub", 255.0, True), ("Mul", 2.0, False), ("Add", -1.0, False)]))
    # y = 2 (255 - x) - 1 = -2x + 509: std -0.5, mean 254.5
    assert g.std == pytest.approx((-0.5,) * 3) and g.mean == pytest.approx((254.5,) * 3)


def test_nhwc_constants_are_read_along_the_channel_axis():
    m = convnet(layout="nhwc")  # its first node is a Transpose to NCHW
    m = prepend(m, [("Sub", np.array([10.0, 20.0, 30.0]), False)])  # [3] broadcasts over the last (channel) axis
    g = gn_of(m, "nhwc")
    assert g.mean == pytest.approx((10.0, 20.0, 30.0)) and g.std == pytest.approx((1.0,) * 3)
    after = convnet(layout="nhwc")  # the same, after the Transpose: [1, 3, 1, 1]
    after.graph.initializer.append(numpy_helper.from_array(np.array([5.0, 6.0, 7.0], np.float32).reshape(1, 3, 1, 1), "mu"))
    after.graph.node.insert(1, helper.make_node("Sub", ["image_nchw", "mu"], ["centred"], name="sub"))
    after.graph.node[2].input[0] = "centred"
    assert gn_of(after, "nhwc").mean == pytest.approx((5.0, 6.0, 7.0))


def test_batchnorm_first_folds_its_statistics():
    m = convnet()
    bn = [np.array(v, np.float32) for v in ([2.0, 2.0, 2.0], [0.0, 1.0, 0.0], [100.0, 110.0, 120.0], [2500.0, 3600.0, 4900.0])]
    for name, v in zip(("g", "b", "mu", "var"), bn):
        m.graph.initializer.append(numpy_helper.from_array(v, name))
    m.graph.node.insert(0, helper.make_node("BatchNormalization", ["image", "g", "b", "mu", "var"], ["bn"], epsilon=0.0))
    m.graph.node[1].input[0] = "bn"
    g = gn_of(m)
    # y = 2 (x - mu) / sd + b: std sd / 2, mean mu - b * sd / 2
    assert g.std == pytest.approx((25.0, 30.0, 35.0)) and g.mean == pytest.approx((100.0, 80.0, 120.0))
    assert "BatchNormalization mean (100, 110, 120)" in g.describe()


def test_a_mean_image_is_reported_without_folding():
    m = prepend(convnet(), [("Sub", np.full((1, 3, 32, 32), 100.0), False)])
    g = gn_of(m)
    assert g.ops == ("Sub",) and g.mean is None and g.std is None
    assert "a constant of shape [1, 3, 32, 32]" in g.describe() and g.preset == "raw"


def test_no_normalization_and_non_constant_arithmetic_are_not_reported():
    assert gn_of(convnet()) is None
    m = convnet()
    m.graph.node.insert(0, helper.make_node("Mul", ["image", "image"], ["sq"]))  # x * x: not a constant
    m.graph.node[1].input[0] = "sq"
    assert gn_of(m) is None


def test_inspect_the_model_and_preview_page_say_so_with_the_values(tmp_path, capsys):
    path = save(prepend(convnet(), [("Sub", 127.5, False), ("Div", 127.5, False)]), tmp_path / "norm.onnx")
    info = inspect_model(path)
    assert info.input_normalization == ("Sub", "Div")
    assert info.graph_normalization.mean == pytest.approx((127.5,) * 3)
    assert any("normalizes its input itself: Sub 127.5, then Div 127.5" in n for n in info.notes)
    assert info.to_dict()["input_normalization"]["preset"] == "raw"
    assert main(["inspect", str(path)]) == 0
    assert "Note       The model normalizes its input itself: Sub 127.5" in capsys.readouterr().out
    assert main(["inspect", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input_normalization"]["mean"] == pytest.approx([127.5] * 3)
    img = Image.new("RGB", (40, 40), (200, 100, 50))
    for name, expected in (("imagenet", True), ("raw", False)):
        spec = preset(name).resolved("nchw", (32, 32))
        words = warnings_for(build_preview(img, spec), spec, name, info)
        assert any("Sub 127.5, then Div 127.5" in w and "raw preset" in w for w in words) is expected
