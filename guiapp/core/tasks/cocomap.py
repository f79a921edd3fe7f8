"""mAP as users know it: COCO's mAP@0.5 and mAP@0.5:0.95 of box detections,
computed by faster-coco-eval (pycocotools' evaluation with its loops in C++).

The conventions are COCO's: 101-point interpolated precision, IoU thresholds
0.50:0.05:0.95, area range "all", at most 100 detections per image (the best
scored), the mean over the categories that have ground truth (predictions of
other classes are ignored), and a detection matched to the best IoU among the
still unmatched truths. Every image counts, those without truths too (their
detections are false positives).
"""

from __future__ import annotations

from typing import Sequence

import faster_coco_eval
import numpy as np
from faster_coco_eval import COCO, COCOeval_faster

from .boxes import Detections

EVALUATOR = f"faster-coco-eval {faster_coco_eval.__version__}"


def _silent(*_args, **_kwargs) -> None:
    """The evaluator reports each step through this (by default to logging,
    its summary table at INFO)."""


def _xywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    # A degenerate box keeps area 0: COCO would ignore a truth of negative area.
    return np.concatenate([b[:, :2], np.clip(b[:, 2:] - b[:, :2], 0, None)], axis=1)


def _ground_truth(truths: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict:
    annotations = []
    for image, (boxes, classes) in enumerate(truths, 1):
        for box, cls in zip(_xywh(boxes).tolist(), np.asarray(classes).tolist()):
            # Ids from 1: the evaluator marks "unmatched" with id 0.
            annotations.append({"id": len(annotations) + 1, "image_id": image, "category_id": int(cls),
                                "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
    categories = sorted({a["category_id"] for a in annotations})
    return {"images": [{"id": i} for i in range(1, len(truths) + 1)], "annotations": annotations,
            "categories": [{"id": c, "name": str(c)} for c in categories]}


def _results(detections: Sequence[Detections]) -> list[dict]:
    return [{"image_id": image, "category_id": int(cls), "bbox": box, "score": float(score)}
            for image, det in enumerate(detections, 1)
            for box, score, cls in zip(_xywh(det.boxes).tolist(), np.asarray(det.scores).tolist(),
                                       np.asarray(det.classes).tolist())]


def coco_map(detections: Sequence[Detections], truths: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict:
    """COCO's mAP of ``detections`` (one per image: boxes x1, y1, x2, y2,
    scores, classes) against ``truths`` (per image: boxes [K, 4] x1, y1, x2, y2
    in the same pixels, classes [K]).

    Returns {"map50": float, "map50_95": float, "evaluator": "faster-coco-eval
    <version>"}; both maps are None when no image has a truth (COCO's -1)."""
    if len(detections) != len(truths):
        raise ValueError(f"{len(detections)} images of detections, {len(truths)} of ground truth")
    gt = _ground_truth(truths)
    if not gt["annotations"]:
        return {"map50": None, "map50_95": None, "evaluator": EVALUATOR}
    coco_gt = COCO(gt, print_function=_silent)
    coco_dt = coco_gt.loadRes(_results(detections))
    evaluation = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=_silent)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    map50_95, map50 = (float(v) for v in evaluation.stats[:2])
    return {"map50": map50, "map50_95": map50_95, "evaluator": EVALUATOR}
