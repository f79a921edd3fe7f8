"""COCO's mAP (guiapp/core/tasks/cocomap.py) against the project's own
matcher and on cases whose answer is known."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from guiapp.core.tasks.boxes import Detections, average_precision, iou_matrix
from guiapp.core.tasks.cocomap import coco_map

SIZE = 640.0


def _boxes(rng, n: int, low: float = 16, high: float = 220) -> np.ndarray:
    xy = rng.uniform(0, SIZE - high, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(low, high, (n, 2))], axis=1)


def _truths(rng, n_images: int, n_classes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to 9 objects an image (some images empty), objects of different
    classes may overlap; objects of one class never do (see the crowd test)."""
    out = []
    for _ in range(n_images):
        boxes, classes = np.zeros((0, 4)), np.zeros(0, np.int64)
        for box, cls in zip(_boxes(rng, int(rng.integers(0, 10))), rng.integers(0, n_classes, 10)):
            if np.any(iou_matrix(box[None], boxes[classes == cls])[0] > 0):
                continue
            boxes, classes = np.vstack([boxes, box]), np.append(classes, cls)
        out.append((boxes, classes))
    return out


def _predict(rng, truths, n_classes: int) -> list[Detections]:
    """A plausible detector: most objects found with jittered boxes, some
    missed, a few with the wrong class, some false positives."""
    out = []
    for boxes, classes in truths:
        found = rng.random(len(boxes)) > 0.15
        wh = np.tile(boxes[:, 2:] - boxes[:, :2], 2)
        pred = (boxes + rng.normal(0, 0.07, boxes.shape) * wh)[found]
        cls = classes[found].copy()
        wrong = rng.random(len(cls)) < 0.05
        cls[wrong] = (cls[wrong] + 1) % n_classes
        n_false = int(rng.integers(0, 4))
        scores = np.concatenate([rng.uniform(0.35, 1.0, len(cls)), rng.uniform(0.05, 0.7, n_false)])
        out.append(Detections(np.vstack([pred, _boxes(rng, n_false)]), scores,
                              np.concatenate([cls, rng.integers(0, n_classes, n_false)]).astype(np.int64)))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_map50_agrees_with_our_own_matcher(seed):
    rng = np.random.default_rng(seed)
    truths = _truths(rng, 30, 6)
    dets = _predict(rng, truths, 6)
    ours, _ = average_precision(dets, truths, iou=0.5)
    got = coco_map(dets, truths)
    # Same 101-point interpolation, same ordering: equal up to rounding.
    assert got["map50"] == pytest.approx(ours, abs=1e-9)
    assert 0.3 < got["map50"] < 0.95
    assert got["map50_95"] < got["map50"] - 0.1


def test_a_detection_goes_to_the_best_still_unmatched_truth():
    """COCO's rule where objects of one class crowd together, which our own
    matcher (boxes.average_precision) follows too."""
    truth = [(np.array([[0, 0, 100, 100], [20, 0, 120, 100]], float), np.array([0, 0]))]
    det = Detections(np.array([[5, 0, 105, 100], [8, 0, 108, 100]], float), np.array([0.9, 0.8]), np.array([0, 0]))
    assert iou_matrix(det.boxes, truth[0][0])[1].tolist() == pytest.approx([0.852, 0.786], abs=1e-3)
    assert coco_map([det], truth)["map50"] == pytest.approx(1.0)
    assert average_precision([det], truth)[0] == pytest.approx(1.0)


def test_perfect_predictions_score_one():
    rng = np.random.default_rng(10)
    truths = _truths(rng, 12, 4)
    dets = [Detections(b, rng.uniform(0.5, 1, len(b)), c) for b, c in truths]
    got = coco_map(dets, truths)
    assert got["map50"] == pytest.approx(1.0) and got["map50_95"] == pytest.approx(1.0)
    assert got["evaluator"].startswith("faster-coco-eval ")


def test_boxes_off_by_a_few_pixels_keep_map50_and_lose_map50_95():
    rng = np.random.default_rng(11)
    truths = [(_boxes(rng, 6, low=60), np.arange(6) % 3) for _ in range(10)]
    dets = [Detections(b + [4, 4, 4, 4], np.linspace(0.9, 0.5, len(b)), c) for b, c in truths]
    got = coco_map(dets, truths)
    assert got["map50"] == pytest.approx(1.0)
    assert got["map50_95"] < 0.8


def test_no_predictions_score_zero():
    rng = np.random.default_rng(12)
    truths = _truths(rng, 8, 3)
    got = coco_map([Detections.empty() for _ in truths], truths)
    assert got["map50"] == 0.0 and got["map50_95"] == 0.0


def test_images_without_truth_count_and_classes_without_truth_do_not():
    box = np.array([[10, 10, 110, 110]], float)
    truths = [(box, np.array([1])), (np.zeros((0, 4)), np.zeros(0, np.int64))]
    hit = Detections(box, np.array([0.5]), np.array([1]))
    assert coco_map([hit, Detections.empty()], truths)["map50"] == pytest.approx(1.0)
    # A better-scored false positive on the image without objects: precision 1/2 at full recall.
    fp = Detections(box, np.array([0.9]), np.array([1]))
    assert coco_map([hit, fp], truths)["map50"] == pytest.approx(0.5)
    # Class 7 has no truth anywhere: COCO leaves it out of the mean.
    other = Detections(box, np.array([0.9]), np.array([7]))
    assert coco_map([hit, other], truths)["map50"] == pytest.approx(1.0)


def test_no_truth_at_all_gives_no_map_and_mismatched_lengths_are_refused():
    empty = (np.zeros((0, 4)), np.zeros(0, np.int64))
    got = coco_map([Detections.empty()], [empty])
    assert got["map50"] is None and got["map50_95"] is None
    with pytest.raises(ValueError):
        coco_map([Detections.empty()], [empty, empty])


def test_writes_nothing_and_prints_nothing(tmp_path, monkeypatch, capfd, caplog):
    """capfd rather than capsys: it sees the C++ part's output too. Its
    result loader logs its steps at DEBUG (no way to pass it a function);
    nothing at INFO, where the command line's --debug would show it."""
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.DEBUG)
    rng = np.random.default_rng(13)
    truths = _truths(rng, 5, 3)
    coco_map(_predict(rng, truths, 3), truths)
    coco_map([Detections.empty() for _ in truths], truths)
    assert os.listdir(tmp_path) == []
    assert capfd.readouterr() == ("", "")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == []
