"""`guiapp check-norm` and the quiet check before every quantization."""

from __future__ import annotations

import json

import pytest

from colour_model import colour_classifier, colour_images
from guiapp.core.notes import texts
from guiapp.cli import main
from guiapp.core.evaluate import normcheck
from guiapp.core import run as pipeline
from guiapp.core.job import CalibrationSettings, EvalSettings, Job
from guiapp.core.data.preprocess import preset


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_colours")
    colour_images(d / "images", per_class=6)
    colour_classifier(d / "m.onnx", preset("imagenet"))
    return d


def test_right_setting_exits_0_and_shows_the_ranking(setup, capsys):
    code = main(["check-norm", str(setup / "m.onnx"), "--images", str(setup / "images"), "--preset", "imagenet", "--resize", "stretch"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Normalization check: m.onnx (classification), 32 images" in out
    assert "*imagenet (RGB), your setting" in out and "is in the best group" in out.splitlines()[-1]


def test_a_clearly_better_setting_exits_3_and_is_named_on_the_last_line(setup, capsys):
    code = main(["check-norm", str(setup / "m.onnx"), "--images", str(setup / "images"), "--preset", "imagenet",
                 "--color", "bgr", "--resize", "stretch"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 3
    assert lines[-1] == ("Suggested: imagenet (RGB): RGB, mean (123.675, 116.28, 103.53), std (58.395, 57.12, 57.375) "
                         "(--preset imagenet)")
    assert "more plausible with imagenet (RGB)" in lines[-2]


def test_json_lists_the_candidates_best_first(setup, capsys):
    code = main(["check-norm", str(setup / "m.onnx"), "--images", str(setup / "images"), "--preset", "raw", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert code == 3 and d["verdict"] == "worse" and d["current_in_best_group"] is False
    groups = [c["group"] for c in d["candidates"]]
    assert groups == sorted(groups) and groups[0] == 1
    first = d["candidates"][0]
    assert {"label", "color", "mean", "std", "score", "group", "current"} <= set(first)
    assert d["suggestion"]["color"] == "rgb" and sum(c["current"] for c in d["candidates"]) == 1


def test_labels_and_bad_input(setup, tmp_path, capsys):
    code = main(["check-norm", str(setup / "m.onnx"), "--images", str(setup / "images"), "--labels", "subfolders",
                 "--preset", "imagenet", "--resize", "stretch"])
    assert code == 0 and "Score: top-1 accuracy" in capsys.readouterr().out
    assert main(["check-norm", str(setup / "m.onnx"), "--images", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "broken.onnx").write_bytes(b"nope")
    assert main(["check-norm", str(tmp_path / "broken.onnx"), "--images", str(setup / "images")]) == 2
    assert main(["check-norm", str(setup / "m.onnx"), "--images", str(setup / "images"), "--max-images", "0"]) == 2


def quantize(setup, tmp_path, name):
    job = Job(model=setup / "m.onnx", output=tmp_path / "m.int8.onnx", preprocess=preset(name, resize="stretch"),
              calibration=CalibrationSettings(folders=(setup / "images",), max_images=16),
              evaluation=EvalSettings(max_images=8, latency_runs=2, per_layer_images=0))
    return pipeline.quantize(job).report


def test_the_quiet_check_warns_in_the_report_when_the_setting_is_clearly_worse(setup, tmp_path):
    bad = quantize(setup, tmp_path, "raw")
    assert bad["normalization_check"]["verdict"] == "worse"
    assert any(w.startswith("preprocessing: The model's outputs are") and "Suggested: imagenet (RGB)" in w for w in texts(bad["warnings"]))
    (tmp_path / "good").mkdir()
    good = quantize(setup, tmp_path / "good", "imagenet")
    assert good["normalization_check"]["verdict"] == "ok"
    assert not any(w.startswith("preprocessing:") for w in texts(good["warnings"]))


def test_the_quiet_check_steps_aside_when_it_would_be_slow(setup, tmp_path, monkeypatch):
    monkeypatch.setattr(normcheck, "QUIET_BUDGET_S", 0.0)
    r = quantize(setup, tmp_path, "raw")
    assert r["normalization_check"]["verdict"] == "skipped" and "check-norm" in r["normalization_check"]["message"]
    assert not any(w.startswith("preprocessing:") for w in texts(r["warnings"]))
