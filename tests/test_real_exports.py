"""Files written by the exporters users run (tests/exports: Ultralytics,
torch.onnx's dynamo and TorchScript exporters, paddle2onnx; made by
tools/exports/make_exports.py): recognized from what the exporter wrote and
a real run, and faithful under INT8 with default settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from guiapp.cli import main
from guiapp.core.job import CalibrationSettings, EvalSettings, Job, TuningSettings
from guiapp.core.model.modelinfo import inspect_model
from guiapp.core.data.preprocess import PreprocessSpec
from guiapp.core.run import quantize
from guiapp.core.tasks import detect_task

ROOT = Path(__file__).resolve().parents[1]
EXPORTS = ROOT / "tests" / "exports"
DETECTOR = ROOT / "resources" / "detector"
DEMO = ROOT / "resources" / "demo"
YOLO = EXPORTS / "yolov8n_shapes.onnx"


def stated(name: str, **changes) -> PreprocessSpec:
    """The preprocessing each export was trained with (tests/exports/exports.json)."""
    spec = json.loads((EXPORTS / "exports.json").read_text())[name]["preprocess"]
    return PreprocessSpec(**{**spec, "size": tuple(spec["size"]) if spec.get("size") else None, **changes})


def test_the_ultralytics_export_is_read_from_its_metadata_and_a_run():
    info = inspect_model(YOLO)
    ex = info.exporter
    assert ex.exporter.startswith("Ultralytics") and ex.task == "detection" and ex.size == (160, 160)
    assert ex.class_names == ("circle", "square", "triangle", "star")
    assert ex.preprocessing.resize == "letterbox" and ex.preprocessing.pad_value == 114 and ex.preprocessing.std == (255.0,) * 3
    # The declared output is [batch, 8, anchors]; the run at the stated size gives the anchors.
    assert info.outputs[0].shape == ("batch", 8, "anchors")
    assert info.input_size == (160, 160) and info.task_outputs[0].shape[1:] == (8, 525)
    assert info.outputs_text() == ["output0 [batch, 8, 525] at 160x160 (dim 2 follows the input size)"]
    task = detect_task(info)
    assert task.kind == "detection" and task.detail.kind == "yolo" and task.detail.classes == 4
    assert "task=detect" in task.reason
    # Another size: the anchors follow it.
    assert inspect_model(YOLO, size=(256, 320)).task_outputs[0].shape[1:] == (8, 1680)


def test_a_stated_size_the_model_refuses_is_reported_not_used(tmp_path):
    import onnx

    model = onnx.load(str(YOLO))
    for p in model.metadata_props:
        if p.key == "imgsz":
            p.value = "[-5, 0]"  # nonsense: not a size at all
    bad = tmp_path / "bad_meta.onnx"
    onnx.save(model, str(bad))
    assert inspect_model(bad).exporter.size is None and inspect_model(bad).input_size is None
    from guiapp.core.model import probe

    refused = probe.probe(YOLO, inspect_model(YOLO).image_input, inspect_model(YOLO).inputs, inspect_model(YOLO).outputs,
                          (3, 3), "test")  # too small for three stride-2 stages and a concat of strides
    assert not refused.ok and refused.error


def yolo_job(tmp_path, **changes) -> Job:
    info = inspect_model(YOLO)
    stated = info.exporter.preprocessing
    spec = PreprocessSpec(stated.mean, stated.std, stated.color, resize=stated.resize, pad_value=stated.pad_value)
    job = Job(YOLO, tmp_path / "yolo.int8.onnx", spec, CalibrationSettings((DETECTOR / "calib",), max_images=60),
              evaluation=EvalSettings((DETECTOR / "eval" / "images",), labels_from="yolo", max_images=60, latency_runs=5,
                                      per_layer_images=2, noise_images=40))
    return Job(**{**job.__dict__, **changes})


def test_the_ultralytics_export_stays_faithful_with_default_settings(tmp_path):
    r = quantize(yolo_job(tmp_path)).report
    head = r["fidelity"]["headline"]
    assert r["task"]["kind"] == "detection" and head["metric"] == "detection_ap50_vs_fp32"
    assert head["value"] >= 0.95, head
    floor = head["noise_floor"]
    assert floor["images"] == 40 and floor["pixel_levels"] == 1.0 and 0.9 <= floor["value"] <= 1.0
    det = r["fidelity"]["detection"]
    assert det["f1"] is not None and det["map50"]["evaluator"].startswith("faster-coco-eval")
    assert det["map50"]["int8"] >= det["map50"]["fp32"] - 0.03
    assert r["model"]["exporter"]["exporter"].startswith("Ultralytics")


@pytest.mark.slow
def test_an_accuracy_target_on_the_ultralytics_export_is_met(tmp_path):
    r = quantize(yolo_job(tmp_path, tuning=TuningSettings(max_drop=1.0, minutes=5))).report
    t = r["tuning"]
    assert t["met"] and t["target"]["metric"] == "detection_ap50_vs_fp32" and t["target"]["required"] == pytest.approx(0.99)


def test_check_norm_flags_0_255_input_on_the_ultralytics_export(capsys):
    code = main(["check-norm", str(YOLO), "--images", str(DETECTOR / "calib"), "--preset", "raw", "--resize", "letterbox",
                 "--pad-value", "114"])
    out = capsys.readouterr().out
    assert code == 3, out
    assert "unit" in out.splitlines()[-1]  # x/255, what Ultralytics feeds


@pytest.mark.parametrize("preset, flagged", [("imagenet", False), ("raw", True)])
def test_check_norm_on_the_text_detector_stays_quiet_on_its_own_preprocessing(capsys, preset, flagged):
    """Text covers a tenth of the picture: a wrong preprocessing that lights up half of it must not look better."""
    code = main(["check-norm", str(EXPORTS / "dbnet_text.onnx"), "--images", str(EXPORTS / "text" / "calib"), "--preset", preset,
                 "--resize", "stretch", "--size", "240x320", "--max-images", "24"])
    out = capsys.readouterr().out
    assert code == (3 if flagged else 0), out
    if flagged:
        assert any(p in out.splitlines()[-1] for p in ("imagenet", "unit", "pm1"))


def test_the_cli_takes_the_exporters_preprocessing_and_says_so(tmp_path, capsys):
    out = tmp_path / "y.onnx"
    code = main(["quantize", str(YOLO), "--calib", str(DETECTOR / "calib"), "--max-images", "16", "--eval-max-images", "16",
                 "--latency-runs", "2", "--out", str(out), "--save-job", str(tmp_path / "job.json"), "--no-cache"])
    err = capsys.readouterr().err
    assert code == 0 and "preprocessing: Ultralytics export" in err
    saved = json.loads((tmp_path / "job.json").read_text())["preprocess"]
    assert saved["std"] == [255.0] * 3 and saved["resize"] == "letterbox" and saved["pad_value"] == 114
    assert saved["size"] is None  # taken from the file each time, not frozen into the job


def test_the_dynamo_text_detector_is_a_map_at_the_chosen_size(tmp_path):
    model = EXPORTS / "dbnet_text.onnx"
    info = inspect_model(model)
    assert info.task_outputs[0].shape[2:] == (None, None) or not all(isinstance(d, int) for d in info.outputs[0].shape[2:])
    assert "?" in info.outputs_text()[0]  # never the exporter's expression
    sized = inspect_model(model, size=(240, 320))
    assert sized.task_outputs[0].shape[1:] == (1, 60, 80) and detect_task(sized).kind == "dense"
    job = Job(model, tmp_path / "db.int8.onnx", stated("dbnet_text.onnx"), CalibrationSettings((EXPORTS / "text" / "calib",), max_images=40),
              evaluation=EvalSettings((EXPORTS / "text" / "eval" / "images",), max_images=30, latency_runs=5,
                                      per_layer_images=2, noise_images=20))
    r = quantize(job).report
    head = r["fidelity"]["headline"]
    assert head["metric"] == "dense_iou" and head["value"] >= 0.90 and head["noise_floor"]["images"] == 20


def test_the_torchscript_matte_net_with_a_symbolic_channel_is_a_map(tmp_path):
    model = EXPORTS / "unet_matte.onnx"
    assert detect_task(inspect_model(model)).kind == "generic"  # no size: nothing to run it at
    info = inspect_model(model, size=(192, 192))
    assert detect_task(info).kind == "dense"
    job = Job(model, tmp_path / "m.int8.onnx", stated("unet_matte.onnx"), CalibrationSettings((DETECTOR / "calib",), max_images=40),
              evaluation=EvalSettings((DETECTOR / "eval" / "images",), max_images=30, latency_runs=5, per_layer_images=2,
                                      noise_images=10))
    r = quantize(job).report
    assert r["task"]["kind"] == "dense" and r["fidelity"]["headline"]["value"] >= 0.90


def test_the_vit_and_the_paddle_classifiers_keep_their_top1(tmp_path):
    for name in ("vit_tiny_shapes.onnx", "paddle_shapes_cls.onnx"):
        model = EXPORTS / name
        info = inspect_model(model)
        assert detect_task(info).kind == "classification"
        if name.startswith("paddle"):
            assert info.exporter.exporter.startswith("Paddle2ONNX")
        job = Job(model, tmp_path / f"{name}.int8.onnx", stated(name), CalibrationSettings((DEMO / "calib",), max_images=60),
                  evaluation=EvalSettings((DEMO / "eval",), labels_from="csv", labels_csv=DEMO / "labels.csv", max_images=120,
                                          latency_runs=5, per_layer_images=2))
        acc = quantize(job).report["accuracy"]
        assert acc["int8"]["top1"] >= acc["fp32"]["top1"] - 0.02, (name, acc)


def test_nothing_in_a_run_imports_the_exporters(tmp_path):
    code = (
        "import sys\n"
        "from guiapp.cli import main\n"
        f"main(['inspect', {str(YOLO)!r}])\n"
        "bad = sorted(m for m in ('torch', 'ultralytics', 'paddle', 'paddle2onnx', 'timm', 'tensorflow') if m in sys.modules)\n"
        "print('IMPORTED', bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert "IMPORTED []" in out.stdout, out.stdout + out.stderr
