"""Detectors: both models' outputs decoded into boxes with the same score
threshold and NMS; INT8 boxes matched to FP32 boxes (same class, IoU >= 0.5)
give recall, precision and F1 against FP32. With box labels, mAP@0.5 of both."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..data.imagefile import upright_size
from ..data.preprocess import placement
from ..errors import JobError
from ..fields import check_choice
from ..model.modelinfo import ModelInfo
from .base import Bar, Chart, EvalContext, Judgement, PlausibilityInput, Task, TaskGuess, headline, one_score, weighted_mean
from .boxes import Detections, average_precision, iou_matrix, match
from .detection_layout import (
    BOX_FORMATS, DetectionLayout, anchor_predictions, boxes_look_normalized, decode, guess as guess_layout, resolve,
)
from .detection_view import PICTURES

MAX_SCORE_PAIRS = 3000
MAX_PER_IMAGE = 2000  # per-image box counts kept in the report


@dataclass(frozen=True)
class DetectionOptions:
    """How boxes are read and compared."""

    box_format: str = "auto"  # how box values read (auto: from the layout)
    score_threshold: float = 0.25  # a box counts from this score on
    nms_iou: float = 0.45  # overlap at which NMS drops the weaker box
    match_iou: float = 0.5  # an INT8 box matches an FP32 box (same class) from this IoU on

    def __post_init__(self) -> None:
        check_choice("task.box_format", self.box_format, BOX_FORMATS, "box format")
        for name in ("score_threshold", "nms_iou", "match_iou"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise JobError(f"task.{name}", f"{v} is outside 0..1", "Give a fraction, e.g. 0.25 or 0.5.")


def guess(info: ModelInfo) -> TaskGuess | None:
    found = guess_layout(info.task_outputs, info.image_input)
    if found is None:
        return None
    layout, why = found
    return TaskGuess("detection", why, detail=layout)


def groups(g: TaskGuess, name: str, shape: tuple) -> list[tuple[str, int, slice]]:
    """A YOLO tensor's box rows, objectness and score rows apart: the scores
    are what a single whole-tensor SQNR hides."""
    lay = g.detail
    if lay is None or lay.kind != "yolo" or name != lay.scores[0] or len(shape) != 3:
        return []
    axis = 1 if lay.channels_first else 2
    k = shape[axis]
    out = [("box values", axis, slice(0, 4))]
    first = 4
    if lay.objectness:
        out.append(("objectness", axis, slice(4, 5)))
        first = 5
    out.append((f"class scores ({k - first})", axis, slice(first, k)))
    return out


class DetectionFidelity:
    def __init__(self, guess: TaskGuess, ctx: EvalContext) -> None:
        assert guess.detail is not None
        self.layout: DetectionLayout = guess.detail
        self.ctx = ctx
        s: DetectionOptions = ctx.options
        self.threshold, self.nms_iou, self.match_iou = s.score_threshold, s.nms_iou, s.match_iou
        self.resolved = False
        self.normalized = False  # boxes come in 0..1 of the input, not pixels
        self.n_ref = self.n_got = self.matched = 0
        self.images = self.same_count = 0
        self.abs_err: list[float] = []
        self.pairs: list[tuple[float, float]] = []
        self.samples: list[dict] = []
        self.per_image: list[dict] = []
        self.ap_dets: dict[str, list[Detections]] = {"fp32": [], "int8": []}
        self.ap_truth: list[tuple[np.ndarray, np.ndarray]] = []

    def _resolve(self, fp32: dict) -> None:
        self.layout = resolve(self.layout, fp32, self.ctx.options.box_format)
        self.resolved = True
        self.normalized = boxes_look_normalized(self.layout, fp32)

    def _decode(self, outputs: dict) -> list[Detections]:
        dets = decode(self.layout, outputs, self.threshold, self.nms_iou)
        if self.normalized and self.ctx.spec is not None:
            h, w = self.ctx.spec.size
            scale = np.array([w, h, w, h], np.float64)
            dets = [replace(d, boxes=d.boxes * scale) for d in dets]
        return dets

    def add(self, paths: list[Path], fp32: dict, int8: dict) -> None:
        if not self.resolved:
            self._resolve(fp32)
        ref, got = self._decode(fp32), self._decode(int8)
        for p, r, g in zip(paths, ref, got):
            pairs = match(r, g, self.match_iou)
            self.n_ref += len(r)
            self.n_got += len(g)
            self.matched += len(pairs)
            self.images += 1
            self.same_count += int(len(r) == len(g))
            for i, j in pairs:
                self.abs_err.append(abs(float(r.scores[i]) - float(g.scores[j])))
                if len(self.pairs) < MAX_SCORE_PAIRS:
                    self.pairs.append((round(float(r.scores[i]), 4), round(float(g.scores[j]), 4)))
            if len(self.per_image) < MAX_PER_IMAGE:
                self.per_image.append({"file": str(p), "fp32": len(r), "int8": len(g), "matched": len(pairs)})
            if len(self.samples) < 4 * self.ctx.samples:  # candidates; result() keeps the telling ones
                self.samples.append({"file": str(p), "fp32": r.to_dict(), "int8": g.to_dict(), "matched": len(pairs)})
            self._add_truth(p, r, g)

    def _add_truth(self, path: Path, ref: Detections, got: Detections) -> None:
        labels = self.ctx.labels
        if labels is None or self.layout.anchors_only or not hasattr(labels, "get"):
            return
        truth = labels.get(path)
        if truth is None:
            return
        boxes, classes = truth
        w, h = upright_size(path)
        model_boxes = placement(self.ctx.spec, w, h).boxes_to_model(boxes * np.array([w, h, w, h]))
        self.ap_truth.append((model_boxes, classes + self.ctx.class_offset))
        self.ap_dets["fp32"].append(ref)
        self.ap_dets["int8"].append(got)

    def _pick_samples(self) -> None:
        """The pictures worth looking at first: images where INT8 and FP32
        disagree, then those with the most boxes, then the rest."""
        def key(ix):
            i, s = ix
            n32, n8 = len(s["fp32"]["scores"]), len(s["int8"]["scores"])
            return (-(max(n32, n8) - s["matched"]), -max(n32, n8), i)

        self.samples = [s for _, s in sorted(enumerate(self.samples), key=key)[: self.ctx.samples]]

    def result(self) -> dict:
        self._pick_samples()
        recall = self.matched / self.n_ref if self.n_ref else None
        precision = self.matched / self.n_got if self.n_got else None
        if self.n_ref == 0 and self.n_got == 0:
            f1 = None
        else:
            f1 = 2 * self.matched / (self.n_ref + self.n_got)
        m_ap = None
        if self.ap_truth:
            f, _ = average_precision(self.ap_dets["fp32"], self.ap_truth)
            q, _ = average_precision(self.ap_dets["int8"], self.ap_truth)
            m_ap = {"fp32": f, "int8": q, "labeled_images": len(self.ap_truth), "iou": 0.5}
        advice = ("The INT8 model loses or invents many of FP32's boxes. Keep output protection on (the default), "
                  "check the score threshold, or keep the head's last layers in float.")
        if self.n_ref == 0:
            advice = (f"FP32 finds no box over the score threshold {self.threshold} on these images: lower the threshold "
                      "(--score-threshold) or check the preprocessing and the box format.")
        head = headline("detection_f1", "Detection F1 vs FP32", f1, 0.5, advice)
        if m_ap:
            head["map50"] = m_ap
        det = {
            "layout": self.layout.to_dict(),
            "layout_text": self.layout.describe(),
            "boxes_normalized": self.normalized,
            "score_threshold": self.threshold,
            "nms_iou": self.nms_iou,
            "match_iou": self.match_iou,
            "compared": "anchors" if self.layout.anchors_only else "boxes",
            "images": self.images,
            "fp32_boxes": self.n_ref,
            "int8_boxes": self.n_got,
            "matched": self.matched,
            "recall": recall,
            "precision": precision,
            "f1": f1,
            "score_mae": float(np.mean(self.abs_err)) if self.abs_err else None,
            "images_same_count": self.same_count,
            "map50": m_ap,
            "score_pairs": self.pairs,
            "per_image": self.per_image,
            "samples": self.samples,
        }
        return {"headline": head, "detection": det}


# ---------------------------------------------------------------- plausibility

SUPPORT = 3  # a real object lights up several neighbouring anchors; garbage lights up one
SUPPORT_IOU = 0.5
CONFIDENT = 0.5  # the check judges detections from this score on (or the user's threshold, when higher)
# The backed share tells inputs far off the training range (near 0) from sane
# ones (0.6..1 on real photos), not sane ones apart: only a halving is clear.
CLEAR_GAP = 0.5


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


def plausibility(guess: TaskGuess, inp: PlausibilityInput) -> Judgement:
    """The share of confident detections that several neighbouring anchors
    back, over the images with any: a real object lights up a cluster of
    anchors whose boxes agree; inputs far off the training range light up
    isolated single anchors, or nothing (score 0). Deliberately blind to how
    high the scores are: a larger input makes a detector more confident
    without making it more right. Boxes that cannot be decoded: the best
    score per image (which does favour larger inputs)."""
    assert guess.detail is not None
    s: DetectionOptions = inp.options
    threshold = max(s.score_threshold, CONFIDENT)
    layout = resolve(guess.detail, inp.outputs, s.box_format)
    dets = decode(layout, inp.outputs, threshold, s.nms_iou)
    boxes, scores = anchor_predictions(layout, inp.outputs)
    n = len(dets)
    found = sum(len(d) for d in dets)
    if boxes is None:
        values = np.array([float(d.scores.max()) if len(d) else 0.0 for d in dets])
        backed = None
    else:
        shares = [float(np.mean(_backed(boxes[i], scores[i], d, threshold))) if len(d) else np.nan for i, d in enumerate(dets)]
        values = np.array(shares)
        backed = int(sum(round(v * len(d)) for v, d in zip(shares, dets) if len(d)))
    with_dets = int(sum(1 for d in dets if len(d)))
    evidence = {"detections": found, "backed_detections": backed, "images_with_detections": with_dets, "images": n,
                "score_threshold": threshold}
    words = f"{found} detection{'s' if found != 1 else ''} over {threshold:g} in {with_dets} of {n} images"
    if backed is not None and found:
        words += f", {backed} of them ({backed / found:.0%}) backed by {SUPPORT}+ neighbouring anchors"

    def score_of(w: np.ndarray) -> np.ndarray:
        return weighted_mean(w, values)

    metric = "backed detections" if boxes is not None else "best detection score"
    return Judgement(one_score(score_of, n), score_of, metric, evidence, words, ConfidentBoxes(dets), clear_gap=CLEAR_GAP)


# ---------------------------------------------------------------- presentation


def _pct(v) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def summary_rows(report: dict) -> list[tuple[str, str, str]]:
    det = report["fidelity"]["detection"]
    what = "anchors" if det["compared"] == "anchors" else "boxes"
    rows = [(f"Detections over {det['score_threshold']:g} ({det['images']} images)", f"{det['fp32_boxes']} {what}",
             f"{det['int8_boxes']} {what}, {det['matched']} matching FP32")]
    if det["f1"] is not None:
        rows.append(("Detection F1 / recall / precision vs FP32", "",
                     f"{det['f1']:.3f} / {_pct(det['recall'])} / {_pct(det['precision'])}"))
    if det["score_mae"] is not None:
        rows.append(("Score error of matched boxes (mean |FP32 - INT8|)", "", f"{det['score_mae']:.4f}"))
    m = det.get("map50")
    if m and m["fp32"] is not None:
        rows.append((f"mAP@0.5 ({m['labeled_images']} labeled images)", f"{m['fp32'] * 100:.1f}",
                     f"{m['int8'] * 100:.1f} ({(m['int8'] - m['fp32']) * 100:+.1f} points)"))
    return rows


def chart(report: dict) -> Chart:
    det = report["fidelity"]["detection"]
    m = det.get("map50")
    if m and m["fp32"] is not None:
        return Chart(f"mAP@0.5, {m['labeled_images']} labeled images",
                     (Bar("FP32", m["fp32"] * 100, "fp32"), Bar("INT8", m["int8"] * 100)))
    what = "anchors" if det["compared"] == "anchors" else "boxes"
    return Chart(f"{what.capitalize()} over score {det['score_threshold']:g}",
                 (Bar("FP32", det["fp32_boxes"], "fp32"), Bar("INT8", det["int8_boxes"]), Bar("matching", det["matched"])),
                 fmt="{:.0f}")


TASK = Task(
    "detection", "Object detection", guess, DetectionFidelity, options=DetectionOptions, groups=groups,
    default_resize="letterbox", plausibility=plausibility, summary_rows=summary_rows, chart=chart, pictures=PICTURES,
    metric_words=lambda labels_from: "detection F1 against FP32 (boxes matched at IoU 0.5)",
    needs="no YOLO-style tensor, score/box pair or per-stride outputs",
)
