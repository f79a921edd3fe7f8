"""The OpenVINO target (the optional extra guiapp[openvino]): IR export, the
reloaded IR checked against FP32, latency in OpenVINO, nothing written
outside the outputs (its telemetry would write to ~/intel)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from guiapp.core.job import CalibrationSettings, EvalSettings, Job
from guiapp.core.run import quantize
from guiapp.core.report.summary import latency_line
from guiapp.core.targets.base import TargetSettings
from guiapp.core.targets.openvino import compile_config, import_openvino

# Not importorskip: a plain import of openvino writes its telemetry to ~/intel.
if importlib.util.find_spec("openvino") is None:
    pytest.skip("the optional extra guiapp[openvino] is not installed", allow_module_level=True)


def test_ir_export_checked_and_timed_in_openvino(tmp_path, model_path, calib_dir, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = tmp_path / "out" / "m.int8.onnx"
    out.parent.mkdir()
    job = Job(
        model_path, out, report=out.with_name("m.json"), cache=out.with_name("m.calib.npz"),
        calibration=CalibrationSettings(folders=(calib_dir,), max_images=16),
        evaluation=EvalSettings(max_images=20, latency_runs=5, per_layer_images=2),
        target=TargetSettings(kind="openvino"),
    )
    r = quantize(job).report
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.calib.npz", "m.int8.bin", "m.int8.onnx", "m.int8.xml", "m.json"]
    t = r["target"]
    assert t["kind"] == "openvino" and t["compile_config"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert t["ir"]["xml"] == str(out.with_suffix(".xml"))
    # Latency is OpenVINO's; ONNX Runtime's stays in the report beside it.
    for key in ("fp32", "int8"):
        assert r[key]["latency_ms"]["runs"] >= 5 and t["onnxruntime"]["latency_ms"][key]["runs"] >= 5
    assert r["latency"]["runtime"].startswith("OpenVINO") and "OpenVINO" in latency_line(r)
    assert t["onnxruntime"]["latency"]["how"] == r["latency"]["how"]  # each model alone, in both runtimes
    # The IR agrees with FP32 the way the ONNX Runtime model does.
    assert r["agreement"]["top1"] >= t["onnxruntime"]["agreement"]["top1"] - 0.1
    assert r["outputs"][0]["sqnr_db"] > 15
    assert os.listdir(cwd) == [] and os.listdir(home) == []  # no ~/intel telemetry, nothing in the cwd

    # The IR reloads in a fresh OpenVINO and computes what ONNX Runtime's INT8 model does.
    import onnxruntime as ort

    ov = import_openvino()
    compiled = ov.Core().compile_model(str(out.with_suffix(".xml")), "CPU", compile_config(1))
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    ir_out = np.asarray(compiled(x)[0])
    ort_out = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    np.testing.assert_allclose(ir_out, ort_out, atol=0.05 * np.abs(ort_out).max())


def test_importing_openvino_through_the_app_writes_no_telemetry(tmp_path):
    code = "from guiapp.core.targets.openvino import import_openvino; ov = import_openvino(); ov.Core()"
    env = {**os.environ, "HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path)
    assert os.listdir(tmp_path) == []
