"""The accuracy-target search and its tools: cross-layer equalization, bias
correction, the layer ranking, and what gets written (also on Cancel)."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from builders import IR_VERSION, OPSET, image_folder, save
from task_models import yolo_head_net
from guiapp.core.notes import texts
from guiapp.cli import main
from guiapp.core.errors import JobError
from guiapp.core.job import CalibrationSettings, EvalSettings, Job, QuantSettings, Recipe, TuningSettings
from guiapp.core.run import quantize
from guiapp.core.data.preprocess import preset
from guiapp.core.progress import CancelToken
from guiapp.core.tasks import TaskSettings
from guiapp.core.quantize.equalize import equalize, find_pairs
from guiapp.core.tuning.trials import Trial, choose, pareto


def uneven_net(path: Path | None = None, seed: int = 0, clip: bool = False) -> onnx.ModelProto:
    """conv -> relu (or relu6) -> depthwise conv -> relu -> conv, with output
    channels of the first conv scaled by factors from 0.01 to 100: per-tensor
    weights lose the small channels unless they are equalized."""
    rng = np.random.default_rng(seed)
    c = 8
    w1 = rng.standard_normal((c, 3, 3, 3)).astype(np.float32) * np.logspace(-2, 2, c, dtype=np.float32)[:, None, None, None]
    b1 = rng.standard_normal(c).astype(np.float32) * 0.1
    w2 = rng.standard_normal((c, 1, 3, 3)).astype(np.float32) / np.logspace(-2, 2, c, dtype=np.float32)[:, None, None, None]
    w3 = rng.standard_normal((4, c, 1, 1)).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (w3, "w3"))]
    act = [helper.make_node("Relu", ["c1"], ["a1"], name="act1")]
    if clip:
        inits += [numpy_helper.from_array(np.array(0, np.float32), "lo"), numpy_helper.from_array(np.array(600, np.float32), "hi")]
        act = [helper.make_node("Clip", ["c1", "lo", "hi"], ["a1"], name="act1")]
    nodes = [helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"), *act,
             helper.make_node("Conv", ["a1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=c, name="dw"),
             helper.make_node("Relu", ["c2"], ["a2"], name="act2"),
             helper.make_node("Conv", ["a2", "w3"], ["out"], name="conv3")]
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 16, 16])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4, 16, 16])
    m = helper.make_model(helper.make_graph(nodes, "uneven", [x], [y], inits), opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = IR_VERSION
    if path is not None:
        save(m, path)
    return m


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"image": x})[0]


def test_equalization_keeps_the_function_and_evens_the_channels():
    m = uneven_net()
    assert [(p.first, p.second) for p in find_pairs(m)] == [("conv1", "dw"), ("dw", "conv3")]
    eq, pairs, kept = equalize(m)
    assert (pairs, kept) == (2, 0)
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(run(eq, x), run(m, x), rtol=1e-3, atol=1e-3)
    w1 = numpy_helper.to_array(next(t for t in eq.graph.initializer if t.name == "w1"))
    ranges = np.abs(w1).reshape(8, -1).max(1)
    before = np.abs(numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == "w1"))).reshape(8, -1).max(1)
    assert before.max() / before.min() > 1000 and ranges.max() / ranges.min() < 10


def test_clip_pairs_are_equalized_only_where_the_clip_stays_exact():
    """ReLU6-like Clip between the convs: channels that reach the bound keep
    their scale, the others are rescaled so that they still never reach it."""
    m = uneven_net(clip=True)
    x = np.random.default_rng(1).standard_normal((4, 3, 16, 16)).astype(np.float32)
    assert equalize(m)[1] == 1  # without the maxima only the ReLU pair (dw -> conv3) is safe
    c1 = onnx.helper.make_tensor_value_info("c1", TensorProto.FLOAT, None)
    probe = onnx.ModelProto()
    probe.CopyFrom(m)
    probe.graph.output.append(c1)
    pre = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"]).run(["c1"], {"image": x})[0]
    top = pre.max(axis=(0, 2, 3))
    assert (top >= 600).any() and (top < 600).any()  # some channels reach the Clip's bound, some do not
    eq, pairs, kept = equalize(m, {"c1": top})
    assert pairs == 2 and kept == int((top >= 600).sum())
    assert [n.op_type for n in eq.graph.node].count("Clip") == 1
    np.testing.assert_allclose(run(eq, x), run(m, x), rtol=1e-3, atol=1e-2)


def _uneven_job(tmp_path, **quant) -> Job:
    model = uneven_net(tmp_path / "uneven.onnx")
    del model
    image_folder(tmp_path / "calib", 24, seed=1, size=(20, 20))
    image_folder(tmp_path / "eval", 16, seed=2, size=(20, 20))
    return Job(tmp_path / "uneven.onnx", tmp_path / "uneven.int8.onnx", preset("imagenet", resize="stretch"),
               CalibrationSettings((tmp_path / "calib",), max_images=24), QuantSettings(per_channel=False, **quant),
               EvalSettings((tmp_path / "eval",), latency_runs=3, per_layer_images=2), task=TaskSettings(kind="generic"))


def test_equalize_and_bias_correction_help_per_tensor_weights(tmp_path):
    plain = quantize(_uneven_job(tmp_path)).report["outputs"][0]["sqnr_db"]
    job = _uneven_job(tmp_path, equalize=True, bias_correction=True)
    r = quantize(replace(job, output=tmp_path / "eq.int8.onnx")).report
    assert r["quantization"]["equalize"] and r["quantization"]["bias_correction"]
    assert any("cross-layer equalization: 2 conv pair(s)" in s for s in r["preparation"])
    assert any("bias correction" in w for w in texts(r["warnings"]))
    assert r["outputs"][0]["sqnr_db"] > plain + 6, (plain, r["outputs"][0]["sqnr_db"])


def test_search_finds_the_detector_head_itself(tmp_path):
    """Output protection off: the search must find that the final Concat
    crushes the scores, keep it in float, and put nothing else back."""
    image_folder(tmp_path / "calib", 40, seed=1)
    image_folder(tmp_path / "eval", 40, seed=2)
    model = save(yolo_head_net(), tmp_path / "yolo.onnx")
    job = Job(model, tmp_path / "yolo.int8.onnx", preset("imagenet", resize="letterbox"),
              CalibrationSettings((tmp_path / "calib",), max_images=40), QuantSettings(protect_outputs=False),
              EvalSettings((tmp_path / "eval",), max_images=40, latency_runs=3, per_layer_images=2),
              tuning=TuningSettings(max_drop=3.0, minutes=5))
    events = []
    r = quantize(job, progress=lambda e: events.append(e) if e.data else None).report
    t = r["tuning"]
    assert t["met"] and t["target"]["metric"] == "detection_ap50_vs_fp32" and t["target"]["required"] == pytest.approx(0.97)
    chosen = next(x for x in t["trials"] if x["index"] == t["chosen"])
    assert chosen["float_nodes"] == ["head_concat"]
    assert r["kept_float"] == ["head_concat"]
    assert r["fidelity"]["detection"]["f1"] >= 0.98
    assert [e.data["trial"]["index"] for e in events] == [x["index"] for x in t["trials"]]  # every trial reported live
    assert {"method", "per_channel", "float_nodes", "metric", "size_bytes", "latency_ms"} <= set(t["trials"][0])


def test_a_target_nothing_meets_writes_the_best_and_says_by_how_much(tmp_path):
    job = replace(_uneven_job(tmp_path), tuning=TuningSettings(max_drop=0.0, minutes=5),
                  task=TaskSettings(kind="classification"))
    r = quantize(job).report
    t = r["tuning"]
    best = max(x["metric"] for x in t["trials"])
    if t["met"]:  # an exact INT8 copy of FP32 meets even a zero drop
        assert best == pytest.approx(1.0)
    else:
        assert t["missed_by_points"] == pytest.approx((1.0 - best) * 100)
        assert any(w.startswith("the accuracy target was missed") for w in texts(r["warnings"]))
    assert Path(job.output).is_file()


def test_generic_models_have_no_target_metric(tmp_path):
    with pytest.raises(JobError, match="no accuracy-like number"):
        quantize(replace(_uneven_job(tmp_path), tuning=TuningSettings(max_drop=1.0)))


def test_cancelled_search_writes_the_best_model_so_far(tmp_path):
    image_folder(tmp_path / "calib", 40, seed=1)
    image_folder(tmp_path / "eval", 40, seed=2)
    model = save(yolo_head_net(), tmp_path / "yolo.onnx")
    job = Job(model, tmp_path / "yolo.int8.onnx", preset("imagenet", resize="letterbox"),
              CalibrationSettings((tmp_path / "calib",), max_images=40), QuantSettings(protect_outputs=False),
              EvalSettings((tmp_path / "eval",), max_images=40, latency_runs=3, per_layer_images=2),
              tuning=TuningSettings(max_drop=2.0, minutes=5))
    cancel = CancelToken()

    def progress(e):
        if e.data and e.data["trial"]["index"] == 2:
            cancel.cancel()

    r = quantize(job, progress=progress, cancel=cancel).report
    assert r["tuning"]["stopped"] == "cancelled" and len(r["tuning"]["trials"]) == 2
    assert Path(job.output).is_file() and "search cancelled" in " ".join(texts(r["warnings"]))


def test_ctrl_c_in_the_cli_search_writes_the_best_model_so_far(tmp_path, capsys, monkeypatch):
    from guiapp.core.tuning import scorer

    image_folder(tmp_path / "calib", 40, seed=1)
    model = save(yolo_head_net(), tmp_path / "yolo.onnx")
    real_run = scorer.Scorer.run
    count = []

    def run_then_interrupt(self, *a, **k):
        t = real_run(self, *a, **k)
        count.append(t)
        if len(count) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does
        return t

    monkeypatch.setattr(scorer.Scorer, "run", run_then_interrupt)
    out = tmp_path / "o.onnx"
    code = main(["quantize", str(model), "--calib", str(tmp_path / "calib"), "--out", str(out), "--max-drop", "1",
                 "--no-protect-outputs", "--latency-runs", "3", "--report", str(tmp_path / "r.json")])
    _, err = capsys.readouterr()
    assert code == 0, err
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["tuning"]["stopped"] == "cancelled" and len(r["tuning"]["trials"]) == 2
    assert out.is_file() and "accuracy target was missed" in err


def test_choose_prefers_fewer_float_layers_among_those_that_meet():
    s = Recipe("minmax", True)

    def t(i, metric, meets, floats=(), lat=1.0):
        return Trial(i, "x", replace(s, float_nodes=floats), metric, meets, 100, lat, 0.1)

    trials = [t(1, 0.90, False), t(2, 0.97, True, ("a", "b")), t(3, 0.96, True, ("a",)), t(4, 0.99, True, ("a", "b", "c"))]
    assert choose(trials).index == 3
    assert choose([t(1, 0.5, False), t(2, 0.7, False, ("a",))]).index == 2
    assert pareto([t(1, 0.9, False, lat=1.0), t(2, 0.95, True, lat=2.0), t(3, 0.8, False, lat=1.5)]) == [1, 2]


def test_weights_that_read_a_dead_channel_are_zeroed():
    """A channel the first conv never makes positive (zero weights, no bias)
    is always 0 after the ReLU: the depthwise weights reading it are
    meaningless, and left alone they set the layer's per-tensor range."""
    m = uneven_net()
    inits = {t.name: t for t in m.graph.initializer}
    w1 = numpy_helper.to_array(inits["w1"]).copy()
    b1 = numpy_helper.to_array(inits["b1"]).copy()
    w2 = numpy_helper.to_array(inits["w2"]).copy()
    w1[3], b1[3], w2[3] = 0.0, -0.5, 1000.0  # dead channel 3 with huge downstream weights
    for name, a in (("w1", w1), ("b1", b1), ("w2", w2)):
        inits[name].CopyFrom(numpy_helper.from_array(a, name))
    eq, _, _ = equalize(m)
    w2_eq = numpy_helper.to_array(next(t for t in eq.graph.initializer if t.name == "w2"))
    assert np.all(w2_eq[3] == 0) and np.abs(w2_eq).max() < 1000
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(run(eq, x), run(m, x), rtol=1e-3, atol=1e-3)
