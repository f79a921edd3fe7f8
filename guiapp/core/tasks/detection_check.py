"""The normalization check's reading of a detector: how plausible its boxes
are under one preprocessing (see guiapp/core/evaluate/normcheck.py)."""

from __future__ import annotations

import numpy as np

from .base import Judgement, PlausibilityInput, TaskGuess, one_score, weighted_mean
from .boxes import Detections, iou_matrix, match
from .detection_decode import anchor_predictions, decode, resolve

SUPPORT = 3  # a real object lights up several neighbouring anchors; garbage lights up one
SUPPORT_IOU = 0.5
CONFIDENT = 0.5  # the check judges detections from this score on (or the user's threshold, when higher)
# The backed share tells inputs far off the training range (near 0) from sane
# ones (0.6..1 on real photos), not sane ones apart: only a halving is clear.
CLEAR_GAP = 0.5
# A detector on a photo is confident at a few anchors (under 1% for the Ultralytics
# export in tests/exports with its own preprocessing, 0.5% to 0.8% with other sane
# ones); fed 0..255 where it expects 0..1, 27% of them fire. Beyond this share an
# image's score is scaled down by FLOOD / share (a dense crowd stays under it),
# when over FLOOD_ANCHORS fire (a handful of anchors is no flood, whatever their share).
FLOOD = 0.10
FLOOD_ANCHORS = 50


class ConfidentBoxes:
    """Candidates agree by the F1 of their confident detections matched to
    each other (same class, IoU >= 0.5), pooled over the images; 1 when
    neither finds any."""

    def __init__(self, dets: list[Detections]) -> None:
        self.dets = dets

    def agreement(self, other: "ConfidentBoxes") -> float:
        matched = sum(len(match(a, b)) for a, b in zip(self.dets, other.dets))
        total = sum(len(d) for d in self.dets) + sum(len(d) for d in other.dets)
        return 2 * matched / total if total else 1.0


def _backed(boxes: np.ndarray, scores: np.ndarray, det: Detections, threshold: float) -> np.ndarray:
    """For each of ``det``'s detections: whether at least SUPPORT anchors over
    the threshold (itself included) have boxes overlapping it."""
    over = boxes[scores.max(1) > threshold]
    return (iou_matrix(det.boxes, over) >= SUPPORT_IOU).sum(1) >= SUPPORT


def _image_score(boxes: np.ndarray, scores: np.ndarray, det: Detections, threshold: float) -> tuple[float, float]:
    """(score, share of anchors over the threshold) of one image: the backed
    share of its detections, scaled down when anchors fire in a flood."""
    over = int(np.sum(scores.max(1) > threshold)) if scores.size else 0
    fired = over / max(1, len(scores))
    if not len(det):
        return np.nan, fired
    backed = float(np.mean(_backed(boxes, scores, det, threshold)))
    return backed * FLOOD / fired if fired > FLOOD and over > FLOOD_ANCHORS else backed, fired


def plausibility(guess: TaskGuess, inp: PlausibilityInput) -> Judgement:
    """The share of confident detections that several neighbouring anchors
    back, over the images with any: a real object lights up a cluster of
    anchors whose boxes agree; inputs far off the training range light up
    isolated single anchors, or nothing (score 0), or a flood of confident
    anchors (scaled down beyond ``FLOOD``). Deliberately blind to how high
    the scores are: a larger input makes a detector more confident without
    making it more right. Boxes that cannot be decoded: the best score per
    image (which does favour larger inputs)."""
    assert guess.detail is not None
    s = inp.options  # DetectionOptions
    threshold = max(s.score_threshold, CONFIDENT)
    layout = resolve(guess.detail, inp.outputs, s.box_format)
    dets = decode(layout, inp.outputs, threshold, s.nms_iou)
    boxes, scores = anchor_predictions(layout, inp.outputs)
    n = len(dets)
    found = sum(len(d) for d in dets)
    fired = None
    if boxes is None:
        values = np.array([float(d.scores.max()) if len(d) else 0.0 for d in dets])
        backed = None
    else:
        values, fired_each = (np.array(v) for v in zip(*(_image_score(boxes[i], scores[i], d, threshold)
                                                          for i, d in enumerate(dets))))
        backed = int(sum(int(_backed(boxes[i], scores[i], d, threshold).sum()) for i, d in enumerate(dets) if len(d)))
        fired = float(np.mean(fired_each))
    with_dets = int(sum(1 for d in dets if len(d)))
    evidence = {"detections": found, "backed_detections": backed, "images_with_detections": with_dets, "images": n,
                "score_threshold": threshold, "anchors_over_threshold": fired}
    words = f"{found} detection{'s' if found != 1 else ''} over {threshold:g} in {with_dets} of {n} images"
    if backed is not None and found:
        words += f", {backed} of them ({backed / found:.0%}) backed by {SUPPORT}+ neighbouring anchors"
    if fired is not None and fired > FLOOD:
        words += f"; {fired:.0%} of all anchors over {threshold:g} (a flood: a photo lights up a few)"

    def score_of(w: np.ndarray) -> np.ndarray:
        return weighted_mean(w, values)

    metric = "backed detections" if boxes is not None else "best detection score"
    return Judgement(one_score(score_of, n), score_of, metric, evidence, words, ConfidentBoxes(dets), clear_gap=CLEAR_GAP)
