"""Convolution input channels padded to a multiple of four: the same outputs,
in a graph ONNX Runtime fuses as before."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from builders import convnet
from guiapp.core import run as pipeline
from guiapp.core.quantize.chanpad import pad_conv_channels
from guiapp.core.job import CalibrationSettings, EvalSettings, Job, QuantSettings
from guiapp.core.data.preprocess import preset


def quantize(model, calib, out, tmp_path, channels=3, **q):
    job = Job(
        model=model, output=out, preprocess=preset("imagenet" if channels == 3 else "unit", channels, resize="stretch"),
        calibration=CalibrationSettings(folders=(calib,), max_images=12, batch_size=4),
        quantization=QuantSettings(**q), evaluation=EvalSettings(latency_runs=2, max_images=8, per_layer_images=0),
        cache=tmp_path / f"stats{channels}.npz",
    )
    return pipeline.quantize(job, overwrite=True).report


def run(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def conv_input_channels(path):
    """Input channels of each convolution's weight, in graph order."""
    m = onnx.load(str(path))
    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    out = []
    for n in m.graph.node:
        if n.op_type == "Conv":
            out.append(init[producer[n.input[1]].input[0]].shape[1])
        elif n.op_type == "QLinearConv":
            out.append(init[n.input[3]].shape[1])
    return out


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
def test_padding_gives_the_same_outputs(tmp_path, model_path, calib_dir, fmt):
    plain, padded = tmp_path / "plain.onnx", tmp_path / "padded.onnx"
    quantize(model_path, calib_dir, plain, tmp_path, format=fmt, pad_channels=False)
    report = quantize(model_path, calib_dir, padded, tmp_path, format=fmt)
    assert conv_input_channels(plain) == [3, 8]
    assert conv_input_channels(padded) == [4, 8]  # only the RGB convolution needed it
    assert any("padded to a multiple of 4" in s for s in report["preparation"])
    x = np.random.default_rng(1).standard_normal((6, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(run(plain, x), run(padded, x))
    onnx.checker.check_model(onnx.load(str(padded)))


def test_ort_fuses_the_padded_graph_without_new_quantize_steps(tmp_path, model_path, calib_dir):
    out = tmp_path / "fused.onnx"
    quantize(model_path, calib_dir, out, tmp_path, ort_optimized=True)
    m = onnx.load(str(out))
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("QuantizeLinear") == 1 and "Pad" in ops  # the Pad works on uint8
    pad = next(n for n in m.graph.node if n.op_type == "Pad")
    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear")
    assert init[pad.input[2]] == init[q.input[2]]  # the pad value is the input's zero point: a dequantized 0


def test_gray_input_is_padded_too(tmp_path):
    from builders import image_folder

    model = tmp_path / "gray.onnx"
    convnet(model, channels=1, hw=(16, 16))
    calib = tmp_path / "gray_calib"
    image_folder(calib, 16, seed=3, size=(16, 16))
    plain, padded = tmp_path / "g0.onnx", tmp_path / "g1.onnx"
    quantize(model, calib, plain, tmp_path, channels=1, pad_channels=False)
    quantize(model, calib, padded, tmp_path, channels=1)
    assert conv_input_channels(padded)[0] == 4
    x = np.random.default_rng(2).random((3, 1, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(run(plain, x), run(padded, x))


def test_nothing_to_pad_leaves_the_model_alone(tmp_path, model_path, calib_dir):
    out = tmp_path / "q.onnx"
    quantize(model_path, calib_dir, out, tmp_path, pad_channels=False)
    m = onnx.load(str(out))
    assert pad_conv_channels(m, align=1) == []
    assert onnx.load(str(out)) == m
