"""Acceptance on real models from ../shared/assets (skipped when absent).

Preprocessing comes from models/specs.json, the assets' own statement of
what each model needs; reproducing the FP32 reference accuracy proves our
preprocessing is right.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from guiapp.core import run as pipeline
from guiapp.core.data.dataset import labels_from_csv, list_images
from guiapp.core.job import CalibrationSettings, EvalSettings, Job
from guiapp.core.data.preprocess import PreprocessSpec, load_tensor
from guiapp.core.tasks import TaskSettings
from guiapp.core.tasks.detection import DetectionOptions

pytestmark = pytest.mark.realmodels


def specs(assets):
    return json.loads((assets / "models" / "specs.json").read_text())


def spec_from_assets(entry: dict) -> PreprocessSpec:
    pp = entry["preprocess"]
    resize = pp["resize"]
    if resize.startswith("shorter side"):
        kw = {"resize": "shorter", "resize_shorter": int(resize.split()[2].rstrip(","))}
    else:
        kw = {"resize": "stretch"}
    return PreprocessSpec(
        mean=tuple(pp["mean_pixel"]), std=tuple(pp["std_pixel"]), color=pp["color"].lower(), layout=entry["input"]["layout"].lower(), **kw
    )


def quantize_real(assets, tmp_path, name, calib=200, evaluate=800):
    entry = specs(assets)[name]
    imagenet = assets / "imagenet"
    job = Job(
        model=assets / entry["file"],
        output=tmp_path / f"{name}.int8.onnx",
        preprocess=spec_from_assets(entry),
        calibration=CalibrationSettings(folders=(imagenet / "images",), max_images=calib),
        evaluation=EvalSettings(
            folders=(imagenet / "images",),
            labels_from="csv",
            labels_csv=imagenet / "labels.csv",
            class_offset=entry["output"]["class_offset"],
            max_images=evaluate,
            latency_runs=20,
        ),
    )
    return pipeline.quantize(job).report


def test_squeezenet_fp32_top1_reproduces_the_reference(assets):
    entry = specs(assets)["squeezenet1.1"]
    spec = spec_from_assets(entry).resolved("nchw", (224, 224))
    root = assets / "imagenet" / "images"
    files = list_images([root])
    labels = labels_from_csv(assets / "imagenet" / "labels.csv", [root])
    session = ort.InferenceSession(str(assets / entry["file"]), providers=["CPUExecutionProvider"])
    hits = 0
    for i in range(0, len(files), 50):
        chunk = files[i : i + 50]
        logits = session.run(None, {"data": np.stack([load_tensor(f, spec) for f in chunk])})[0]
        hits += int(sum(int(row.argmax()) == labels.get(f) for row, f in zip(logits, chunk)))
    assert len(files) == 1000
    assert hits / 1000 == pytest.approx(entry["reference_fp32"]["top1"], abs=0.01)


@pytest.mark.parametrize("name, max_loss", [("squeezenet1.1", 0.010), ("mobilenetv2_1.0_224", 0.010), ("squeezenet1.0_nhwc", 0.020)])
def test_int8_minmax_per_channel_keeps_accuracy(assets, tmp_path, name, max_loss):
    r = quantize_real(assets, tmp_path, name)
    acc = r["accuracy"]
    assert r["calibration"]["images_used"] == 200
    assert r["eval"]["images_used"] == 800 and acc["labeled_images"] == 800
    assert acc["fp32"]["top1"] - acc["int8"]["top1"] <= max_loss, acc
    if name != "squeezenet1.0_nhwc":
        assert r["int8"]["size_bytes"] <= 0.3 * r["fp32"]["size_bytes"]


def test_mnist_batch1_opset8_keeps_accuracy(assets, tmp_path):
    entry = specs(assets)["mnist"]
    digits = assets / "mnist" / "images"
    job = Job(
        model=assets / entry["file"],
        output=tmp_path / "mnist.int8.onnx",
        preprocess=spec_from_assets(entry),
        calibration=CalibrationSettings(folders=(digits,), max_images=200),
        evaluation=EvalSettings(folders=(digits,), labels_from="subfolders", max_images=800, latency_runs=20),
    )
    r = pipeline.quantize(job).report
    assert r["calibration"]["batch_size"] == 1
    assert r["accuracy"]["labeled_images"] == 800
    assert r["accuracy"]["int8"]["top1"] >= 0.98


def test_ultraface_keeps_the_faces_and_reports_boxes(assets, tmp_path):
    """The SSD-style face detector: on the 36 shared photos (calibrated on
    other photos), INT8 finds as many faces over 0.7 as FP32 on at least 35."""
    entry = specs(assets)["ultraface_rfb320"]
    job = Job(
        model=assets / entry["file"],
        output=tmp_path / "ultraface.int8.onnx",
        preprocess=spec_from_assets(entry),
        calibration=CalibrationSettings(folders=(assets / "imagenet" / "images",), max_images=100),
        evaluation=EvalSettings(folders=(assets / "photos",), max_images=100, latency_runs=10),
        task=TaskSettings(options={"detection": DetectionOptions(score_threshold=0.7)}),
    )
    r = pipeline.quantize(job).report
    assert r["task"]["kind"] == "detection" and r["task"]["detection"]["kind"] == "pair"
    det = r["fidelity"]["detection"]
    assert det["images"] == 36 and det["images_same_count"] >= 35
    assert det["f1"] >= 0.9
    assert r["agreement"] is None  # no "top-1 agreement" for a detector
    # The reference counts in specs.json, per photo, hold for FP32 and INT8.
    counts = {"photos/" + i["file"].split("photos/")[-1]: (i["fp32"], i["int8"]) for i in det["per_image"]}
    for photo, faces in entry["reference_fp32"]["faces_over_0.7_after_nms"].items():
        assert counts[photo][0] == faces, (photo, counts[photo])
