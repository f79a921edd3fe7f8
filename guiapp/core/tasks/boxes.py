"""Box arithmetic for detection fidelity: IoU, NMS, matching and average
precision. Boxes are float arrays [K, 4] of (x1, y1, x2, y2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """One image's detections after thresholding and NMS."""

    boxes: np.ndarray  # [K, 4] x1, y1, x2, y2 (model-input pixels, or the model's own units)
    scores: np.ndarray  # [K]
    classes: np.ndarray  # [K] int

    def __len__(self) -> int:
        return len(self.scores)

    @staticmethod
    def empty() -> "Detections":
        return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))

    def to_dict(self, digits: int = 2) -> dict:
        return {
            "boxes": np.round(self.boxes, digits).tolist(),
            "scores": np.round(self.scores, 4).tolist(),
            "classes": self.classes.astype(int).tolist(),
        }


FAR = 1e7  # beyond any image coordinate (pixels or 0..1)


def held(boxes: np.ndarray) -> np.ndarray:
    """``boxes`` as float64 held to +-FAR, NaN as 0: a model fed far off its
    training range can decode boxes to 1e16 or inf (exp of a large offset),
    and sums of those are not finite."""
    return np.clip(np.nan_to_num(np.asarray(boxes, np.float64), nan=0.0, posinf=FAR, neginf=-FAR), -FAR, FAR)


def to_xyxy(boxes: np.ndarray, fmt: str) -> np.ndarray:
    """Convert [K, 4] boxes from ``fmt`` (xyxy, cxcywh, xywh) to x1, y1, x2, y2."""
    b = held(boxes)
    if fmt == "xyxy":
        return b
    if fmt == "cxcywh":
        half = b[:, 2:4] / 2
        return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)
    if fmt == "xywh":
        return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:4]], axis=1)
    raise ValueError(f"unknown box format {fmt!r}")


def area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` [K, 4] with every box of ``b`` [M, 4]: [K, M]."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    a, b = held(a), held(b)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float, max_det: int = 300) -> np.ndarray:
    """Indices kept by class-aware greedy non-maximum suppression, best first."""
    order = np.argsort(-scores, kind="stable")
    if len(order) == 0:
        return order
    boxes = held(boxes)
    # Class-aware in one pass: boxes of different classes never overlap after the shift.
    span = float(np.max(np.abs(boxes))) * 2 + 1 if len(boxes) else 1.0
    shifted = boxes + (classes.astype(np.float64) * span)[:, None]
    keep: list[int] = []
    suppressed = np.zeros(len(scores), bool)
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) == max_det:
            break
        rest = order[pos + 1:]
        rest = rest[~suppressed[rest]]
        if len(rest):
            over = iou_matrix(shifted[i:i + 1], shifted[rest])[0] > iou
            suppressed[rest[over]] = True
    return np.array(keep, dtype=np.int64)


def match(ref: Detections, got: Detections, iou: float = 0.5) -> list[tuple[int, int]]:
    """Pairs (ref index, got index) of the same class with IoU >= ``iou``,
    matched greedily from the highest IoU down; each box at most once."""
    m = iou_matrix(ref.boxes, got.boxes)
    if m.size == 0:
        return []
    m = np.where(ref.classes[:, None] == got.classes[None, :], m, 0.0)
    pairs = []
    cand = np.argwhere(m >= iou)
    if len(cand) == 0:
        return []
    cand = cand[np.argsort(-m[cand[:, 0], cand[:, 1]], kind="stable")]
    used_r, used_g = set(), set()
    for r, g in cand:
        if r in used_r or g in used_g:
            continue
        used_r.add(r)
        used_g.add(g)
        pairs.append((int(r), int(g)))
    return pairs


def average_precision(
    detections: list[Detections], truths: list[tuple[np.ndarray, np.ndarray]], iou: float = 0.5
) -> tuple[float | None, dict[int, float]]:
    """mAP at one IoU threshold, COCO-style (101-point interpolated precision,
    a detection matched to the best IoU among the still unmatched truths),
    averaged over the classes that have ground truth. ``truths`` holds per
    image (boxes [K, 4], classes [K]). Returns (mAP or None, AP per class)."""
    classes = sorted({int(c) for _, cls in truths for c in cls})
    per_class: dict[int, float] = {}
    for c in classes:
        scored: list[tuple[float, int, int]] = []  # (score, image, det index)
        n_truth = 0
        for i, (det, (tb, tc)) in enumerate(zip(detections, truths)):
            n_truth += int(np.sum(tc == c))
            for j in np.nonzero(det.classes == c)[0]:
                scored.append((float(det.scores[j]), i, int(j)))
        scored.sort(key=lambda t: -t[0])
        taken = [np.zeros(int(np.sum(tc == c)), bool) for _, tc in truths]
        tp = np.zeros(len(scored))
        for k, (_, i, j) in enumerate(scored):
            tb, tc = truths[i]
            gt = tb[tc == c]
            if len(gt) == 0:
                continue
            ious = np.where(taken[i], -1.0, iou_matrix(detections[i].boxes[j:j + 1], gt)[0])
            best = int(np.argmax(ious))
            if ious[best] >= iou:
                taken[i][best] = True
                tp[k] = 1
        if n_truth == 0:
            continue
        ctp = np.cumsum(tp)
        recall = ctp / n_truth
        precision = ctp / np.arange(1, len(tp) + 1) if len(tp) else np.zeros(0)
        # Precision envelope, then sampled at 101 recall points.
        envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
        points = np.linspace(0, 1, 101)
        idx = np.searchsorted(recall, points, side="left")
        sampled = np.array([envelope[k] if k < len(envelope) else 0.0 for k in idx])
        per_class[c] = float(sampled.mean())
    if not per_class:
        return None, {}
    return float(np.mean(list(per_class.values()))), per_class
