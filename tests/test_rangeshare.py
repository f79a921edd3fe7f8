"""Concat inputs quantized with their Concat's range."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from builders import IR_VERSION, OPSET, image_folder
from guiapp.core import run as pipeline
from guiapp.core.job import CalibrationSettings, EvalSettings, Job, QuantSettings
from guiapp.core.data.preprocess import preset
from guiapp.core.quantize.rangeshare import share_concat_ranges


def graph(nodes, outputs=("y",)):
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)


def test_sole_reader_inputs_take_the_concat_range():
    m = graph([
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Neg", ["x"], ["b"]),
        helper.make_node("Concat", ["a", "b"], ["y"], axis=1),
    ])
    ranges = {"a": (0.0, 3.0), "b": (-1.0, 0.5), "y": (-1.0, 3.0), "x": (-1.0, 1.0)}
    out, n = share_concat_ranges(m, ranges)
    assert n == 2
    assert out["a"] == out["b"] == (-1.0, 3.0)
    assert out["x"] == (-1.0, 1.0) and ranges["a"] == (0.0, 3.0)  # the input dict is not modified


def test_inputs_read_elsewhere_or_model_outputs_keep_their_range():
    m = graph([
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Neg", ["x"], ["b"]),
        helper.make_node("Concat", ["a", "b"], ["y"], axis=1),
        helper.make_node("Abs", ["a"], ["z"]),  # a has another reader
    ], outputs=("y", "z", "b"))  # b is a model output
    ranges = {"a": (0.0, 3.0), "b": (-1.0, 0.5), "y": (-1.0, 3.0)}
    out, n = share_concat_ranges(m, ranges)
    assert n == 0 and out == ranges


def test_nested_concats_take_the_outer_range():
    m = graph([
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Neg", ["x"], ["b"]),
        helper.make_node("Concat", ["a", "b"], ["ab"], axis=1),
        helper.make_node("Abs", ["x"], ["c"]),
        helper.make_node("Concat", ["ab", "c"], ["y"], axis=1),
    ])
    ranges = {"a": (0.0, 3.0), "b": (-1.0, 2.0), "ab": (-1.0, 3.0), "c": (0.0, 4.0), "y": (-1.0, 4.0)}
    out, _ = share_concat_ranges(m, ranges)
    assert out["a"] == out["b"] == out["ab"] == out["c"] == (-1.0, 4.0)


def test_narrow_inputs_and_float_concats_keep_their_ranges():
    """A YOLO head's scores (0..1) beside box coordinates (0..320) keep their
    own range; a Concat kept in float ties nothing."""
    m = graph([
        helper.make_node("Relu", ["x"], ["boxes"]),
        helper.make_node("Sigmoid", ["x"], ["scores"]),
        helper.make_node("Concat", ["boxes", "scores"], ["y"], axis=1, name="head"),
    ])
    ranges = {"boxes": (0.0, 300.0), "scores": (0.0, 1.0), "y": (0.0, 320.0)}
    out, n = share_concat_ranges(m, ranges)
    assert n == 1 and out["boxes"] == (0.0, 320.0) and out["scores"] == (0.0, 1.0)
    out, n = share_concat_ranges(m, ranges, float_nodes={"head"})
    assert n == 0 and out == ranges


def fire_net(path):
    """A squeezenet-like Fire module: two convs of one input, concatenated."""
    rng = np.random.default_rng(0)

    def w(name, shape, scale):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["image", "w0"], ["s"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["s"], ["sr"]),
        helper.make_node("Conv", ["sr", "w1"], ["e1"], kernel_shape=[1, 1]),
        helper.make_node("Relu", ["e1"], ["e1r"]),
        helper.make_node("Conv", ["sr", "w3"], ["e3"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["e3"], ["e3r"]),
        helper.make_node("Concat", ["e1r", "e3r"], ["cat"], axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["logits"]),
    ]
    g = helper.make_graph(
        nodes, "fire", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 16])],
        [w("w0", (8, 3, 3, 3), 0.3), w("w1", (8, 8, 1, 1), 0.6), w("w3", (8, 8, 3, 3), 0.4)],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION), str(path))


def concat_scales(path):
    """(output scale, input scales) of each QLinearConcat in an ORT-optimized model."""
    m = onnx.load(str(path))
    init = {i.name: float(numpy_helper.to_array(i)) for i in m.graph.initializer if numpy_helper.to_array(i).size == 1}
    return [(init[n.input[0]], [init[n.input[i]] for i in range(3, len(n.input), 3)]) for n in m.graph.node
            if n.op_type == "QLinearConcat"]


@pytest.mark.parametrize("share", [True, False])
def test_pipeline_writes_concats_that_copy(tmp_path, share):
    model = tmp_path / "fire.onnx"
    fire_net(model)
    calib = tmp_path / "calib"
    image_folder(calib, 16, seed=2)
    out = tmp_path / "fire.int8.onnx"
    job = Job(model=model, output=out, preprocess=preset("imagenet", resize="stretch"),
              calibration=CalibrationSettings(folders=(calib,), max_images=8, batch_size=4),
              quantization=QuantSettings(share_concat_ranges=share, ort_optimized=True),
              evaluation=EvalSettings(latency_runs=2, max_images=8, per_layer_images=0))
    report = pipeline.quantize(job).report
    [(out_scale, in_scales)] = concat_scales(out)
    if share:
        assert in_scales == [out_scale, out_scale]  # a copy
        assert any("Concat input(s) quantized with their Concat's range" in s for s in report["preparation"])
    else:
        assert in_scales != [out_scale, out_scale]  # the branches' ranges differ (1x1 vs 3x3 convolutions)
    assert report["agreement"]["top1"] is not None
