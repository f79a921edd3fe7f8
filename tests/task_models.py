"""Small detector, dense and odd-output models built by the tests (onnx.helper),
shaped like real exporters' heads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from builders import IR_VERSION, OPSET, _conv_weights


def _model(nodes, inits, inputs, outputs, path: Path | None, name: str) -> onnx.ModelProto:
    model = helper.make_model(helper.make_graph(nodes, name, inputs, outputs, inits), opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    if path is not None:
        onnx.save(model, str(path))
    return model


def _backbone(rng, hw: int, width: int = 8):
    """image -> two stride-2 convs with ReLU: features 'f' at hw/4."""
    inits = [
        numpy_helper.from_array(_conv_weights(rng, width, 3), "bw1"),
        numpy_helper.from_array(_conv_weights(rng, width, width), "bw2"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "bw1"], ["bc1"], pads=[1, 1, 1, 1], strides=[2, 2], name="bconv1"),
        helper.make_node("Relu", ["bc1"], ["br1"], name="brelu1"),
        helper.make_node("Conv", ["br1", "bw2"], ["bc2"], pads=[1, 1, 1, 1], strides=[2, 2], name="bconv2"),
        helper.make_node("Relu", ["bc2"], ["f"], name="brelu2"),
    ]
    return nodes, inits


def _const(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def yolo_head_net(path: Path | None = None, classes: int = 2, box_scale: float = 300.0, transposed: bool = False,
                  hw: int = 32, seed: int = 0, cls_bias: float = -0.5) -> onnx.ModelProto:
    """A YOLOv8-like single output [N, 4+C, A] (or [N, A, 4+C] with ``transposed``):
    box values (cx, cy, w, h) up to ``box_scale`` concatenated with sigmoid
    class scores. One INT8 scale over both crushes the scores."""
    rng = np.random.default_rng(seed)
    nodes, inits = _backbone(rng, hw)
    a = (hw // 4) ** 2
    inits += [
        numpy_helper.from_array(_conv_weights(rng, 4, 8, 1), "wbox"),
        numpy_helper.from_array(_conv_weights(rng, classes, 8, 1) * 2, "wcls"),
        _const("bcls", np.full(classes, cls_bias, np.float32)),
        _const("scale", np.array(box_scale, np.float32)),
        _const("shape_box", np.array([0, 4, a], np.int64)),
        _const("shape_cls", np.array([0, classes, a], np.int64)),
    ]
    nodes += [
        helper.make_node("Conv", ["f", "wbox"], ["box_logit"], name="box_conv"),
        helper.make_node("Sigmoid", ["box_logit"], ["box_unit"], name="box_sigmoid"),
        helper.make_node("Mul", ["box_unit", "scale"], ["box_px"], name="box_scale"),
        helper.make_node("Reshape", ["box_px", "shape_box"], ["box_flat"], name="box_reshape"),
        helper.make_node("Conv", ["f", "wcls", "bcls"], ["cls_logit"], name="cls_conv"),
        helper.make_node("Sigmoid", ["cls_logit"], ["cls_prob"], name="cls_sigmoid"),
        helper.make_node("Reshape", ["cls_prob", "shape_cls"], ["cls_flat"], name="cls_reshape"),
        helper.make_node("Concat", ["box_flat", "cls_flat"], ["joined" if transposed else "output0"], axis=1, name="head_concat"),
    ]
    shape = ["N", 4 + classes, a]
    if transposed:
        nodes.append(helper.make_node("Transpose", ["joined"], ["output0"], perm=[0, 2, 1], name="head_transpose"))
        shape = ["N", a, 4 + classes]
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, hw, hw])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, shape)
    return _model(nodes, inits, [x], [y], path, "yolo_head")


def ssd_pair_net(path: Path | None = None, classes: int = 2, hw: int = 32, seed: int = 0) -> onnx.ModelProto:
    """UltraFace-like: scores [N, A, C] after a softmax (class 0 = background)
    and boxes [N, A, 4] as x1, y1, x2, y2 in 0..1."""
    rng = np.random.default_rng(seed)
    nodes, inits = _backbone(rng, hw)
    a = (hw // 4) ** 2
    inits += [
        numpy_helper.from_array(_conv_weights(rng, classes, 8, 1) * 3, "wcls"),
        numpy_helper.from_array(_conv_weights(rng, 4, 8, 1), "wbox"),
        _const("shape_cls", np.array([0, classes, a], np.int64)),
        _const("shape_box", np.array([0, 4, a], np.int64)),
        _const("half", np.array(0.5, np.float32)),
    ]
    nodes += [
        helper.make_node("Conv", ["f", "wcls"], ["cls_map"], name="cls_conv"),
        helper.make_node("Reshape", ["cls_map", "shape_cls"], ["cls_ca"], name="cls_reshape"),
        helper.make_node("Transpose", ["cls_ca"], ["cls_ac"], perm=[0, 2, 1], name="cls_transpose"),
        helper.make_node("Softmax", ["cls_ac"], ["scores"], axis=2, name="cls_softmax"),
        helper.make_node("Conv", ["f", "wbox"], ["box_map"], name="box_conv"),
        helper.make_node("Sigmoid", ["box_map"], ["box_unit"], name="box_sigmoid"),
        helper.make_node("Reshape", ["box_unit", "shape_box"], ["box_ca"], name="box_reshape"),
        helper.make_node("Transpose", ["box_ca"], ["box_raw"], perm=[0, 2, 1], name="box_transpose"),
        helper.make_node("Split", ["box_raw"], ["xy", "wh"], axis=2, split=[2, 2], name="box_split"),
        helper.make_node("Mul", ["wh", "half"], ["half_wh"], name="box_half"),
        helper.make_node("Sub", ["xy", "half_wh"], ["x1y1"], name="box_sub"),
        helper.make_node("Add", ["xy", "half_wh"], ["x2y2"], name="box_add"),
        helper.make_node("Concat", ["x1y1", "x2y2"], ["boxes"], axis=2, name="box_concat"),
    ]
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, hw, hw])
    ys = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", a, classes]),
          helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", a, 4])]
    model = _model(nodes, inits, [x], ys, None, "ssd_pair")
    # Split with a 'split' attribute is opset < 13; give it as an input instead.
    split = next(n for n in model.graph.node if n.op_type == "Split")
    del split.attribute[:]
    split.attribute.append(helper.make_attribute("axis", 2))
    split.input.append("split_sizes")
    model.graph.initializer.append(_const("split_sizes", np.array([2, 2], np.int64)))
    if path is not None:
        onnx.save(model, str(path))
    return model


def mask_net(path: Path | None = None, hw: int = 32, seed: int = 0) -> onnx.ModelProto:
    """A text-detector-like probability map [N, 1, H, W] after a sigmoid."""
    rng = np.random.default_rng(seed)
    nodes, inits = _backbone(rng, hw)
    inits += [
        numpy_helper.from_array(_conv_weights(rng, 1, 8, 1) * 3, "wm"),
        _const("bm", np.array([-0.5], np.float32)),
        _const("scales", np.array([1, 1, 4, 4], np.float32)),
    ]
    nodes += [
        helper.make_node("Conv", ["f", "wm", "bm"], ["logit_small"], name="mask_conv"),
        helper.make_node("Resize", ["logit_small", "", "scales"], ["logit"], mode="linear", name="mask_up"),
        helper.make_node("Sigmoid", ["logit"], ["prob"], name="mask_sigmoid"),
    ]
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, hw, hw])
    y = helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 1, hw, hw])
    return _model(nodes, inits, [x], [y], path, "mask")


def outputs_only(shapes: dict[str, list], hw: int = 32) -> onnx.ModelProto:
    """A model whose outputs have the given declared shapes (for task
    detection, which reads declarations only)."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, hw, hw])
    nodes, ys = [], []
    for name, shape in shapes.items():
        nodes.append(helper.make_node("Identity", ["image"], [name], name=f"id_{name}"))
        ys.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    return _model(nodes, [], [x], ys, None, "outputs_only")
