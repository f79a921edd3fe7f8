"""An evaluation split across workers gives the numbers one process gives:
the same images (unreadable ones skipped and read past the same way), the
same counts, the same task metric, the same noise floor; a shard whose
worker is killed runs again; one that dies twice ends the run in words."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

import scale_jobs
from guiapp.cli import main
from guiapp.core.demo import demo_folder
from guiapp.core.evaluate import shards
from guiapp.core.run import load_job, quantize

SHARD = 24  # images per shard in these tests (the real minimum is large: starting a worker costs a second)


@pytest.fixture(scope="module")
def demo_int8(tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("int8")
    job = load_job(demo_folder() / "demo.job.json")
    job = replace(job, output=out / "demo.int8.onnx", report=None, cache=None,
                  calibration=replace(job.calibration, max_images=40),
                  evaluation=replace(job.evaluation, max_images=8, latency_runs=0, per_layer_images=2))
    quantize(job)
    return demo_folder() / "model.onnx", out / "demo.int8.onnx"


@pytest.fixture
def images(tmp_path) -> Path:
    """Demo images in their class folders, with unreadable files among them."""
    root = tmp_path / "eval"
    for cls in sorted((demo_folder() / "eval").iterdir()):
        (root / cls.name).mkdir(parents=True)
        for p in sorted(cls.iterdir())[:20]:
            shutil.copy(p, root / cls.name / p.name)
        (root / cls.name / "broken.png").write_bytes(b"not a png")
    return root


def evaluate(models, images: Path, report: Path, *flags: str, labels: tuple[str, ...] = ("--labels", "subfolders")) -> dict:
    fp32, int8 = models
    code = main(["evaluate", str(fp32), str(int8), "--images", str(images), *labels,
                 "--latency-runs", "0", "--report", str(report), *flags])
    assert code == 0
    return json.loads(report.read_text())


def same_numbers(a: dict, b: dict) -> None:
    assert a["eval"]["images_used"] == b["eval"]["images_used"]
    assert a["eval"]["skipped_files"] == b["eval"]["skipped_files"]
    assert a["accuracy"] == b["accuracy"] and a["agreement"] == b["agreement"]
    assert a["fidelity"]["headline"] == b["fidelity"]["headline"]
    for x, y in zip(a["outputs"], b["outputs"], strict=True):
        assert x["name"] == y["name"]
        assert x["sqnr_db"] == pytest.approx(y["sqnr_db"], rel=1e-9)  # sums added in another order
        assert x["cosine"] == pytest.approx(y["cosine"], rel=1e-12)


def test_split_across_two_workers_gives_one_process_numbers(demo_int8, images, tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "SHARD_IMAGES", SHARD)
    one = evaluate(demo_int8, images, tmp_path / "one.json", "--workers", "1")
    two = evaluate(demo_int8, images, tmp_path / "two.json", "--workers", "2")
    assert one["eval"]["images_used"] == 120 and one["eval"]["images_skipped"] == 6
    assert one["accuracy"]["labeled_images"] == 120
    same_numbers(one, two)


def test_unreadable_files_inside_the_limit_are_read_past_as_one_process_does(demo_int8, images, tmp_path, monkeypatch):
    """Fewer readable images than the limit in the shards: the split run reads on past them, to the same images."""
    monkeypatch.setattr(shards, "SHARD_IMAGES", SHARD)
    one = evaluate(demo_int8, images, tmp_path / "one.json", "--workers", "1", "--max-images", "60")
    two = evaluate(demo_int8, images, tmp_path / "two.json", "--workers", "2", "--max-images", "60")
    assert one["eval"]["images_used"] == 60 and one["eval"]["images_skipped"] >= 1  # some broken file falls in the first 60
    same_numbers(one, two)


def test_a_shard_whose_worker_is_killed_runs_again(demo_int8, images, tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "SHARD_IMAGES", SHARD)
    monkeypatch.setenv(scale_jobs.MARKER_ENV, str(tmp_path / "marker"))
    one = evaluate(demo_int8, images, tmp_path / "one.json", "--workers", "1")
    monkeypatch.setattr(shards, "compare_shard", scale_jobs.shard_that_dies_once)
    two = evaluate(demo_int8, images, tmp_path / "two.json", "--workers", "2")
    assert (tmp_path / "marker").exists()  # a worker did die
    same_numbers(one, two)


def test_a_shard_that_dies_twice_ends_the_evaluation_in_words(demo_int8, images, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shards, "SHARD_IMAGES", SHARD)
    monkeypatch.setattr(shards, "compare_shard", scale_jobs.shard_that_always_dies)
    report = tmp_path / "r.json"
    fp32, int8 = demo_int8
    code = main(["evaluate", str(fp32), str(int8), "--images", str(images), "--latency-runs", "0",
                 "--report", str(report), "--workers", "2"])
    err = capsys.readouterr().err
    assert code != 0 and "failed twice" in err and "killed by signal 9" in err and "--workers 1" in err
    assert not report.exists()


def test_a_map_and_its_noise_floor_split_across_workers(tmp_path, monkeypatch):
    """A dense map (a text detector's probabilities): IoU and the noise floor (each image's noise
    seeded by its place, on the first 100 images only) as one process measures them."""
    from builders import image_folder
    from task_models import mask_net

    monkeypatch.setattr(shards, "SHARD_IMAGES", SHARD)
    mask_net(tmp_path / "a.onnx", seed=0)
    mask_net(tmp_path / "b.onnx", seed=1)  # another net: the numbers mean something
    image_folder(tmp_path / "imgs", 130, size=(40, 36))
    models = (tmp_path / "a.onnx", tmp_path / "b.onnx")
    common = ("--task", "dense", "--mean", "127.5", "--std", "64")
    one = evaluate(models, tmp_path / "imgs", tmp_path / "one.json", "--workers", "1", *common, labels=())
    two = evaluate(models, tmp_path / "imgs", tmp_path / "two.json", "--workers", "2", *common, labels=())
    floor = one["fidelity"]["headline"]["noise_floor"]
    assert floor["images"] == 100 and 0 < floor["value"] < 1
    assert one["fidelity"]["dense"]["iou"] < 0.99
    same_numbers(one, two)
    assert one["fidelity"]["dense"] == two["fidelity"]["dense"] | {
        k: pytest.approx(one["fidelity"]["dense"][k], rel=1e-9) for k in ("map_sqnr_db", "map_cosine", "mean_abs_error")}


def test_a_detector_split_across_workers(tmp_path, monkeypatch):
    """Detection: boxes matched, AP50 vs FP32 over every image's ranked boxes, the noise floor,
    the pictures picked: as one process gives them."""
    from builders import image_folder
    from task_models import yolo_head_net

    monkeypatch.setattr(shards, "SHARD_IMAGES", SHARD)
    yolo_head_net(tmp_path / "a.onnx")
    yolo_head_net(tmp_path / "b.onnx", box_scale=285.0)  # boxes a little off: the numbers are not all 1
    image_folder(tmp_path / "imgs", 110, size=(40, 36))
    models = (tmp_path / "a.onnx", tmp_path / "b.onnx")
    common = ("--task", "detection", "--preset", "imagenet", "--resize", "letterbox")
    one = evaluate(models, tmp_path / "imgs", tmp_path / "one.json", "--workers", "1", *common, labels=())
    two = evaluate(models, tmp_path / "imgs", tmp_path / "two.json", "--workers", "2", *common, labels=())
    det1, det2 = one["fidelity"]["detection"], two["fidelity"]["detection"]
    assert det1["images"] == 110 and det1["fp32_boxes"] > 100 and 0.2 < det1["f1"] < 0.999
    assert one["fidelity"]["headline"]["noise_floor"]["images"] == 100
    same_numbers(one, two)
    assert det1 == det2


@pytest.mark.ray
def test_split_across_a_local_ray_instance_gives_one_process_numbers(demo_int8, images, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setattr(shards, "SHARD_IMAGES", SHARD)
    one = evaluate(demo_int8, images, tmp_path / "one.json", "--workers", "1")
    ray = evaluate(demo_int8, images, tmp_path / "ray.json", "--ray", "local")
    same_numbers(one, ray)
