"""The project's own YOLOv8-style detector (resources/detector/): INT8 keeps
its boxes with the default settings, breaks without output protection, and
the accuracy-target search finds the head by itself."""

from __future__ import annotations

from dataclasses import replace

import pytest

from guiapp.core.job import Job, TuningSettings
from guiapp.core.run import job_from_dict, load_job
from guiapp.core.run import quantize
from guiapp.core.resources import resource_path

pytestmark = pytest.mark.slow


@pytest.fixture
def job(tmp_path) -> Job:
    j = load_job(resource_path("detector") / "detector.job.json")
    return replace(j, output=tmp_path / "detector.int8.onnx", cache=None,
                   evaluation=replace(j.evaluation, latency_runs=5, per_layer_images=4))


def test_defaults_keep_the_boxes_and_the_map(job):
    r = quantize(job).report
    assert r["task"]["detection"]["kind"] == "yolo" and r["task"]["detection"]["classes"] == 4
    det = r["fidelity"]["detection"]
    m = det["map50"]
    assert det["fp32_boxes"] > 250 and m["labeled_images"] == 100
    assert m["fp32"] > 0.8  # the FP32 model works: labels, letterbox and decoding agree
    assert det["f1"] >= 0.95
    assert m["fp32"] - m["int8"] <= 0.01
    assert r["protected_outputs"] and "ranges differ" in r["protected_outputs"][0]["reason"]


def test_without_protection_the_scores_are_crushed(job):
    r = quantize(replace(job, quantization=replace(job.quantization, protect_outputs=False))).report
    det = r["fidelity"]["detection"]
    assert det["score_mae"] > 0.1
    assert det["map50"]["fp32"] - det["map50"]["int8"] > 0.05
    assert r["outputs"][0]["worst_group"]["sqnr_db"] < 10 < r["outputs"][0]["sqnr_db"]


def test_the_search_finds_the_head_when_protection_is_off(job):
    job = replace(job, quantization=replace(job.quantization, protect_outputs=False),
                  tuning=TuningSettings(max_drop=2.0, minutes=10))
    r = quantize(job).report
    t = r["tuning"]
    assert t["met"]
    chosen = next(x for x in t["trials"] if x["index"] == t["chosen"])
    assert chosen["float_nodes"] == ["/Concat_12"]  # the final Concat of boxes and scores, and nothing else
    assert r["fidelity"]["detection"]["f1"] >= 0.98
