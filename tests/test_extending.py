"""Adding a target or a task is its own module and one registry line: a toy
target and a toy task (tests/toy_target.py, tests/toy_task.py) go through a
whole run, the job document, the report's text and the wizard's pictures
without any other file knowing them."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import toy_target
import toy_task
from builders import image_folder
from guiapp.core.job import CalibrationSettings, EvalSettings, Job, TargetSettings
from guiapp.core.report.summary import summary_rows
from guiapp.core.run import job_from_dict, quantize
from guiapp.core.targets.registry import TARGETS
from guiapp.core.tasks import TASKS, TaskSettings, detect_task
from guiapp.core.model.modelinfo import inspect_model


@pytest.fixture
def toys(monkeypatch):
    monkeypatch.setitem(TARGETS, "toy", toy_target.TARGET)  # the registry line
    monkeypatch.setitem(TASKS, "regression", toy_task.TASK)  # the registry line


def regressor(path):
    """A small conv net ending in one number per image."""
    rng = np.random.default_rng(0)
    w = helper.make_tensor("w", TensorProto.FLOAT, [8, 3, 3, 3], rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32).ravel())
    fc = helper.make_tensor("fc", TensorProto.FLOAT, [8, 1], rng.normal(0, 0.5, (8, 1)).astype(np.float32).ravel())
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "fc"], ["score"], name="fc")]
    graph = helper.make_graph(nodes, "regressor", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])], [w, fc])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return path


def test_a_toy_target_and_task_run_end_to_end(tmp_path, toys):
    model = regressor(tmp_path / "reg.onnx")
    assert detect_task(inspect_model(model)).kind == "regression"  # found before the generic fallback
    image_folder(tmp_path / "calib", 24, size=(40, 40))
    out = tmp_path / "reg.int8.onnx"
    job = Job(model, out, calibration=CalibrationSettings((tmp_path / "calib",), max_images=16),
              evaluation=EvalSettings(max_images=8, latency_runs=2, per_layer_images=1), report=tmp_path / "r.json",
              task=TaskSettings("auto", {"regression": toy_task.RegressionOptions(0.1)}),
              target=TargetSettings("toy", {"toy": toy_target.ToyOptions("bonjour")}))
    r = quantize(job).report
    assert out.is_file() and toy_target.note_path(out).read_text().startswith("bonjour: Within 10% of FP32's spread")
    assert r["target"]["kind"] == "toy" and r["task"]["kind"] == "regression"
    assert r["fidelity"]["headline"]["metric"] == "regression_within"
    assert any(row[0] == "Mean |FP32 - INT8|" for row in summary_rows(r))  # the report's text asks the task
    assert "target.toy" in [w["code"] for w in r["warnings"]]
    assert json.loads((tmp_path / "r.json").read_text())["target"]["greeting"] == "bonjour"


def test_their_options_go_through_the_job_document(tmp_path, toys):
    job = Job(tmp_path / "m.onnx", tmp_path / "o.onnx", task=TaskSettings("regression", {"regression": toy_task.RegressionOptions(0.2)}),
              target=TargetSettings("toy", {"toy": toy_target.ToyOptions("hej")}))
    doc = job.to_dict()
    assert doc["target"] == {"kind": "toy", "toy": {"greeting": "hej"}}
    assert doc["task"]["regression"] == {"tolerance": 0.2}
    assert job_from_dict(json.loads(json.dumps(doc))) == job
    doc["task"]["regression"]["tolerance"] = 3
    with pytest.raises(Exception) as info:
        job_from_dict(doc)
    assert getattr(info.value, "field", "") == "job.task.regression.tolerance"


def test_without_the_registry_line_they_are_unknown(tmp_path):
    doc = Job(tmp_path / "m.onnx").to_dict()
    doc["target"] = {"kind": "toy"}
    with pytest.raises(Exception, match="unknown target 'toy'"):
        job_from_dict(doc)
    with pytest.raises(Exception, match="unknown task 'regression'"):
        TaskSettings("regression")
