"""ONNX Runtime's quantizer with its per-weight work remembered across runs
(issue 21): every file it writes must be the very file it writes without the
memo, whatever the settings and float layers, and changed weights under the
same names must be quantized anew."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from builders import convnet, save
from guiapp.core.calibrate.calibration import tensors_to_calibrate
from guiapp.core.job import QuantSettings
from guiapp.core.quantize import weightmemo
from guiapp.core.quantize.prepare import quantize_file
from guiapp.core.quantize.weightmemo import MEMO, WeightMemo


@pytest.fixture
def memo():
    MEMO.clear()
    yield MEMO
    MEMO.clear()


def typed(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    model = onnx.shape_inference.infer_shapes(model)
    save(model, path)
    return model


def ranges_for(model: onnx.ModelProto) -> dict:
    rng = np.random.default_rng(0)
    return {n: (-float(rng.uniform(0.5, 4)), float(rng.uniform(0.5, 4))) for n in tensors_to_calibrate(model)}


def written(model_path: Path, ranges: dict, q: QuantSettings, out: Path) -> bytes:
    quantize_file(model_path, ranges, q, out)
    return out.read_bytes()


SETTINGS = {
    "default": {},
    "per-tensor": {"per_channel": False},
    "uint8 weights": {"weight_type": "uint8"},
    "reduce range": {"reduce_range": True},
    "symmetric activations": {"symmetric_activations": True},
    "TensorRT form": {"tensorrt_form": True, "symmetric_activations": True, "activation_type": "int8"},
    "QOperator": {"format": "qoperator"},
}


@pytest.mark.parametrize("changes", SETTINGS.values(), ids=SETTINGS.keys())
def test_the_quantizer_writes_the_same_files_with_its_weights_remembered(tmp_path, memo, changes):
    model = typed(convnet(width=16), tmp_path / "fp32.onnx")
    ranges = ranges_for(model)
    q = replace(QuantSettings(), **changes)
    for floats in [(), ("conv1",), ("conv2",), ("conv1", "conv2"), ()]:
        s = replace(q, exclude_nodes=floats)
        with memo.disabled():
            expected = written(tmp_path / "fp32.onnx", ranges, s, tmp_path / "plain.onnx")
        hits = memo.hits
        assert written(tmp_path / "fp32.onnx", ranges, s, tmp_path / "memo.onnx") == expected, (changes, floats)
        if floats == ("conv1", "conv2"):
            assert memo.hits > hits, "the last weight, quantized in an earlier run, was quantized again"
    # the memo was used: without its hits the comparison above would prove nothing
    assert memo.hits > 0 and memo.misses > 0 and memo.size > 0


def test_changed_weights_under_the_same_names_are_quantized_anew(tmp_path, memo):
    # An equalized or bias-corrected graph keeps the layer names with other weights.
    model = typed(convnet(width=16), tmp_path / "a.onnx")
    ranges = ranges_for(model)
    first = written(tmp_path / "a.onnx", ranges, QuantSettings(), tmp_path / "a_int8.onnx")
    other = onnx.ModelProto()
    other.CopyFrom(model)
    w2 = next(t for t in other.graph.initializer if t.name == "w2")
    w2.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w2) * np.float32(1.7), "w2"))
    save(other, tmp_path / "b.onnx")
    second = written(tmp_path / "b.onnx", ranges, QuantSettings(), tmp_path / "b_int8.onnx")
    with memo.disabled():
        expected = written(tmp_path / "b.onnx", ranges, QuantSettings(), tmp_path / "b_plain.onnx")
    assert second == expected != first


def test_what_it_keeps_is_bounded_and_the_results_stay_the_same(tmp_path):
    model = typed(convnet(width=16), tmp_path / "fp32.onnx")
    ranges = ranges_for(model)
    small = WeightMemo(max_bytes=8_000)
    real = weightmemo.MEMO
    try:
        weightmemo.MEMO = small
        outs = [written(tmp_path / "fp32.onnx", ranges, QuantSettings(exclude_nodes=f), tmp_path / f"{i}.onnx")
                for i, f in enumerate([(), ("conv1",), ()])]
    finally:
        weightmemo.MEMO = real
    with real.disabled():
        expected = written(tmp_path / "fp32.onnx", ranges, QuantSettings(), tmp_path / "plain.onnx")
    assert outs[0] == outs[2] == expected
    assert 0 < small.size <= small.max_bytes and small.misses > len(small._entries)  # some were let go


def test_arguments_it_cannot_key_are_passed_through():
    calls = []

    def double(x, *, label):
        calls.append(x)
        return [v * 2 for v in x]

    memo = WeightMemo()
    assert memo.call(double, ([1, 2],), {"label": object()}) == [2, 4]  # an object: no key
    assert memo.call(double, ([1, 2],), {"label": object()}) == [2, 4]
    assert len(calls) == 2 and memo.hits == 0
    external = onnx.TensorProto(name="w", data_location=onnx.TensorProto.EXTERNAL)
    memo.call(lambda t: t.name, (external,), {})
    memo.call(lambda t: t.name, (external,), {})
    assert memo.hits == 0  # its data is in another file: the proto alone does not say what it holds


def test_a_remembered_result_cannot_be_changed_by_its_caller():
    memo = WeightMemo()
    fn = lambda x: (np.asarray(x * 2.0), onnx.TensorProto(name="q"))  # noqa: E731
    for _ in range(2):  # the result that filled the memo, then one it handed out
        a = memo.call(fn, (np.arange(3.0),), {})
        a[0][:] = -1
        a[1].name = "changed"
    b = memo.call(fn, (np.arange(3.0),), {})
    assert memo.hits == 2 and b[0].tolist() == [0.0, 2.0, 4.0] and b[1].name == "q"


def test_equal_bytes_of_other_types_are_other_keys():
    # int4 and uint4 (or two float8 types) share dtype.str '<V1'; -0.0 == 0.0 in Python
    from ml_dtypes import int4, uint4

    memo = WeightMemo()
    kind = lambda x: str(x.dtype)  # noqa: E731
    assert memo.call(kind, (np.array(-8, int4),), {}) == "int4"
    assert memo.call(kind, (np.array(8, uint4),), {}) == "uint4"
    sign = lambda x: np.copysign(1.0, x)  # noqa: E731
    assert memo.call(sign, (0.0,), {}) == 1.0 and memo.call(sign, (-0.0,), {}) == -1.0
    assert memo.hits == 0


def test_disabled_nests_and_holds_only_in_its_own_thread():
    import threading

    memo = WeightMemo()
    fn = lambda x: x * 2.0  # noqa: E731
    memo.call(fn, (np.arange(3.0),), {})
    seen = []
    with memo.disabled():
        with memo.disabled():
            memo.call(fn, (np.arange(3.0),), {})
        memo.call(fn, (np.arange(3.0),), {})
        other = threading.Thread(target=lambda: seen.append(memo.call(fn, (np.arange(3.0),), {})))
        other.start()
        other.join()
    assert memo.hits == 1 and len(seen) == 1  # only the other thread's call was remembered
    memo.call(fn, (np.arange(3.0),), {})
    assert memo.hits == 2


def test_an_onnx_runtime_without_those_names_is_left_alone(monkeypatch):
    import types

    module = types.ModuleType("fake_quantizer")
    module.quantize_data = lambda x: x  # present: wrapped; absent names and modules: skipped
    monkeypatch.setitem(__import__("sys").modules, "fake_quantizer", module)
    monkeypatch.setattr(weightmemo, "WRAPPED", {"fake_quantizer": ("quantize_data", "renamed_in_a_later_version"),
                                                "no_such_module.anywhere": ("quantize_data",)})
    weightmemo.install()
    weightmemo.install()  # once only: not wrapped twice
    assert module.quantize_data.__guiapp_memo__ and module.quantize_data(3) == 3
    assert not hasattr(module.quantize_data.__wrapped__, "__guiapp_memo__")  # it wraps the original
    assert not hasattr(module, "renamed_in_a_later_version")
