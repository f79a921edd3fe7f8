"""The TensorRT target: a QDQ model TensorRT's explicit quantization reads,
and a calibration cache that holds the ranges the app computed."""

from __future__ import annotations

import struct
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from guiapp.core.notes import texts
from guiapp.core.calibrate.calibration import CalibrationInputs, calibrate
from guiapp.core.data.dataset import list_images
from guiapp.core.model.feeds import make_feeds
from guiapp.core.job import CalibrationSettings, EvalSettings, Job
from guiapp.core.model.modelinfo import inspect_model
from guiapp.core.context import resolve_spec
from guiapp.core.quantize.prepare import prepare
from guiapp.core.run import quantize
from guiapp.core.progress import CancelToken, no_progress
from guiapp.core.calibrate.strategies import StrategySettings, RangeTarget, compute_ranges
from guiapp.core.job import TargetSettings
from guiapp.core.targets.tensorrt import TensorRTOptions, cache_path, calibration_cache, parse_calibration_cache, version_code


def trt_job(model_path: Path, calib_dir: Path, out: Path, method: str = "minmax") -> Job:
    return Job(
        model_path, out, report=out.with_suffix(".json"), cache=None,
        calibration=CalibrationSettings(folders=(calib_dir,), max_images=16, method=method),
        evaluation=EvalSettings(max_images=8, latency_runs=3, per_layer_images=2),
        target=TargetSettings("tensorrt", {"tensorrt": TensorRTOptions("8.6.1")}),
    )


def our_ranges(job: Job) -> dict[str, tuple[float, float]]:
    """The ranges the app computes for symmetric int8 activations, from the same images."""
    info = inspect_model(job.model)
    spec = resolve_spec(job.preprocess, info)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = prepare(job.model, info.opset, Path(tmp), no_progress, CancelToken())
        inputs = CalibrationInputs(job.model, make_feeds(info, {}), spec, job.calibration, list_images(job.calibration.folders), 8)
        cal = calibrate(prepared.model, inputs, no_progress, CancelToken())
    return compute_ranges(cal.stats, StrategySettings(job.calibration.method), RangeTarget("int8", symmetric=True))


def test_the_cache_parses_back_to_the_ranges_we_computed(tmp_path, model_path, calib_dir):
    for method in ("minmax", "entropy"):
        out = tmp_path / f"{method}.int8.onnx"
        job = trt_job(model_path, calib_dir, out, method)
        quantize(job)
        header, scales = parse_calibration_cache(cache_path(out).read_text())
        assert header == "TRT-8601-EntropyCalibration2"
        ranges = our_ranges(job)
        assert set(scales) <= set(ranges) and "image" in scales and len(scales) >= 5
        for name, scale in scales.items():
            lo, hi = ranges[name]
            amax = max(abs(lo), abs(hi))
            assert abs(scale * 127 - amax) <= 1e-6 * max(amax, 1e-6), (method, name, scale * 127, amax)


def test_the_model_is_what_tensorrt_reads(tmp_path, model_path, calib_dir):
    out = tmp_path / "m.int8.onnx"
    result = quantize(trt_job(model_path, calib_dir, out))  # the job asks for nothing TensorRT-specific
    model = onnx.load(str(out))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 13
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    qnodes = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qnodes
    for n in qnodes:  # int8 (no int32 biases), symmetric: zero point 0 everywhere
        zp = inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any()
    biases = [n.input[2] for n in model.graph.node if n.op_type in ("Conv", "Gemm") and len(n.input) > 2]
    assert biases and all(inits[b].dtype == np.float32 for b in biases)  # float, fed straight in
    weights = [n for n in qnodes if n.op_type == "QuantizeLinear" and n.input[0] in inits]
    activations = [n for n in qnodes if n.op_type == "QuantizeLinear" and n.input[0] not in inits]
    assert weights and activations
    # Float weights, each with its own Q/DQ pair, per-channel for the convolutions.
    assert all(inits[n.input[0]].dtype == np.float32 for n in weights)
    assert any(inits[n.input[1]].size > 1 for n in weights)
    assert all(inits[n.input[1]].size == 1 for n in activations)  # per-tensor activations
    r = result.report
    assert r["target"]["kind"] == "tensorrt" and "not TensorRT" in r["target"]["checked_in"]
    assert any("not in TensorRT" in w for w in texts(r["warnings"]))
    assert not any("slower on x86" in w for w in texts(r["warnings"]))  # ONNX Runtime's speed advice is not TensorRT's
    assert r["job"]["target"]["kind"] == "tensorrt" and r["output"] == str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib", "m.int8.json", "m.int8.onnx", "m.int8.trt-calibration.cache", "net.onnx"]


def test_cache_format():
    assert version_code("10.3.0") == 100300 and version_code("8.6.1") == 8601 and version_code("10") == 100000
    text = calibration_cache({"x": 0.5, "y": 1 / 127}, "10.3.0")
    assert text.splitlines() == ["TRT-100300-EntropyCalibration2", "x: 3f000000", f"y: {struct.pack('>f', 1 / 127).hex()}"]
    assert parse_calibration_cache(text)[1]["x"] == 0.5


def test_a_cancel_in_the_tensorrt_part_writes_nothing(tmp_path, model_path, calib_dir, monkeypatch):
    from guiapp.core.errors import Cancelled
    from guiapp.core.targets import tensorrt

    out = tmp_path / "m.int8.onnx"
    job = replace(trt_job(model_path, calib_dir, out), cache=tmp_path / "m.calib.npz")
    token = CancelToken()

    def cancelled_after(statistics, job):
        token.cancel()
        return {}

    monkeypatch.setattr(tensorrt, "tensor_scales", cancelled_after)
    try:
        quantize(job, cancel=token)
    except Cancelled:
        pass
    else:
        raise AssertionError("not cancelled")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib", "net.onnx"]  # no model, cache or statistics
