"""A detector's outputs decoded into boxes (and keypoints) as its
:class:`~.detection_layout.DetectionLayout` says: what FP32 outputs tell
(logits or probabilities, a background class, the box format), then per
image the boxes over a score after class-aware NMS, in the model's units
(model-input pixels, or 0..1 for exports that normalize them).

Box distributions (per-stride GFL/DFL heads) decode to the expected bin
times the stride around the anchor centre ``(i + 0.5) * stride``; CenterNet
heads decode through :mod:`.centernet`; pose heads keep each box's keypoints.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from . import centernet
from .boxes import Detections, nms, to_xyxy
from .detection_layout import YOLO_KINDS, DetectionLayout
from .yolo_heads import box_class_rows, pose_keypoints


def resolve(layout: DetectionLayout, fp32: dict[str, np.ndarray], box_format: str = "auto") -> DetectionLayout:
    """Decide what the shapes could not tell, from FP32 outputs (the
    reference): logits or probabilities, a background class, the box format
    the user chose (CenterNet heads: logits or scores, how sizes read)."""
    if layout.centernet is not None:
        cn = centernet.resolve(layout.centernet, fp32, input_size=layout.input_size)
        return replace(layout, centernet=cn, sigmoid=cn.sigmoid, background=False)
    changes: dict = {}
    if box_format != "auto" and layout.box_format != "distribution":
        changes["box_format"] = box_format
    scores = np.concatenate([_score_rows(layout, fp32[n]).reshape(-1, layout.classes) for n in layout.scores])
    if layout.sigmoid is None:
        changes["sigmoid"] = bool(scores.size and (scores.min() < -1e-3 or scores.max() > 1 + 1e-3))
    if layout.background is None:
        sums = scores.sum(axis=1) if scores.size else np.zeros(0)
        changes["background"] = bool(layout.kind == "pair" and layout.classes >= 2 and sums.size and np.allclose(sums, 1.0, atol=0.02))
    return replace(layout, **changes)


def _yolo_rows(layout: DetectionLayout, arr: np.ndarray) -> np.ndarray:
    """A YOLO tensor as [N, A, K] (pose and segment: the box and class rows only)."""
    a = np.asarray(arr, dtype=np.float64)
    if layout.head is not None:
        a = box_class_rows(layout.head, a)
    return a.transpose(0, 2, 1) if layout.channels_first else a


def _score_rows(layout: DetectionLayout, arr: np.ndarray) -> np.ndarray:
    """Scores as [N, A, C] (YOLO: without box and objectness)."""
    if layout.kind in YOLO_KINDS:
        return _yolo_rows(layout, arr)[..., 4 + int(layout.objectness):]
    a = np.asarray(arr, dtype=np.float64)
    if layout.kind == "strides" and layout.channels_first:
        return a.reshape(a.shape[0], a.shape[1], -1).transpose(0, 2, 1)
    return a.reshape(a.shape[0], a.shape[1], -1)


def decode(
    layout: DetectionLayout, outputs: dict[str, np.ndarray], threshold: float, nms_iou: float, max_det: int = 300
) -> list[Detections]:
    """Per image: boxes (xyxy, model units) over ``threshold`` after class-aware NMS.
    For anchors-only layouts, boxes are [anchor, 0, anchor + 1, 1] so that
    matching pairs the same anchor, and no NMS runs."""
    return decode_with_keypoints(layout, outputs, threshold, nms_iou, max_det)[0]


def decode_with_keypoints(layout: DetectionLayout, outputs: dict[str, np.ndarray], threshold: float, nms_iou: float,
                          max_det: int = 300) -> tuple[list[Detections], list[np.ndarray] | None]:
    """:func:`decode`, and for layouts with keypoints each image's [K, P, D]
    (x, y in model-input pixels, then the visibility when D = 3) aligned with
    its boxes; None for layouts without keypoints."""
    if layout.centernet is not None:
        dets, points = centernet.decode(layout.centernet, outputs, threshold, nms_iou, layout.input_size, max_det)
        return dets, (points if layout.keypoints else None)
    boxes, scores = _boxes_scores(layout, outputs)  # [N, A, 4] or None, [N, A, C]
    kps = pose_keypoints(layout.head, outputs[layout.head.output]) if layout.keypoints else None  # [N, A, P, D]
    dets, points = [], []
    for i in range(scores.shape[0]):
        s = scores[i]
        cls = s.argmax(1)
        best = s[np.arange(len(s)), cls]
        keep = np.nonzero(best > threshold)[0]
        if boxes is None:
            b = np.stack([keep, np.zeros_like(keep), keep + 1, np.ones_like(keep)], axis=1).astype(np.float64)
            dets.append(Detections(b, best[keep], cls[keep]))
            continue
        keep = keep[nms(boxes[i][keep], best[keep], cls[keep], nms_iou, max_det)]
        dets.append(Detections(boxes[i][keep], best[keep], cls[keep]))
        if kps is not None:
            points.append(kps[i][keep])
    return dets, (points if kps is not None else None)


def boxes_look_normalized(layout: DetectionLayout, outputs: dict[str, np.ndarray], top: int = 100) -> bool:
    """Whether the boxes of the most confident anchors lie in 0..1 (units of the
    input size) rather than in pixels: decided on raw boxes, whatever the threshold.
    CenterNet heads decode into pixels by construction."""
    if layout.anchors_only or layout.centernet is not None:
        return False
    boxes, scores = _boxes_scores(layout, outputs)
    best = scores.max(axis=2).reshape(-1)
    flat = boxes.reshape(-1, 4)
    keep = np.argsort(-best)[:top]
    coords = flat[keep]
    coords = coords[np.isfinite(coords).all(axis=1)]
    return bool(coords.size and np.abs(coords).max() <= 1.5)


def anchor_predictions(layout: DetectionLayout, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray | None, np.ndarray]:
    """Every anchor's box [N, A, 4] (xyxy; None when boxes cannot be decoded)
    and class scores [N, A, C], before thresholding and NMS (CenterNet heads:
    every cell of the maps)."""
    return _boxes_scores(layout, outputs)


def _boxes_scores(layout: DetectionLayout, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray | None, np.ndarray]:
    if layout.centernet is not None:
        return centernet.cell_predictions(layout.centernet, outputs, layout.input_size)
    if layout.kind in YOLO_KINDS:
        a = _yolo_rows(layout, outputs[layout.scores[0]])  # [N, A, K]
        scores = a[..., 4 + int(layout.objectness):]
        if layout.sigmoid:
            scores = _sigmoid(scores)
        if layout.objectness:
            obj = a[..., 4:5]
            scores = scores * (_sigmoid(obj) if layout.sigmoid else obj)
        boxes = to_xyxy(a[..., :4].reshape(-1, 4), layout.box_format).reshape(a.shape[0], -1, 4)
        return boxes, scores
    levels_b, levels_s = [], []
    for level, (sn, bn) in enumerate(zip(layout.scores, layout.boxes)):
        s = _score_rows(layout, outputs[sn])
        if layout.sigmoid:
            s = _sigmoid(s)
        levels_s.append(s)
        if layout.anchors_only:
            continue
        raw = np.asarray(outputs[bn], dtype=np.float64)
        if layout.kind == "strides" and layout.channels_first:
            raw = raw.reshape(raw.shape[0], raw.shape[1], -1).transpose(0, 2, 1)
        raw = raw.reshape(raw.shape[0], raw.shape[1], -1)  # [N, A, 4 or 4*bins]
        if layout.box_format == "distribution":
            levels_b.append(_distribution_boxes(raw, layout.bins, layout.strides[level], layout.input_size))
        else:
            levels_b.append(to_xyxy(raw.reshape(-1, 4), layout.box_format).reshape(raw.shape[0], -1, 4))
    scores = np.concatenate(levels_s, axis=1)
    if layout.background:
        scores = scores.copy()
        scores[..., 0] = -np.inf  # class 0 is "nothing here"
    return (None if layout.anchors_only else np.concatenate(levels_b, axis=1)), scores


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def _distribution_boxes(raw: np.ndarray, bins: int, stride: int, size: tuple[int, int]) -> np.ndarray:
    """GFL/DFL box distributions [N, A, 4*bins] -> xyxy boxes in input pixels:
    the expected bin of each side (left, top, right, bottom) times the stride,
    around the anchor centre. Anchors run row by row."""
    n, a = raw.shape[:2]
    logits = raw.reshape(n, a, 4, bins)
    p = np.exp(logits - logits.max(axis=3, keepdims=True))
    p /= p.sum(axis=3, keepdims=True)
    dist = (p * np.arange(bins)).sum(axis=3) * stride  # [N, A, 4]: l, t, r, b
    centres = anchor_centres(size[0], size[1], stride)[None]  # [1, A, 2]
    return np.concatenate([centres - dist[..., :2], centres + dist[..., 2:]], axis=2)


def anchor_centres(height: int, width: int, stride: int) -> np.ndarray:
    """[A, 2] anchor centres (x, y) in input pixels, row by row."""
    gh, gw = math.ceil(height / stride), math.ceil(width / stride)
    ys, xs = np.mgrid[0:gh, 0:gw]
    return np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride], axis=1)
