"""The main job out of the box: `guiapp demo` quantizes the bundled model."""

import json

from guiapp.cli import main
from guiapp.core.demo import demo_folder
from guiapp.core.model.modelinfo import inspect_model


def test_demo_bundle_is_small_and_complete():
    folder = demo_folder()
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert total < 5_000_000
    info = inspect_model(folder / "model.onnx")
    assert info.image_input.channels == 3 and info.blockers == ()
    assert info.ir_version <= 10 and info.opset <= 21
    assert len(list((folder / "calib").iterdir())) >= 200
    assert len(list((folder / "eval").rglob("*.jpg"))) >= 200


def test_demo_runs_end_to_end_and_prints_its_table(tmp_path, capsys):
    assert main(["demo", "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for row in ("Size", "Latency", "Accuracy top1", "FP32", "INT8"):
        assert row in out
    report = json.loads((tmp_path / "demo.report.json").read_text())
    acc = report["accuracy"]
    assert acc["labeled_images"] == 300
    assert acc["fp32"]["top1"] >= 0.90
    assert acc["fp32"]["top1"] - acc["int8"]["top1"] <= 0.02
    assert report["int8"]["size_bytes"] < 0.35 * report["fp32"]["size_bytes"]
    assert inspect_model(tmp_path / "demo.int8.onnx").is_quantized
