"""The AMX form of wide pointwise convolutions (guiapp.core.quantize.fastform):
the rewrite changes which ONNX Runtime kernel runs, never a number. Models are
built here with onnx.helper; behaviour only, no timing."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from builders import IR_VERSION, OPSET, image_folder
from guiapp.core import run as pipeline
from guiapp.core.data.preprocess import preset
from guiapp.core.evaluate.cpu import CpuInfo
from guiapp.core.job import CalibrationSettings, EvalSettings, Job, QuantSettings
from guiapp.core.quantize.fastform import AMX_MIN_INPUT_CHANNELS, amx_int8, gemm_pointwise
from guiapp.core.quantize.outputform import apply_output_form
from guiapp.core.targets import ortflow

WIDE = 48  # input channels of the "wide" pointwise convolutions in the small models (min_channels=32 there)


class Qdq:
    """A QDQ graph written the way ONNX Runtime's quantizer writes it: uint8
    activations, per-channel int8 weights with zero point 0, int32 biases."""

    def __init__(self, channels: int, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits = [], []
        self.x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, 6, 6])
        self._const("s_act", np.array(0.05, np.float32))
        self._const("z_act", np.array(128, np.uint8))
        self.nodes.append(helper.make_node("QuantizeLinear", ["x", "s_act", "z_act"], ["t0_q"]))
        self.cur, self.n, self.channels_in = "t0", 0, channels

    def _const(self, name, value):
        self.inits.append(numpy_helper.from_array(value, name))

    def weights(self, name, cout, cin, k, low=-127):
        q = self.rng.integers(low, 128, (cout, cin, k, k)).astype(np.int8)
        scale = (self.rng.random(cout) * 0.01 + 0.001).astype(np.float32)
        self._const(f"{name}_q", q)
        self._const(f"{name}_s", scale)
        self._const(f"{name}_z", np.zeros(cout, np.int8))
        self.nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [f"{name}_dq"], axis=0))
        return f"{name}_dq", scale

    def conv(self, cout, k=1, group=1, w=None, low=-127):
        """A convolution from the current tensor; ``w`` reuses another's
        (dequantized weights, scales). Returns its weights."""
        i = self.n = self.n + 1
        w = w or self.weights(f"w{i}", cout, self.channels_in // group, k, low)
        self._const(f"b{i}_q", self.rng.integers(-500, 500, cout).astype(np.int32))
        self._const(f"b{i}_s", (0.05 * w[1]).astype(np.float32))  # input scale x weight scale, as the quantizer writes it
        self.nodes += [
            helper.make_node("DequantizeLinear", [f"{self.cur}_q", "s_act", "z_act"], [f"{self.cur}_dq"]),
            helper.make_node("DequantizeLinear", [f"b{i}_q", f"b{i}_s"], [f"b{i}_dq"], axis=0),
            helper.make_node("Conv", [f"{self.cur}_dq", w[0], f"b{i}_dq"], [f"t{i}"], name=f"conv{i}", group=group,
                             kernel_shape=[k, k], pads=[k // 2] * 4),
            helper.make_node("QuantizeLinear", [f"t{i}", "s_act", "z_act"], [f"t{i}_q"]),
        ]
        self.cur, self.channels_in = f"t{i}", cout
        return w

    def model(self) -> onnx.ModelProto:
        self.nodes.append(helper.make_node("DequantizeLinear", [f"{self.cur}_q", "s_act", "z_act"], ["y"]))
        g = helper.make_graph(self.nodes, "qdq", [self.x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "C", "H", "W"])],
                              self.inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)


def mixed_qdq() -> onnx.ModelProto:
    """Wide and narrow pointwise convolutions, a 3x3, a depthwise, weights
    reaching -128, and weights two convolutions share."""
    b = Qdq(WIDE)
    b.conv(WIDE)  # conv1: wide pointwise -> rewritten
    b.conv(WIDE, k=3)  # conv2: not pointwise
    b.conv(WIDE, k=3, group=WIDE)  # conv3: depthwise
    b.conv(16)  # conv4: wide pointwise -> rewritten
    b.conv(WIDE)  # conv5: only 16 input channels
    b.conv(WIDE, low=-128)  # conv6: a weight at -128 has no q - 1
    shared = b.conv(WIDE)  # conv7 and conv8 read the same weights
    b.conv(WIDE, w=shared)
    return b.model()


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


def dequantized(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every DequantizeLinear of an initializer, as the float numbers it gives."""
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in init and len(n.input) > 2:
            q, s, z = (init[i] for i in n.input[:3])
            shape = (-1,) + (1,) * (q.ndim - 1)
            out[n.output[0]] = (q.astype(np.int32) - z.astype(np.int32).reshape(shape)) * s.reshape(shape)
    return out


