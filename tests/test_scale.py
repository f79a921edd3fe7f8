"""The search and whole runs spread over workers: the same trials, the same
numbers, the same choice as one after another (local processes and a local
Ray instance); a batch of jobs where one fails."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from guiapp.cli import main
from guiapp.core.demo import demo_folder
from guiapp.core.job import CalibrationSettings, EvalSettings, Job, QuantSettings, TuningSettings
from guiapp.core.parallel import ExecutorSpec
from guiapp.core.run import load_job, quantize
from guiapp.core.tuning import run as tuning_run


def demo_search(tmp_path: Path, name: str):
    job = load_job(demo_folder() / "demo.job.json")
    return replace(job, output=tmp_path / f"{name}.onnx", report=None, cache=None,
                   quantization=replace(job.quantization, per_channel=False),
                   calibration=replace(job.calibration, max_images=60),
                   evaluation=replace(job.evaluation, max_images=120, latency_runs=3, per_layer_images=4),
                   tuning=TuningSettings(max_drop=0.3, minutes=30))


def trials_of(report: dict) -> list[tuple]:
    return [(t["index"], t["stage"], t["method"], t["per_channel"], t["equalize"], t["bias_correction"],
             tuple(t["float_nodes"]), t["metric"], t["meets"], t["size_bytes"]) for t in report["tuning"]["trials"]]


@pytest.mark.parametrize("spec", [ExecutorSpec("local", workers=2)], ids=["local-2"])
def test_the_search_on_workers_makes_the_same_choices(tmp_path, monkeypatch, spec):
    monkeypatch.setattr(tuning_run, "POOL_WORTH_S", 0.0)  # the demo's trials are quick: use the workers anyway
    serial = quantize(demo_search(tmp_path, "serial"), executor=ExecutorSpec("serial")).report
    spread = quantize(demo_search(tmp_path, "spread"), executor=spec).report
    assert trials_of(spread) == trials_of(serial) and len(trials_of(serial)) >= 4
    assert spread["tuning"]["chosen"] == serial["tuning"]["chosen"]
    assert spread["fidelity"]["headline"]["value"] == serial["fidelity"]["headline"]["value"]


@pytest.mark.ray
def test_the_search_on_a_local_ray_instance_makes_the_same_choices(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setattr(tuning_run, "POOL_WORTH_S", 0.0)
    serial = quantize(demo_search(tmp_path, "serial"), executor=ExecutorSpec("serial")).report
    spread = quantize(demo_search(tmp_path, "ray"), executor=ExecutorSpec("ray", workers=2)).report
    assert trials_of(spread) == trials_of(serial)
    assert spread["tuning"]["chosen"] == serial["tuning"]["chosen"]


def test_a_batch_runs_every_job_and_fails_only_the_broken_one(tmp_path, capsys):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    base = load_job(demo_folder() / "demo.job.json")
    for name in ("a", "b"):
        replace(base, output=jobs / f"{name}.int8.onnx", report=jobs / f"{name}.report.json", cache=None,
                calibration=replace(base.calibration, max_images=24),
                evaluation=replace(base.evaluation, max_images=30, latency_runs=3)).save(jobs / f"{name}.json")
    (jobs / "c.json").write_text(json.dumps({"version": 2, "model": "missing.onnx", "output": "c.int8.onnx"}))
    (jobs / "d.json").write_text("{ not json")
    code = main(["batch", str(jobs), "--workers", "2"])
    out = capsys.readouterr().out
    assert code == 1, out
    index = json.loads((jobs / "batch-index.json").read_text())
    status = {Path(r["job"]).name: r for r in index["jobs"]}
    assert [status[n]["status"] for n in ("a.json", "b.json", "c.json", "d.json")] == ["ok", "ok", "failed", "failed"]
    assert "does not exist" in status["c.json"]["error"] and "not valid JSON" in status["d.json"]["error"]
    for n in ("a", "b"):
        assert (jobs / f"{n}.int8.onnx").is_file()
        report = json.loads((jobs / f"{n}.report.json").read_text())
        assert report["int8"]["latency_ms"]["median"] > 0  # timed after the batch, alone
        assert status[f"{n}.json"]["latency_ms"]["int8"] > 0
    assert not (jobs / "c.int8.onnx").exists()
    assert "<table>" in (jobs / "batch-index.html").read_text()
    assert out.count("[1/4]") >= 2 and "2 of 4 jobs succeeded" in out


@pytest.mark.realmodels
@pytest.mark.slow
def test_mobilenetv2_per_tensor_search_on_two_workers_makes_the_serial_choices(tmp_path, assets, monkeypatch):
    """The issue's case: MobileNetV2 per-tensor under a target, 200 calibration and 400
    evaluation photos; two local workers give the serial search's trials and choice."""
    from test_realmodels import spec_from_assets, specs

    monkeypatch.setattr(tuning_run, "POOL_WORTH_S", 0.0)  # whatever a trial costs, the workers run them
    entry = specs(assets)["mobilenetv2_1.0_224"]
    images = assets / "imagenet" / "images"
    job = Job(assets / entry["file"], tmp_path / "serial.onnx", spec_from_assets(entry),
              CalibrationSettings((images,), max_images=200), QuantSettings(per_channel=False),
              EvalSettings((images,), labels_from="csv", labels_csv=assets / "imagenet" / "labels.csv",
                           class_offset=entry["output"]["class_offset"], max_images=400, latency_runs=3, per_layer_images=4),
              tuning=TuningSettings(max_drop=1.0, minutes=30))
    serial = quantize(job, executor=ExecutorSpec("serial")).report
    spread = quantize(replace(job, output=tmp_path / "spread.onnx"), executor=ExecutorSpec("local", workers=2)).report
    assert len(trials_of(serial)) >= 3 and trials_of(spread) == trials_of(serial)
    assert spread["tuning"]["chosen"] == serial["tuning"]["chosen"]
    assert spread["accuracy"] == serial["accuracy"]


def test_a_batch_job_whose_worker_is_killed_runs_again_or_fails_alone(tmp_path, capsys, monkeypatch):
    """SIGKILL of a batch job's worker: the job runs once more; killed twice, it is failed with the
    reason while the others finish; nothing half-written."""
    import scale_jobs
    from guiapp.core import batch

    monkeypatch.setattr(batch, "run_one", scale_jobs.batch_job_that_dies)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    base = load_job(demo_folder() / "demo.job.json")
    for name in ("die", "once", "fine"):
        replace(base, output=jobs / f"{name}.int8.onnx", report=jobs / f"{name}.report.json", cache=None,
                calibration=replace(base.calibration, max_images=24),
                evaluation=replace(base.evaluation, max_images=30, latency_runs=3)).save(jobs / f"{name}.json")
    code = main(["batch", str(jobs), "--workers", "2"])
    out = capsys.readouterr().out
    status = {Path(r["job"]).name: r for r in json.loads((jobs / "batch-index.json").read_text())["jobs"]}
    assert code == 1 and [status[f"{n}.json"]["status"] for n in ("die", "once", "fine")] == ["failed", "ok", "ok"], out
    assert "killed by signal 9, twice" in status["die.json"]["error"]
    assert (jobs / "once.int8.onnx").is_file() and (jobs / "fine.int8.onnx").is_file()
    leftovers = {p.name for p in jobs.iterdir()} - {f"{n}.{ext}" for n in ("die", "once", "fine") for ext in ("json", "int8.died")}
    assert leftovers == {"once.int8.onnx", "once.report.json", "fine.int8.onnx", "fine.report.json",
                         "batch-index.json", "batch-index.html"}
