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


# ---------------------------------------------------------------- heads that say more than boxes


def _conv(nodes, inits, rng, src: str, out: str, cin: int, cout: int, k: int = 1, stride: int = 1, scale: float = 1.0,
          bias=None) -> None:
    """One Conv (``k`` x ``k``, same padding) from ``src`` to ``out``, weights drawn from ``rng``."""
    inits.append(numpy_helper.from_array(_conv_weights(rng, cout, cin, k) * scale, f"w_{out}"))
    ins = [src, f"w_{out}"]
    if bias is not None:
        inits.append(numpy_helper.from_array(np.broadcast_to(np.asarray(bias, np.float32), (cout,)).copy(), f"b_{out}"))
        ins.append(f"b_{out}")
    p = k // 2
    nodes.append(helper.make_node("Conv", ins, [out], pads=[p, p, p, p], strides=[stride, stride], name=f"conv_{out}"))


def centerface_net(path: Path | None = None, hw: int = 64, seed: int = 0) -> onnx.ModelProto:
    """CenterFace-like: a face heatmap after a sigmoid [N, 1, H/4, W/4], log
    sizes [N, 2, ...], offsets [N, 2, ...] and 5 landmarks [N, 10, ...] (in
    box units), named by numbers as CenterFace's own export names them."""
    rng = np.random.default_rng(seed)
    nodes, inits = _backbone(rng, hw)
    _conv(nodes, inits, rng, "f", "heat_logit", 8, 1, k=3, scale=3.0, bias=-2.0)
    nodes.append(helper.make_node("Sigmoid", ["heat_logit"], ["537"], name="heat_sigmoid"))
    _conv(nodes, inits, rng, "f", "538", 8, 2, scale=0.3, bias=1.6)  # log sizes: about exp(1.6) x 4 = 20 px
    _conv(nodes, inits, rng, "f", "539", 8, 2, scale=0.2, bias=0.0)
    _conv(nodes, inits, rng, "f", "540", 8, 10, scale=0.2, bias=0.5)  # landmarks within the box
    g = hw // 4
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, hw, hw])
    ys = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", c, g, g]) for n, c in (("537", 1), ("538", 2), ("539", 2), ("540", 10))]
    return _model(nodes, inits, [x], ys, path, "centerface_like")