def test_only_wide_symmetric_pointwise_weights_read_once_are_rewritten():
    m = mixed_qdq()
    before = onnx.ModelProto()
    before.CopyFrom(m)
    assert gemm_pointwise(m, min_channels=32) == ["conv1", "conv4"]
    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    old = {i.name: numpy_helper.to_array(i) for i in before.graph.initializer}
    for i in (1, 4):
        assert (init[f"w{i}_z"] == -1).all() and init[f"w{i}_z"].dtype == np.int8
        np.testing.assert_array_equal(init[f"w{i}_q"].astype(np.int16), old[f"w{i}_q"].astype(np.int16) - 1)
    for name in ("w2_q", "w3_q", "w5_q", "w6_q", "w7_q"):
        np.testing.assert_array_equal(init[name], old[name])
    # The numbers the weights stand for are the same, bit for bit.
    a, b = dequantized(before), dequantized(m)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_rewritten_qdq_model_loads_and_gives_bit_identical_outputs():
    m = mixed_qdq()
    x = np.random.default_rng(1).standard_normal((3, WIDE, 6, 6)).astype(np.float32) * 3
    expected = run(m, x)
    assert gemm_pointwise(m, min_channels=32)
    onnx.checker.check_model(m)
    # The symmetric kernel and the GEMM path compute the same integer sums and
    # requantize them the same way: not one quantization step apart, equal.
    np.testing.assert_array_equal(run(m, x), expected)


def test_default_threshold_at_real_sizes():
    b = Qdq(AMX_MIN_INPUT_CHANNELS, seed=2)
    b.conv(AMX_MIN_INPUT_CHANNELS)  # 320 -> 320: rewritten
    b.conv(64)  # 320 -> 64: rewritten
    b.conv(96)  # 64 input channels: kept
    m = b.model()
    x = np.random.default_rng(3).standard_normal((1, AMX_MIN_INPUT_CHANNELS, 6, 6)).astype(np.float32)
    expected = run(m, x)
    assert gemm_pointwise(m) == ["conv1", "conv2"]
    np.testing.assert_array_equal(run(m, x), expected)


