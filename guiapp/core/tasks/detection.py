"""Detectors: both models' outputs decoded into boxes with the same score
threshold and NMS; INT8 boxes matched to FP32 boxes (same class, IoU >= 0.5)
give recall, precision and F1 against FP32. With box labels, mAP@0.5 of both.
Heads with keypoints (pose, face landmarks): how far INT8 moves the
keypoints of the boxes it matches."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..data.imagefile import upright_size
from ..data.preprocess import placement
from ..errors import JobError
from ..fields import check_choice
from ..model.modelinfo import ModelInfo
from .base import EvalContext, Task, TaskGuess, headline, keep_samples
from .boxes import Detections, average_precision, match
from .cocomap import coco_map
from .detection_check import plausibility
from .detection_decode import boxes_look_normalized, decode_with_keypoints, resolve
from .detection_layout import BOX_FORMATS, YOLO_KINDS, DetectionLayout, guess as guess_layout
from .detection_view import PICTURES, chart, summary_rows
from .keypoints import VISIBLE, KeypointErrors
from .yolo_heads import hints_from

MAX_SCORE_PAIRS = 3000
MAX_PER_IMAGE = 2000  # per-image box counts kept in the report
LOW_SCORE = 0.001  # INT8's ranked boxes for AP (as detectors' own validation keeps them: Ultralytics conf=0.001)
MAX_DET = 300


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
    found = guess_layout(info.task_outputs, info.sized_input, hints_from(info.exporter, info.metadata))
    if found is None:
        return None
    layout, why = found
    return TaskGuess("detection", why, detail=layout)


def groups(g: TaskGuess, name: str, shape: tuple) -> list[tuple[str, int, slice]]:
    """A YOLO tensor's box rows, objectness, score rows and keypoint or mask
    coefficient rows apart: the scores are what a single whole-tensor SQNR hides."""
    lay = g.detail
    if lay is None or lay.kind not in YOLO_KINDS or name != lay.scores[0] or len(shape) != 3:
        return []
    axis = 1 if lay.channels_first else 2
    k = shape[axis]
    out = [("box values", axis, slice(0, 4))]
    first = 4
    if lay.objectness:
        out.append(("objectness", axis, slice(4, 5)))
        first = 5
    last = first + lay.classes if lay.head is not None else k
    out.append((f"class scores ({last - first})", axis, slice(first, last)))
    if lay.keypoints:
        p, d = lay.keypoints
        out += [(f"keypoint {what} ({p})", axis, slice(last + i, k, d)) for i, what in enumerate(("x", "y", "visibility")[:d])]
    elif lay.head is not None:
        out.append((f"mask coefficients ({k - last})", axis, slice(last, k)))
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
        self.vs_fp32: list[tuple[Detections, tuple[np.ndarray, np.ndarray]]] = []
        self.keypoint_errors = KeypointErrors(self.match_iou) if self.layout.keypoints else None

    def _resolve(self, fp32: dict) -> None:
        self.layout = resolve(self.layout, fp32, self.ctx.options.box_format)
        self.resolved = True
        self.normalized = boxes_look_normalized(self.layout, fp32)

    def _decode(self, outputs: dict) -> list[tuple[Detections, np.ndarray | None]]:
        """Every box over LOW_SCORE after NMS (best first), with its keypoints
        when the head has some: the ranked list AP reads; the boxes over the
        threshold are its head (NMS keeps a box over the threshold only for
        boxes that score higher, so filtering after NMS gives what NMS over
        the threshold gives)."""
        dets, points = decode_with_keypoints(self.layout, outputs, min(LOW_SCORE, self.threshold), self.nms_iou, MAX_DET)
        points = points if points is not None else [None] * len(dets)
        if self.normalized and self.ctx.spec is not None:
            h, w = self.ctx.spec.size
            scale = np.array([w, h, w, h], np.float64)
            dets = [replace(d, boxes=d.boxes * scale) for d in dets]
            points = [None if p is None else _scaled_points(p, w, h) for p in points]
        return list(zip(dets, points))

    def _over(self, d: Detections, points: np.ndarray | None) -> tuple[Detections, np.ndarray | None]:
        keep = d.scores > self.threshold
        return Detections(d.boxes[keep], d.scores[keep], d.classes[keep]), (None if points is None else points[keep])

    def add(self, paths: list[Path], fp32: dict, int8: dict) -> None:
        if not self.resolved:
            self._resolve(fp32)
        for p, (ref_all, ref_pts), (got_all, got_pts) in zip(paths, self._decode(fp32), self._decode(int8)):
            (r, rp), (g, gp) = self._over(ref_all, ref_pts), self._over(got_all, got_pts)
            if self.keypoint_errors is not None and rp is not None and gp is not None:
                visible = rp[..., 2] >= VISIBLE if rp.shape[-1] == 3 else None
                pairs = self.keypoint_errors.add(r, g, rp, gp, visible)  # matched as boxes, like match() below
            else:
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
                self.samples.append({"file": str(p), "fp32": _sample(r, rp), "int8": _sample(g, gp), "matched": len(pairs)})
            # FP32's confident boxes are the truth INT8's ranked boxes are scored against.
            self.vs_fp32.append((got_all, (r.boxes, r.classes)))
            self._add_truth(p, ref_all, got_all)

    def merge(self, other: "DetectionFidelity") -> None:
        """Add ``other``, made on the images after these (an evaluation split across workers)."""
        # How boxes read (format, normalized) is drawn from the first batch's values: a property
        # of the model, the same in every part; the first part's decision stands.
        if not self.resolved and other.resolved:
            self.layout, self.resolved, self.normalized = other.layout, True, other.normalized
        self.n_ref += other.n_ref
        self.n_got += other.n_got
        self.matched += other.matched
        self.images += other.images
        self.same_count += other.same_count
        self.abs_err.extend(other.abs_err)
        self.pairs.extend(other.pairs[: max(0, MAX_SCORE_PAIRS - len(self.pairs))])
        self.per_image.extend(other.per_image[: max(0, MAX_PER_IMAGE - len(self.per_image))])
        keep_samples(self.samples, other.samples, 4 * self.ctx.samples)
        for key in self.ap_dets:
            self.ap_dets[key].extend(other.ap_dets[key])
        self.ap_truth.extend(other.ap_truth)
        self.vs_fp32.extend(other.vs_fp32)
        if self.keypoint_errors is not None and other.keypoint_errors is not None:
            self.keypoint_errors.merge(other.keypoint_errors)

    def _add_truth(self, path: Path, ref: Detections, got: Detections) -> None:
        """With box labels: both models' ranked boxes against them (mAP)."""
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
        if self.ap_truth:  # against the labels, as COCO's own evaluator computes it
            f, q = coco_map(self.ap_dets["fp32"], self.ap_truth), coco_map(self.ap_dets["int8"], self.ap_truth)
            m_ap = {"fp32": f["map50"], "int8": q["map50"], "fp32_50_95": f["map50_95"], "int8_50_95": q["map50_95"],
                    "labeled_images": len(self.ap_truth), "iou": 0.5, "evaluator": f["evaluator"]}
        advice = ("The INT8 model loses, moves or invents many of FP32's boxes. Keep output protection on (the default), "
                  "try another strategy, or keep the head's last layers in float.")
        if self.n_ref == 0:
            advice = (f"FP32 finds no box over the score threshold {self.threshold} on these images: lower the threshold "
                      "(--score-threshold) or check the preprocessing and the box format.")
        ap = self._ap_vs_fp32()
        # AP50 of INT8's ranked boxes with FP32's confident boxes as the truth: threshold-free, so a
        # score that merely crosses the threshold does not count as a lost box (F1 at it is beside).
        head = headline("detection_ap50_vs_fp32", "AP50 vs FP32", ap, 0.5, advice, f1=f1)
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
            "ap50_vs_fp32": ap,
            "score_mae": float(np.mean(self.abs_err)) if self.abs_err else None,
            "images_same_count": self.same_count,
            "map50": m_ap,
            "keypoints": self._keypoints(),
            "score_pairs": self.pairs,
            "per_image": self.per_image,
            "samples": self.samples,
        }
        return {"headline": head, "detection": det}

    def _keypoints(self) -> dict | None:
        """How far INT8 moves the keypoints of the boxes it matches (None: the head has none)."""
        if self.keypoint_errors is None:
            return None
        p, d = self.layout.keypoints
        return {"per_box": p, "values": d, "visible_only": d == 3, **self.keypoint_errors.result().to_dict()}

    def _ap_vs_fp32(self) -> float | None:
        """None when FP32 has no confident box on these images (nothing to recover)."""
        if not any(len(classes) for _, (_, classes) in self.vs_fp32):
            return None
        value, _ = average_precision([d for d, _ in self.vs_fp32], [t for _, t in self.vs_fp32])
        return value


def _scaled_points(points: np.ndarray, w: float, h: float) -> np.ndarray:
    """Keypoints [K, P, D] in 0..1 of the input to pixels (x, y; a visibility stays)."""
    out = np.array(points, np.float64)
    out[..., 0] *= w
    out[..., 1] *= h
    return out


def _sample(d: Detections, points: np.ndarray | None) -> dict:
    """One model's boxes on a picture (and their keypoints [K, P, D], rounded)."""
    out = d.to_dict()
    if points is not None:
        out["keypoints"] = np.round(points, 2).tolist()
    return out


TASK = Task(
    "detection", "Object detection", guess, DetectionFidelity, options=DetectionOptions, groups=groups,
    default_resize="letterbox", plausibility=plausibility, summary_rows=summary_rows, chart=chart, pictures=PICTURES,
    metric_words=lambda labels_from: "AP50 against FP32's boxes (INT8's ranked boxes, FP32's confident boxes as the truth)",
    needs="no YOLO-style tensor (plain, pose or segmentation), score/box pair, per-stride outputs or CenterNet-style heatmap",
    noise_floor=True,
)