def _grid_rows(hw: int, rows: list[tuple[float, float, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Scale and shift [1, R, A] over the anchors of strides 8, 16, 32 (row by
    row, finest first): row r is ``sigmoid * a * stride + (grid + b) * stride``
    for rows (a, b, axis) with axis "x"/"y", and ``sigmoid * a + b`` for axis ""."""
    scale, shift = [], []
    for s in (8, 16, 32):
        g = hw // s
        gy, gx = np.divmod(np.arange(g * g), g)
        sc, sh = np.empty((len(rows), g * g)), np.empty((len(rows), g * g))
        for r, (a, b, axis) in enumerate(rows):
            grid = gx if axis == "x" else gy if axis == "y" else None
            sc[r] = a * s if grid is not None else a
            sh[r] = (grid + b) * s if grid is not None else b
        scale.append(sc)
        shift.append(sh)
    return np.concatenate(scale, 1)[None].astype(np.float32), np.concatenate(shift, 1)[None].astype(np.float32)


def _yolo_levels(rng, hw: int, branches: list[tuple[str, int, float, object]]):
    """Backbone to strides 4, 8, 16, 32 ('f', 'f8', 'f16', 'f32'); per
    branch (name, rows, weight scale, bias), 1x1 convs on the strides 8, 16
    and 32 reshaped and joined along the anchors: '<name>_raw' [N, rows, A]."""
    nodes, inits = _backbone(rng, hw)
    for src, out in (("f", "f8"), ("f8", "f16"), ("f16", "f32")):
        _conv(nodes, inits, rng, src, f"{out}_c", 8, 8, k=3, stride=2)
        nodes.append(helper.make_node("Relu", [f"{out}_c"], [out], name=f"relu_{out}"))
    for name, rows, scale, bias in branches:
        inits.append(numpy_helper.from_array(np.array([0, rows, -1], np.int64), f"shape_{name}"))
        flat = []
        for level in ("f8", "f16", "f32"):
            _conv(nodes, inits, rng, level, f"{name}_{level}", 8, rows, scale=scale, bias=bias)
            nodes.append(helper.make_node("Reshape", [f"{name}_{level}", f"shape_{name}"], [f"{name}_{level}_flat"],
                                          name=f"reshape_{name}_{level}"))
            flat.append(f"{name}_{level}_flat")
        nodes.append(helper.make_node("Concat", flat, [f"{name}_raw"], axis=2, name=f"levels_{name}"))
    return nodes, inits


def _scaled(nodes, inits, name: str, hw: int, rows: list[tuple[float, float, str]]) -> str:
    """'<name>_raw' through a sigmoid, then scaled and shifted row by row (:func:`_grid_rows`)."""
    scale, shift = _grid_rows(hw, rows)
    inits += [numpy_helper.from_array(scale, f"scale_{name}"), numpy_helper.from_array(shift, f"shift_{name}")]
    nodes += [helper.make_node("Sigmoid", [f"{name}_raw"], [f"{name}_unit"], name=f"sigmoid_{name}"),
              helper.make_node("Mul", [f"{name}_unit", f"scale_{name}"], [f"{name}_scaled"], name=f"scale_{name}"),
              helper.make_node("Add", [f"{name}_scaled", f"shift_{name}"], [name], name=f"shift_{name}")]
    return name


BOX_ROWS = [(2.0, -0.5, "x"), (2.0, -0.5, "y"), (3.0, 0.5, ""), (3.0, 0.5, "")]  # cx, cy near the cell; w, h in strides


def yolo_pose_net(path: Path | None = None, hw: int = 64, points: int = 17, seed: int = 0) -> onnx.ModelProto:
    """YOLOv8-pose-like: one output [N, 4 + 1 + points*3, A] over strides 8,
    16, 32 (A = 84 at 64x64): boxes (cx, cy, w, h) and keypoints (x, y) in
    input pixels, a sigmoid person score and keypoint visibilities, with
    Ultralytics' metadata (task=pose, kpt_shape)."""
    rng = np.random.default_rng(seed)
    vis_bias = np.tile(np.array([0.0, 0.0, 1.5], np.float32), points)  # most keypoints visible
    nodes, inits = _yolo_levels(rng, hw, [("box", 4, 1.0, 0.0), ("cls", 1, 2.0, -0.3), ("kpt", points * 3, 1.0, vis_bias)])
    box = _scaled(nodes, inits, "box", hw, BOX_ROWS)
    nodes.append(helper.make_node("Sigmoid", ["cls_raw"], ["cls"], name="sigmoid_cls"))
    kpt = _scaled(nodes, inits, "kpt", hw, [(4.0, -1.5, "x"), (4.0, -1.5, "y"), (1.0, 0.0, "")] * points)
    nodes.append(helper.make_node("Concat", [box, "cls", kpt], ["output0"], axis=1, name="head_concat"))
    a = sum((hw // s) ** 2 for s in (8, 16, 32))
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, hw, hw])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 5 + points * 3, a])
    model = _model(nodes, inits, [x], [y], None, "yolo_pose_like")
    helper.set_model_props(model, {"author": "Ultralytics", "version": "8.3.40", "task": "pose", "stride": "32", "batch": "1",
                                   "imgsz": f"[{hw}, {hw}]", "names": "{0: 'person'}", "kpt_shape": f"[{points}, 3]"})
    if path is not None:
        onnx.save(model, str(path))
    return model


def yolo_seg_net(path: Path | None = None, hw: int = 64, classes: int = 2, masks: int = 32, seed: int = 0) -> onnx.ModelProto:
    """YOLOv8-seg-like pair: output0 [N, 4 + classes + masks, A] (boxes in
    input pixels, sigmoid scores, raw mask coefficients) and output1
    [N, masks, H/4, W/4] (the prototype masks). No metadata: the shapes say it."""
    rng = np.random.default_rng(seed)
    nodes, inits = _yolo_levels(rng, hw, [("box", 4, 1.0, 0.0), ("cls", classes, 2.0, -0.5), ("coef", masks, 1.0, 0.0)])
    box = _scaled(nodes, inits, "box", hw, BOX_ROWS)
    nodes.append(helper.make_node("Sigmoid", ["cls_raw"], ["cls"], name="sigmoid_cls"))
    nodes.append(helper.make_node("Concat", [box, "cls", "coef_raw"], ["output0"], axis=1, name="head_concat"))
    _conv(nodes, inits, rng, "f", "proto_c", 8, masks, k=3)
    nodes.append(helper.make_node("Relu", ["proto_c"], ["output1"], name="proto_relu"))
    a = sum((hw // s) ** 2 for s in (8, 16, 32))
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, hw, hw])
    ys = [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 4 + classes + masks, a]),
          helper.make_tensor_value_info("output1", TensorProto.FLOAT, ["N", masks, hw // 4, hw // 4])]
    return _model(nodes, inits, [x], ys, path, "yolo_seg_like")