def qlinear_model(cin: int, cout: int) -> onnx.ModelProto:
    """The QOperator form: QuantizeLinear -> QLinearConv (1x1) -> DequantizeLinear."""
    rng = np.random.default_rng(4)
    inits = [numpy_helper.from_array(v, n) for n, v in {
        "xs": np.array(0.05, np.float32), "xz": np.array(128, np.uint8),
        "w": rng.integers(-127, 128, (cout, cin, 1, 1)).astype(np.int8),
        "ws": (rng.random(cout) * 0.01 + 0.001).astype(np.float32), "wz": np.zeros(cout, np.int8),
        "ys": np.array(0.2, np.float32), "yz": np.array(120, np.uint8),
        "b": rng.integers(-500, 500, cout).astype(np.int32)}.items()]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("QLinearConv", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["yq"], name="qconv",
                              kernel_shape=[1, 1]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]
    g = helper.make_graph(nodes, "qop", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", cin, 5, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "C", "H", "W"])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)


def test_qoperator_qlinearconv_is_rewritten_with_identical_outputs():
    m = qlinear_model(WIDE, 24)
    x = np.random.default_rng(5).standard_normal((2, WIDE, 5, 5)).astype(np.float32) * 3
    expected = run(m, x)
    assert gemm_pointwise(m, min_channels=32) == ["qconv"]
    np.testing.assert_array_equal(run(m, x), expected)
    assert gemm_pointwise(qlinear_model(16, 24), min_channels=32) == []


def test_amx_is_read_from_the_cpu_flags():
    def cpu(*flags):
        return CpuInfo("test", frozenset(flags), 2)

    assert amx_int8(cpu("avx512_vnni", "amx_int8", "amx_tile"))
    assert not amx_int8(cpu("avx512_vnni", "avx_vnni"))  # AMD EPYC: VNNI, no AMX
    assert not amx_int8(cpu("asimddp"))
    assert not amx_int8(CpuInfo("unknown", None, 2))


def test_output_form_notes_the_rewrite_and_keeps_outputs(tmp_path):
    b = Qdq(AMX_MIN_INPUT_CHANNELS, seed=6)
    b.conv(32)
    src = tmp_path / "q.onnx"
    onnx.save(b.model(), str(src))
    plain, amx = tmp_path / "plain.onnx", tmp_path / "amx.onnx"
    assert not any("AMX" in n for n in apply_output_form(src, plain, True, False, False))
    notes = apply_output_form(src, amx, True, False, True, amx_pointwise=True)
    assert any("1 pointwise convolution(s)" in n and "AMX" in n for n in notes)
    x = np.random.default_rng(7).standard_normal((2, AMX_MIN_INPUT_CHANNELS, 6, 6)).astype(np.float32)
    s = ort.InferenceSession(str(amx), providers=["CPUExecutionProvider"])  # the ONNX Runtime-optimized form
    np.testing.assert_array_equal(s.run(None, {"x": x})[0], run(onnx.load(str(plain)), x))


def wide_net(path):
    """A float classifier with one pointwise convolution wide enough for the AMX form."""
    rng = np.random.default_rng(8)
    w1 = (rng.standard_normal((AMX_MIN_INPUT_CHANNELS, 3, 3, 3)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((16, AMX_MIN_INPUT_CHANNELS, 1, 1)) * 0.05).astype(np.float32)
    w3 = (rng.standard_normal((4, 16)) * 0.3).astype(np.float32)
    nodes = [helper.make_node("Conv", ["image", "w1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "w3"], ["logits"], transB=1)]
    g = helper.make_graph(nodes, "wide", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 16, 16])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
                          [numpy_helper.from_array(v, n) for n, v in {"w1": w1, "w2": w2, "w3": w3}.items()])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION), str(path))
    return path


def zero_points(path) -> set[int]:
    m = onnx.load(str(path))
    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    return {int(v) for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in init
            and init[n.input[0]].dtype == np.int8 and init[n.input[0]].ndim == 4 for v in np.unique(init[n.input[2]])}


@pytest.mark.parametrize("flags, q, rewritten", [
    ({"avx512_vnni", "amx_int8", "amx_tile"}, {}, True),
    ({"avx512_vnni", "avx_vnni"}, {}, False),  # no AMX
    ({"avx512_vnni", "amx_int8", "amx_tile"}, {"pad_channels": False}, False),  # the form for other runtimes
    ({"avx512_vnni", "amx_int8", "amx_tile"}, {"tensorrt_form": True}, False),  # TensorRT wants zero points of 0
])
def test_the_onnxruntime_flow_applies_the_form_on_amx_cpus_only(tmp_path, monkeypatch, flags, q, rewritten):
    calib = tmp_path / "calib"
    image_folder(calib, 8, seed=3)
    monkeypatch.setattr(ortflow, "current_cpu", lambda: CpuInfo("test", frozenset(flags), 2))
    job = Job(model=wide_net(tmp_path / "wide.onnx"), output=tmp_path / "out.onnx", preprocess=preset("imagenet", resize="stretch"),
              calibration=CalibrationSettings(folders=(calib,), max_images=8, batch_size=4),
              quantization=replace(QuantSettings(), **q), evaluation=EvalSettings(latency_runs=2, max_images=8, per_layer_images=0))
    report = pipeline.quantize(job, overwrite=True).report
    noted = any("AMX" in s for s in report["preparation"])
    assert noted == rewritten
    if not q.get("tensorrt_form"):  # that form keeps float weights: no int8 initializers to look at
        assert (-1 in zero_points(tmp_path / "out.onnx")) == rewritten


@pytest.mark.realmodels
def test_mobilenetv2_top1_unchanged_by_the_amx_form(assets, tmp_path, monkeypatch):
    """The app's INT8 MobileNetV2 with and without the rewrite: the same
    prediction on every one of 800 photos (the rewrite is exact), whatever
    this machine's CPU."""
    import json

    from guiapp.core.data.dataset import labels_from_csv, list_images
    from guiapp.core.data.preprocess import PreprocessSpec, load_tensor

    entry = json.loads((assets / "models" / "specs.json").read_text())["mobilenetv2_1.0_224"]
    pp = entry["preprocess"]
    assert pp["resize"].startswith("shorter side 256")
    spec = PreprocessSpec(mean=tuple(pp["mean_pixel"]), std=tuple(pp["std_pixel"]), color=pp["color"].lower(),
                          layout="nchw", resize="shorter", resize_shorter=256)
    root = assets / "imagenet" / "images"
    monkeypatch.setattr(ortflow, "current_cpu", lambda: CpuInfo("no AMX", frozenset({"avx2"}), 2))
    plain = tmp_path / "mnv2.int8.onnx"
    job = Job(model=assets / entry["file"], output=plain, preprocess=spec,
              calibration=CalibrationSettings(folders=(root,), max_images=100),
              evaluation=EvalSettings(folders=(root,), max_images=8, latency_runs=2, per_layer_images=0))
    pipeline.quantize(job)
    model = onnx.load(str(plain))
    assert len(gemm_pointwise(model)) >= 10  # the 1x1 convolutions of the 14x14 and 7x7 stages with >= 320 inputs
    sessions = [ort.InferenceSession(p, providers=["CPUExecutionProvider"]) for p in (str(plain), model.SerializeToString())]
    files = list_images([root])[:800]
    labels = labels_from_csv(assets / "imagenet" / "labels.csv", [root])
    spec = spec.resolved("nchw", (224, 224))
    preds = [[], []]
    for i in range(0, len(files), 50):
        x = np.stack([load_tensor(f, spec) for f in files[i : i + 50]])
        for s, p in zip(sessions, preds):
            p.extend(s.run(None, {s.get_inputs()[0].name: x})[0].argmax(1).tolist())
    assert len(preds[0]) == 800 and preds[0] == preds[1]
    top1 = np.mean([p - entry["output"]["class_offset"] == labels.get(f) for p, f in zip(preds[0], files)])
    assert top1 >= 0.85
