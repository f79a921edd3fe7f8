"""Heads that say more than boxes, end to end: a CenterFace-like heatmap head
with landmarks, a YOLOv8-pose-like output with Ultralytics' metadata and a
YOLOv8-seg-like pair are quantized and judged as detectors (boxes, AP50
against FP32), with keypoint errors where there are keypoints, and pictures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from builders import image_folder, save
from task_models import centerface_net, yolo_pose_net, yolo_seg_net
from guiapp.core.data.preprocess import preset
from guiapp.core.job import CalibrationSettings, EvalSettings, Job, QuantSettings
from guiapp.core.model.modelinfo import inspect_model
from guiapp.core.report.summary import summary_rows
from guiapp.core.run import quantize
from guiapp.core.tasks import TASKS, detect_task
from guiapp.core.tasks.base import PlausibilityInput
from guiapp.core.tasks.detection import DetectionOptions
from guiapp.core.tasks.detection_view import PICTURES

HW = 64
SPEC = preset("imagenet", resize="letterbox")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("head_images")
    image_folder(root / "calib", 40, seed=1)
    image_folder(root / "eval", 30, seed=2)
    return root / "calib", root / "eval"


def run_report(model: onnx.ModelProto, path: Path, folders) -> dict:
    calib, eval_dir = folders
    saved = save(model, path)
    job = Job(saved, saved.with_name(saved.stem + ".int8.onnx"), SPEC, CalibrationSettings((calib,), max_images=40),
              QuantSettings(), EvalSettings((eval_dir,), max_images=40, latency_runs=3, per_layer_images=0))
    report = quantize(job).report
    json.dumps(report)  # the report is written as JSON: everything in it must be
    return report


def check_detection(r: dict, kind: str) -> dict:
    """What every head judged as a detector shows: its layout, AP50 against
    FP32 as the headline, boxes on both sides, pictures that draw."""
    assert r["task"]["kind"] == "detection"
    assert r["task"]["detection"]["kind"] == kind
    det = r["fidelity"]["detection"]
    assert det["layout"]["kind"] == kind and det["compared"] == "boxes" and det["boxes_normalized"] is False
    head = r["fidelity"]["headline"]
    assert head["metric"] == "detection_ap50_vs_fp32" and head["value"] == det["ap50_vs_fp32"]
    assert 0.7 <= det["ap50_vs_fp32"] <= 1.0 and not head["broken"]
    assert det["fp32_boxes"] > 30 and det["matched"] > 0.8 * det["fp32_boxes"]
    assert det["samples"]
    for sample in det["samples"][:3]:
        picture = PICTURES.draw(sample, det, SPEC.resolved("nchw", (HW, HW)), None)
        assert isinstance(picture, Image.Image) and picture.width >= HW
    assert PICTURES.usable(det)
    return det


def check_keypoints(r: dict, det: dict, per_box: int, values: int) -> None:
    kp = det["keypoints"]
    assert (kp["per_box"], kp["values"], kp["visible_only"]) == (per_box, values, values == 3)
    assert kp["pairs"] > 0 and kp["pairs"] <= det["matched"]
    assert 0 < kp["points"] <= kp["pairs"] * per_box
    assert 0 <= kp["mean_px"] <= kp["p95_px"] <= kp["max_px"]
    assert kp["mean_px"] < 1.5  # on a 64x64 input: INT8 moves keypoints by a fraction of a pixel, mostly
    assert kp["pck"]["2 px"] > 0.8 and 0 <= kp["pck"]["5% of box"] <= 1
    rows = {row[0]: row[2] for row in summary_rows(r)}
    shift = next(v for k, v in rows.items() if k.startswith("Keypoint shift of matched boxes"))
    assert shift.startswith(f"mean {kp['mean_px']:.2f} px")
    assert any(k.startswith("Keypoints within 2 px / 5% of box") for k in rows)
    sample = next(s for s in det["samples"] if s["fp32"]["scores"])
    kps = np.asarray(sample["fp32"]["keypoints"])
    assert kps.shape == (len(sample["fp32"]["scores"]), per_box, values)
    assert "keypoints: FP32 dots, INT8 crosses" in PICTURES.legend(det)


def test_centerface_like_head_is_judged_by_its_faces_and_landmarks(tmp_path, folders):
    r = run_report(centerface_net(hw=HW), tmp_path / "centerface.onnx", folders)
    det = check_detection(r, "centernet")
    cn = det["layout"]["centernet"]
    assert (cn["heatmap"], cn["size"], cn["offset"], cn["landmarks"]) == ("537", "538", "539", "540")
    assert (cn["style"], cn["stride"], cn["size_format"], cn["sigmoid"]) == ("centerface", 4, "log", False)
    assert det["layout_text"] == ("CenterFace-style heatmap head: 1 class in 537 (16x16 maps) at stride 4, sizes in 538 "
                                  "(log-encoded: exp(value) x stride), offsets in 539, 5 landmarks (x, y) in 540; "
                                  "one box at each peak of the heatmap")
    check_keypoints(r, det, per_box=5, values=2)


def test_yolo_pose_head_with_metadata_keeps_its_keypoints(tmp_path, folders):
    r = run_report(yolo_pose_net(hw=HW), tmp_path / "pose.onnx", folders)
    assert r["task"]["reason"].startswith("task=pose (boxes and keypoints) in the file's metadata")
    det = check_detection(r, "yolo_pose")
    assert det["layout"]["head"]["keypoints"] == [17, 3] and det["layout"]["classes"] == 1
    assert det["layout_text"] == "YOLOv8/11 pose head: 1 class, 17 keypoints (x, y, visibility) in output0 [N, 56, 84]"
    check_keypoints(r, det, per_box=17, values=3)
    out = next(o for o in r["outputs"] if o["name"] == "output0")
    assert out["worst_group"]["group"].startswith(("keypoint", "class scores", "box values"))
    assert any(p["output"] == "output0" for p in r["protected_outputs"])  # boxes in pixels beside 0..1 scores


def test_yolo_seg_pair_is_judged_by_its_boxes(tmp_path, folders):
    r = run_report(yolo_seg_net(hw=HW), tmp_path / "seg.onnx", folders)
    det = check_detection(r, "yolo_seg")
    assert det["layout"]["head"]["protos"] == "output1" and det["layout"]["classes"] == 2
    assert det["layout_text"] == ("YOLOv8/11 segmentation head: 2 classes and 32 mask coefficients in output0 [N, 38, 84], "
                                  "prototype masks in output1 [N, 32, 16, 16]; judged by its boxes (the prototype masks "
                                  "are compared value by value like any output)")
    assert det["keypoints"] is None
    assert not any(row[0].startswith("Keypoint") for row in summary_rows(r))
    names = {o["name"] for o in r["outputs"]}
    assert names == {"output0", "output1"}  # the prototypes compared value by value
    out = next(o for o in r["outputs"] if o["name"] == "output0")
    assert out["worst_group"]["group"].split(" (")[0] in ("box values", "class scores", "mask coefficients")


def test_heads_are_judged_plausible_under_the_normalization_check(tmp_path):
    """The normalization check reads these heads too: every cell (CenterNet)
    or anchor (YOLO heads) backs the confident boxes."""
    rng = np.random.default_rng(0)
    for name, model in (("centerface", centerface_net(hw=HW)), ("pose", yolo_pose_net(hw=HW)), ("seg", yolo_seg_net(hw=HW))):
        info = inspect_model(save(model, tmp_path / f"{name}.onnx"))
        guess = detect_task(info)
        sess = ort.InferenceSession(str(tmp_path / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        x = rng.standard_normal((4, 3, HW, HW)).astype(np.float32)
        outputs = dict(zip(names, sess.run(names, {"image": x})))
        judged = TASKS["detection"].plausibility(guess, PlausibilityInput(outputs, {}, DetectionOptions()))
        assert np.isfinite(judged.score) and 0 <= judged.score <= 1
        assert judged.metric == "backed detections"
