"""Detectors and mask models end to end: the fidelity numbers, output
protection, box labels, and the exporters' quirks found on the way."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from builders import convnet, image_folder, save
from task_models import mask_net, ssd_pair_net, yolo_head_net
from guiapp.core.notes import texts
from guiapp.core.errors import DatasetError
from guiapp.core.job import CalibrationSettings, EvalSettings, Job, QuantSettings
from guiapp.core.model.modelinfo import inspect_model
from guiapp.core.run import quantize
from guiapp.core.data.preprocess import placement, preset
from guiapp.core.report.summary import summary_rows


def job_for(model: Path, calib: Path, eval_dir: Path | None, **quant) -> Job:
    return Job(
        model, model.with_name(model.stem + ".int8.onnx"), preset("imagenet", resize="letterbox"),
        CalibrationSettings((calib,), max_images=40),
        QuantSettings(**quant),
        EvalSettings((eval_dir,) if eval_dir else (), max_images=40, latency_runs=3, per_layer_images=2),
    )


@pytest.fixture
def folders(tmp_path):
    image_folder(tmp_path / "calib", 40, seed=1)
    image_folder(tmp_path / "eval", 30, seed=2)
    return tmp_path / "calib", tmp_path / "eval"


def test_yolo_head_is_protected_and_keeps_fp32_boxes(tmp_path, folders):
    model = save(yolo_head_net(), tmp_path / "yolo.onnx")
    r = quantize(job_for(model, *folders)).report
    assert r["task"]["kind"] == "detection"
    det = r["fidelity"]["detection"]
    assert det["fp32_boxes"] > 100  # the threshold leaves plenty to compare
    assert det["f1"] >= 0.95 and det["score_mae"] < 0.02
    (prot,) = r["protected_outputs"]
    assert "head_concat" in prot["nodes"] and "cls_sigmoid" in prot["nodes"]
    assert "ranges differ" in prot["reason"]
    assert r["agreement"] is None and r["accuracy"] is None  # top-1 means nothing for a detector
    head = r["fidelity"]["headline"]
    assert head["metric"] == "detection_ap50_vs_fp32" and not head["broken"] and head["value"] >= 0.9
    assert any(row[0].startswith("AP50 vs FP32") for row in summary_rows(r))


def test_without_protection_the_scores_are_crushed_and_the_numbers_say_so(tmp_path, folders):
    model = save(yolo_head_net(), tmp_path / "yolo.onnx")
    r = quantize(job_for(model, *folders, protect_outputs=False)).report
    assert r["protected_outputs"] == []
    out = r["outputs"][0]
    # The whole-tensor SQNR looks fine (the box rows dominate); the score rows do not.
    assert out["sqnr_db"] > 30
    assert out["worst_group"]["group"].startswith("class scores") and out["worst_group"]["sqnr_db"] < 10
    assert r["fidelity"]["detection"]["f1"] < 0.8


def test_box_labels_give_map_for_both_models(tmp_path, folders):
    """Labels made from FP32's own boxes (mapped back to the source images)
    give FP32 a mAP of 1; YOLO text files and COCO JSON agree."""
    calib, eval_dir = folders
    model = save(yolo_head_net(), tmp_path / "yolo.onnx")
    job = job_for(model, calib, eval_dir)
    first = quantize(replace(job, evaluation=replace(job.evaluation, per_layer_images=0)), overwrite=True).report
    det = first["fidelity"]["detection"]
    assert len(det["samples"]) == 12
    labels_dir = tmp_path / "labels"
    labels_dir.mkdir()
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    spec = job.preprocess.resolved("nchw", (32, 32))
    for i, s in enumerate(det["samples"]):
        f = Path(s["file"])
        w, h = 48, 40  # image_folder's pictures
        pl = placement(spec, w, h)
        b = np.array(s["fp32"]["boxes"]).reshape(-1, 4)
        src = np.stack([(b[:, 0] - pl.dx) / pl.sx, (b[:, 1] - pl.dy) / pl.sy, (b[:, 2] - pl.dx) / pl.sx, (b[:, 3] - pl.dy) / pl.sy], 1)
        lines = [f"{c} {(x1 + x2) / 2 / w} {(y1 + y2) / 2 / h} {(x2 - x1) / w} {(y2 - y1) / h}"
                 for (x1, y1, x2, y2), c in zip(src, s["fp32"]["classes"])]
        (labels_dir / (f.stem + ".txt")).write_text("\n".join(lines))
        coco["images"].append({"id": i, "file_name": f.name, "width": w, "height": h})
        coco["annotations"] += [{"id": len(coco["annotations"]), "image_id": i, "category_id": c + 1,
                                 "bbox": [x1, y1, x2 - x1, y2 - y1]} for (x1, y1, x2, y2), c in zip(src, s["fp32"]["classes"])]
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    # Evaluate on exactly the labeled images.
    only = tmp_path / "only"
    only.mkdir()
    for s in det["samples"]:
        os.link(s["file"], only / Path(s["file"]).name)
    for source, path in (("yolo", labels_dir), ("coco", tmp_path / "coco.json")):
        ev = replace(job.evaluation, folders=(only,), labels_from=source, labels_csv=path, per_layer_images=0)
        r = quantize(replace(job, evaluation=ev), overwrite=True).report
        m = r["fidelity"]["detection"]["map50"]
        assert m["labeled_images"] == 12
        assert m["fp32"] == pytest.approx(1.0, abs=0.02)
        assert 0.8 <= m["int8"] <= 1.0


def test_ssd_pair_counts_faces_like_fp32(tmp_path, folders):
    model = save(ssd_pair_net(), tmp_path / "ssd.onnx")
    r = quantize(job_for(model, *folders)).report
    det = r["fidelity"]["detection"]
    assert det["layout"]["kind"] == "pair" and det["layout"]["background"] is True
    assert det["boxes_normalized"] is True
    assert det["fp32_boxes"] > 0 and det["f1"] >= 0.9
    assert any("Softmax" in p["reason"] for p in r["protected_outputs"])


def test_mask_model_reports_iou(tmp_path, folders):
    model = save(mask_net(), tmp_path / "mask.onnx")
    r = quantize(job_for(model, *folders)).report
    assert r["task"]["kind"] == "dense"
    dense = r["fidelity"]["dense"]
    assert dense["threshold"] == 0.5 and dense["iou"] > 0.8
    assert r["fidelity"]["headline"]["label"] == "Mask IoU vs FP32"


def test_broken_headline_becomes_a_warning(tmp_path, folders):
    # Boxes up to 1000 px: one INT8 step is ~4, so every score becomes 0.
    model = save(yolo_head_net(box_scale=1000.0), tmp_path / "yolo.onnx")
    r = quantize(job_for(model, *folders, protect_outputs=False)).report
    head = r["fidelity"]["headline"]
    assert head["broken"]
    assert any(w.startswith("the INT8 model looks broken for its task: AP50 vs FP32") for w in texts(r["warnings"]))


def test_evaluation_folder_equal_to_calibration_holds_images_back_before_calibrating(tmp_path):
    image_folder(tmp_path / "imgs", 20, seed=3)
    model = save(convnet(), tmp_path / "net.onnx")
    job = Job(model, tmp_path / "net.int8.onnx", preset("imagenet"), CalibrationSettings((tmp_path / "imgs",), max_images=200),
              QuantSettings(), EvalSettings((tmp_path / "imgs",), latency_runs=3, per_layer_images=0))
    r = quantize(job).report
    assert r["calibration"]["images_used"] == 16 and r["eval"]["images_used"] == 4
    assert any("held back from calibration" in w for w in texts(r["warnings"]))
    one = tmp_path / "one"
    image_folder(one, 1, seed=4)
    stages = []
    with pytest.raises(DatasetError, match="only evaluation image"):
        quantize(replace(job, output=tmp_path / "one.int8.onnx", calibration=replace(job.calibration, folders=(one,)),
                         evaluation=replace(job.evaluation, folders=(one,))), progress=lambda e: stages.append(e.stage))
    assert "calibrate" not in stages  # said up front, not after the work
    assert not (tmp_path / "one.int8.onnx").exists()


def test_paddle_style_minus_one_dims_are_dynamic(tmp_path, calib_dir):
    m = convnet(batch="N")
    for vi in (m.graph.input[0], m.graph.output[0]):
        d = vi.type.tensor_type.shape.dim[0]
        d.Clear()
        d.dim_value = -1
    model = save(m, tmp_path / "paddle.onnx")
    info = inspect_model(model)
    assert info.image_input.batch is None and info.image_input.fixed_batch is None
    assert not any("fixed to" in n for n in info.notes)
    r = quantize(Job(model, tmp_path / "p.int8.onnx", preset("imagenet"), CalibrationSettings((calib_dir,), max_images=12),
                     QuantSettings(), EvalSettings(latency_runs=3, per_layer_images=0))).report
    assert r["eval"]["images_used"] > 0


def test_declared_but_unused_domain_is_not_a_custom_operator(tmp_path):
    m = convnet()
    m.opset_import.append(helper.make_opsetid("Paddle", 1))
    info = inspect_model(save(m, tmp_path / "p.onnx"))
    assert not any("custom operator" in n for n in info.notes)
    m.graph.node.append(helper.make_node("Foo", ["logits"], ["foo"], domain="my.ops", name="foo"))
    info = inspect_model(save(m, tmp_path / "q.onnx"))
    assert any("my.ops" in n for n in info.notes)


def test_unnamed_nodes_are_named_so_protection_can_name_them(tmp_path, folders):
    m = yolo_head_net()
    for n in m.graph.node:
        n.name = ""
    r = quantize(job_for(save(m, tmp_path / "anon.onnx"), *folders)).report
    (prot,) = r["protected_outputs"]
    assert any(n.startswith("Concat_") for n in prot["nodes"])
    assert r["fidelity"]["detection"]["f1"] >= 0.95
