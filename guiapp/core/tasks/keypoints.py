"""How far INT8 moves the keypoints (landmarks, pose joints) of the objects it
still finds: FP32 and INT8 detections are matched as boxes (same class,
IoU >= the match threshold), then the distance between each pair's keypoints
is measured in input pixels.

PCK (percentage of correct keypoints) counts the share of keypoints within a
fixed number of pixels, and within a fraction of the FP32 box's longer side
(as mmpose's PCK normalized by the box).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .boxes import Detections, match

PCK_PIXELS = (2.0,)  # keypoints within this many input pixels of FP32's
PCK_FRACTIONS = (0.05,)  # ... and within this share of the FP32 box's longer side
VISIBLE = 0.5  # a keypoint with a visibility (pose heads) counts from this on, as Ultralytics draws them


@dataclass(frozen=True)
class KeypointError:
    pairs: int  # matched detections compared
    points: int  # keypoints compared
    mean_px: float | None
    p95_px: float | None
    max_px: float | None
    pck: tuple[tuple[str, float | None], ...] = ()  # ("2 px", share), ("5% of box", share)

    def to_dict(self) -> dict:
        return {"pairs": self.pairs, "points": self.points, "mean_px": self.mean_px, "p95_px": self.p95_px,
                "max_px": self.max_px, "pck": dict(self.pck)}


def pair_distances(ref_boxes: np.ndarray, ref_kps: np.ndarray, got_kps: np.ndarray, pairs: list[tuple[int, int]],
                   ref_visible: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distances (input pixels) between the keypoints of matched pairs, and
    the longer side of each pair's FP32 box, one value per keypoint. Keypoints
    are [K, P, 2] (x, y; further columns are ignored); ``ref_visible`` [K, P]
    keeps only the keypoints FP32 sees. Non-finite positions are left out."""
    if not pairs or ref_kps.shape[1] == 0:
        return np.zeros(0), np.zeros(0)
    r, g = (np.array(ix, dtype=np.int64) for ix in zip(*pairs))
    a = np.asarray(ref_kps, dtype=np.float64)[r, :, :2]
    b = np.asarray(got_kps, dtype=np.float64)[g, :, :2]
    dist = np.sqrt(((a - b) ** 2).sum(axis=2))  # [M, P]
    boxes = np.asarray(ref_boxes, dtype=np.float64)[r]
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    sides = np.broadcast_to(side[:, None], dist.shape)
    keep = np.isfinite(dist)
    if ref_visible is not None:
        keep &= np.asarray(ref_visible, dtype=bool)[r]
    return dist[keep], sides[keep]


def summarize(dist: np.ndarray, sides: np.ndarray, pairs: int, pixels: tuple[float, ...] = PCK_PIXELS,
              fractions: tuple[float, ...] = PCK_FRACTIONS) -> KeypointError:
    """Mean, 95th percentile, maximum and PCK of keypoint distances."""
    d = np.asarray(dist, dtype=np.float64)
    pck = [(f"{p:g} px", float(np.mean(d <= p)) if d.size else None) for p in pixels]
    pck += [(f"{f:.0%} of box", float(np.mean(d <= f * np.asarray(sides))) if d.size else None) for f in fractions]
    if d.size == 0:
        return KeypointError(pairs, 0, None, None, None, tuple(pck))
    return KeypointError(pairs, int(d.size), float(d.mean()), float(np.percentile(d, 95)), float(d.max()), tuple(pck))


class KeypointErrors:
    """Accumulates keypoint distances image by image."""

    def __init__(self, match_iou: float = 0.5, pixels: tuple[float, ...] = PCK_PIXELS,
                 fractions: tuple[float, ...] = PCK_FRACTIONS) -> None:
        self.match_iou, self.pixels, self.fractions = match_iou, pixels, fractions
        self.dist: list[np.ndarray] = []
        self.sides: list[np.ndarray] = []
        self.pairs = 0

    def add(self, ref: Detections, got: Detections, ref_kps: np.ndarray, got_kps: np.ndarray,
            ref_visible: np.ndarray | None = None) -> list[tuple[int, int]]:
        """One image: match the boxes, measure the keypoints; returns the pairs."""
        pairs = match(ref, got, self.match_iou)
        d, s = pair_distances(ref.boxes, ref_kps, got_kps, pairs, ref_visible)
        self.pairs += len(pairs)
        self.dist.append(d.astype(np.float32))
        self.sides.append(s.astype(np.float32))
        return pairs

    def merge(self, other: "KeypointErrors") -> None:
        self.dist.extend(other.dist)
        self.sides.extend(other.sides)
        self.pairs += other.pairs

    def result(self) -> KeypointError:
        d = np.concatenate(self.dist) if self.dist else np.zeros(0)
        s = np.concatenate(self.sides) if self.sides else np.zeros(0)
        return summarize(d, s, self.pairs, self.pixels, self.fractions)
