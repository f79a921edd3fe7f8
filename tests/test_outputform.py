"""The INT8 model's output form: ONNX Runtime-optimized graph, batch of one,
and the reduce-range advice. Behaviour only: no timing."""

from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from builders import convnet
from guiapp.core.notes import codes
from guiapp.cli import build_parser, job_from_args
from guiapp.core.quantize import ortquant
from guiapp.core import run as pipeline
from guiapp.core.evaluate.cpu import CpuInfo
from guiapp.core.errors import JobError
from guiapp.core.job import CalibrationSettings, EvalSettings, Job, QuantSettings
from guiapp.core.run import job_from_dict, load_job
from guiapp.core.quantize.outputform import fix_batch
from guiapp.core.data.preprocess import preset


def run(model, calib, out, tmp_path, **q):
    job = Job(
        model=model, output=out, preprocess=preset("imagenet", resize="stretch"),
        calibration=CalibrationSettings(folders=(calib,), max_images=12, batch_size=4),
        quantization=QuantSettings(**q), evaluation=EvalSettings(latency_runs=2, max_images=12, per_layer_images=2),
        cache=tmp_path / "stats.npz",  # the same ranges for every form
    )
    return pipeline.quantize(job, overwrite=True).report


def outputs(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def test_ort_optimized_output_loads_in_plain_ort_and_matches_the_qdq_model(tmp_path, model_path, calib_dir):
    qdq, fused = tmp_path / "qdq.onnx", tmp_path / "fused.onnx"
    run(model_path, calib_dir, qdq, tmp_path)
    report = run(model_path, calib_dir, fused, tmp_path, ort_optimized=True)
    m = onnx.load(str(fused))
    ops = {n.op_type for n in m.graph.node}
    assert "QLinearConv" in ops and "DequantizeLinear" in ops
    assert sum(n.op_type == "QuantizeLinear" for n in m.graph.node) == 1  # only the input is quantized in float
    assert any("optimizes it" in s for s in report["preparation"])
    assert {p.key: p.value for p in m.metadata_props}["note"] == "kept"  # the input's metadata survives
    x = np.random.default_rng(3).standard_normal((5, 3, 32, 32)).astype(np.float32)
    a, b = outputs(qdq, x), outputs(fused, x)
    # The graph ONNX Runtime builds from the QDQ model when it loads it: the
    # same integer kernels, the same numbers.
    np.testing.assert_array_equal(a, b)
    assert report["accuracy"] is None and report["agreement"]["top1"] >= 0.9


def test_batch_one_fixes_the_input_and_is_evaluated_at_batch_one(tmp_path, model_path, calib_dir):
    out = tmp_path / "b1.onnx"
    report = run(model_path, calib_dir, out, tmp_path, batch_one=True, ort_optimized=True)
    s = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert s.get_inputs()[0].shape[0] == 1
    assert report["int8"]["latency_ms"]["batch"] == 1
    assert report["eval"]["images_used"] == 12  # evaluated one image at a time
    with pytest.raises(Exception):
        s.run(None, {s.get_inputs()[0].name: np.zeros((2, 3, 32, 32), np.float32)})


def test_fix_batch_names_what_it_changed_and_leaves_fixed_models(tmp_path):
    m = convnet()
    note = fix_batch(m, 1)
    assert note == "batch fixed to 1 on input(s) image"
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    assert m.graph.output[0].type.tensor_type.shape.dim[0].dim_value == 1  # the same named dimension
    fixed = convnet(batch=1)
    assert fix_batch(fixed, 1) is None


def test_batch_one_refused_for_a_model_fixed_to_another_batch(tmp_path, calib_dir):
    model = tmp_path / "b4.onnx"
    convnet(model, batch=4)
    with pytest.raises(JobError) as err:
        run(model, calib_dir, tmp_path / "o.onnx", tmp_path, batch_one=True)
    assert err.value.field == "quantization.batch_one"
    assert not (tmp_path / "o.onnx").exists()


def test_job_round_trip_and_cli_flags(tmp_path, model_path, calib_dir):
    job = Job(model=model_path, quantization=QuantSettings(batch_one=True, ort_optimized=True, reduce_range=True))
    assert job_from_dict(job.to_dict()) == job
    with pytest.raises(JobError) as err:
        job_from_dict({"version": 1, "model": "m.onnx", "quantization": {"ort_optimized": "yes"}})
    assert err.value.field == "job.quantization.ort_optimized"
    base = ["quantize", str(model_path), "--calib", str(calib_dir), "--out", str(tmp_path / "o.onnx")]
    q = job_from_args(build_parser().parse_args(base + ["--batch-one", "--ort-optimized"])).quantization
    assert q.batch_one and q.ort_optimized
    saved = tmp_path / "j.json"
    replace(job, output=tmp_path / "o.onnx", calibration=CalibrationSettings(folders=(calib_dir,))).save(saved)
    q = job_from_args(build_parser().parse_args(["quantize", "--job", str(saved), "--portable"])).quantization
    assert not q.ort_optimized and q.batch_one  # the flag overrides the job; the rest stays


AVX2_ONLY = CpuInfo("Intel(R) Core(TM) i7-6700", frozenset({"avx2", "fma"}), 4)
VNNI = CpuInfo("AMD EPYC", frozenset({"avx2", "avx512_vnni"}), 2)


VNNI_CODES = ("quantize.no_vnni", "quantize.reduce_range")


def test_reduce_range_advice_depends_on_vnni(monkeypatch):
    monkeypatch.setattr(ortquant, "is_x86", lambda: True)
    no_vnni = codes(ortquant.settings_warnings(QuantSettings(), AVX2_ONLY))
    assert "quantize.no_vnni" in no_vnni
    assert not any(w.code in VNNI_CODES for w in ortquant.settings_warnings(QuantSettings(reduce_range=True), AVX2_ONLY))
    assert not any(w.code in VNNI_CODES for w in ortquant.settings_warnings(QuantSettings(), VNNI))
    costly = ortquant.settings_warnings(QuantSettings(reduce_range=True), VNNI)
    assert [w.code for w in costly] == ["quantize.reduce_range"] and "costs accuracy" in costly[0].text
    unknown = CpuInfo("?", None, 1)
    assert not any(w.code in VNNI_CODES for w in ortquant.settings_warnings(QuantSettings(), unknown))
    monkeypatch.setattr(ortquant, "is_x86", lambda: False)
    assert not any(w.code in VNNI_CODES for w in ortquant.settings_warnings(QuantSettings(), AVX2_ONLY))
