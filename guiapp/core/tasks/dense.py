"""Dense predictions: masks and maps ``[N, C, H, W]`` (a sigmoid probability
map of a text detector, per-pixel class scores of a segmenter). Fidelity is
the IoU of the thresholded (one channel) or argmax (several) maps, INT8
against FP32, and the map's SQNR."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..model.modelinfo import ModelInfo
from .base import (
    Bar, Chart, EvalContext, Judgement, PlausibilityInput, Task, TaskGuess, channel_groups, entropy, headline, keep_samples, one_score,
    softmax, standardized, weighted_mean,
)
from .dense_view import PICTURES
from .errorstats import ErrorStats

MAX_CLASSES = 256  # more channels than this are features, not classes
MAX_STRIDE = 8  # a map coarser than 1/8 of the input is not a mask


@dataclass(frozen=True)
class DenseOptions:
    mask_threshold: float | None = None  # one channel: None = 0.5 for probabilities, 0 for logits


@dataclass(frozen=True)
class DenseMap:
    """Which output holds the map."""

    output: str

    def to_dict(self) -> dict:
        return {"output": self.output}


def _dense_reason(t, image) -> str | None:
    s = t.shape
    if s is None or len(s) != 4 or not t.dtype.startswith("float"):
        return None
    c, h, w = s[1:]
    if not (isinstance(c, int) and 1 <= c <= MAX_CLASSES):
        return None
    if isinstance(h, int) and isinstance(w, int):
        if h <= 1 or w <= 1:
            return None
        size = image.size if image is not None else None
        if size is not None and (h * MAX_STRIDE < size[0] or w * MAX_STRIDE < size[1]):
            return None
        kind = "a probability or score map" if c == 1 else f"{c} per-pixel class scores"
        return f"output {t.name} {t.shape_text}: {kind} at {h}x{w}"
    if h is None and w is None:
        return None
    return f"output {t.name} {t.shape_text}: a map whose height and width follow the input ({c} channel(s))"


def _probability(m: np.ndarray) -> np.ndarray:
    """A one-channel map in 0..1 (a sigmoid over logits)."""
    if m.min() < -1e-3 or m.max() > 1 + 1e-3:
        return 1.0 / (1.0 + np.exp(-np.clip(m, -60, 60)))
    return m


def guess(info: ModelInfo) -> TaskGuess | None:
    for t in info.task_outputs:
        why = _dense_reason(t, info.sized_input)
        if why:
            more = f" (the first of {len(info.outputs)} outputs)" if len(info.outputs) > 1 else ""
            return TaskGuess("dense", why + more, detail=DenseMap(t.name))
    return None


def groups(g: TaskGuess, name: str, shape: tuple) -> list[tuple[str, int, slice]]:
    return channel_groups(shape, 1)


class DenseFidelity:
    def __init__(self, guess: TaskGuess, ctx: EvalContext) -> None:
        self.name = guess.detail.output
        self.ctx = ctx
        self.threshold = ctx.options.mask_threshold
        self.inter: dict[int, float] = {}
        self.union: dict[int, float] = {}
        self.agree = self.pixels = 0
        self.abs_err = 0.0  # one channel: |FP32 - INT8| summed, on probabilities (alpha for a matting net)
        self.stats = ErrorStats()
        self.channels = 0
        self.samples: list[dict] = []

    def _labels(self, m: np.ndarray) -> np.ndarray:
        """[N, C, H, W] -> per-pixel class [N, H, W] (one channel: 1 = over the threshold)."""
        if m.shape[1] == 1:
            return (m[:, 0] > self.threshold).astype(np.int64)
        return m.argmax(axis=1)

    def add(self, paths: list[Path], fp32: dict, int8: dict) -> None:
        a = np.asarray(fp32[self.name], dtype=np.float64)
        b = np.asarray(int8[self.name], dtype=np.float64)
        self.stats.add(a, b)
        self.channels = a.shape[1]
        if self.threshold is None:  # probabilities: 0.5; logits: 0
            self.threshold = 0.5 if a.min() >= -1e-3 and a.max() <= 1 + 1e-3 else 0.0
        if a.shape[1] == 1:
            self.abs_err += float(np.abs(_probability(a) - _probability(b)).sum())
        la, lb = self._labels(a), self._labels(b)
        classes = (1,) if a.shape[1] == 1 else range(a.shape[1])
        for c in classes:
            x, y = la == c, lb == c
            self.inter[c] = self.inter.get(c, 0.0) + float(np.sum(x & y))
            self.union[c] = self.union.get(c, 0.0) + float(np.sum(x | y))
        self.agree += int(np.sum(la == lb))
        self.pixels += la.size
        for i, p in enumerate(paths):
            if len(self.samples) >= self.ctx.samples:
                break
            show = (lambda m: m[i, 0]) if a.shape[1] == 1 else (lambda m: m[i].argmax(0).astype(np.float64))
            self.samples.append({"file": str(p), "fp32": show(a).astype(np.float32), "int8": show(b).astype(np.float32),
                                 "classes": int(a.shape[1])})

    def merge(self, other: "DenseFidelity") -> None:
        # The threshold a map is cut at is drawn from its first batch (probabilities
        # or logits): a property of the model, the same in every shard.
        self.threshold = self.threshold if self.threshold is not None else other.threshold
        for c in other.union:
            self.inter[c] = self.inter.get(c, 0.0) + other.inter[c]
            self.union[c] = self.union.get(c, 0.0) + other.union[c]
        self.agree += other.agree
        self.pixels += other.pixels
        self.abs_err += other.abs_err
        self.stats.merge(other.stats)
        self.channels = self.channels or other.channels
        keep_samples(self.samples, other.samples, self.ctx.samples)

    def result(self) -> dict:
        ious = {c: self.inter[c] / self.union[c] for c in self.union if self.union[c] > 0}
        iou = float(np.mean(list(ious.values()))) if ious else None
        label = "Mask IoU vs FP32" if self.channels == 1 else "Mean IoU vs FP32"
        advice = ("The INT8 map differs from FP32 over much of the image. Keep output protection on (the default), "
                  "try the entropy or mse strategy, or keep the last layers in float.")
        return {
            "headline": headline("dense_iou", label, iou, 0.5, advice),
            "dense": {
                "output": self.name,
                "channels": self.channels,
                "threshold": self.threshold if self.channels == 1 else None,
                "iou": iou,
                "iou_per_class": {str(c): v for c, v in sorted(ious.items())} if self.channels > 1 else None,
                "pixel_agreement": self.agree / self.pixels if self.pixels else None,
                "mean_abs_error": self.abs_err / self.pixels if self.pixels and self.channels == 1 else None,
                "map_sqnr_db": self.stats.sqnr_db,
                "map_cosine": self.stats.cosine,
            },
        }


# ---------------------------------------------------------------- plausibility

MAX_SIDE = 64  # maps are judged on at most 64x64 points per image
# Several classes: not calibrated on a real segmenter yet (the assets have
# none): only a large gap counts, so that the check rather stays quiet.
CLEAR_GAP = 0.25
# One channel (a text detector's or a matte's probability): how decided the map
# is, measured on the exports in tests/exports. DBNet-style text detector with its
# own preprocessing 0.98, 0..255 fed 0.82, caffe's 0.85, ImageNet's values in 0..1
# units 0.92; U-Net matte (pm1) 0.98, ImageNet's 0.86, unit 0.97. A tenth apart is clear.
CLEAR_GAP_MASK = 0.10
VARIED = 0.02  # a map with under 2% of its points on one side says nothing (all on, all off)


class PixelLabels:
    """Candidates agree by the share of map points given the same label
    (argmax, or over/under 0.5 for a one-channel map)."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels

    def agreement(self, other: "PixelLabels") -> float:
        return float(np.mean(self.labels == other.labels)) if self.labels.size else 1.0


def plausibility(guess: TaskGuess, inp: PlausibilityInput) -> Judgement:
    """How decided the map is, per image. One channel (the probability, after
    a sigmoid for logits): the mean of |2p - 1|, zero for a map decided the
    same way nearly everywhere (all on or all off); a network fed off its
    training range gives blotchy, half-decided maps. Several channels (class
    scores standardized per point): the mutual information between position
    and label, zero for a map undecided everywhere or decided the same way
    everywhere. (Mutual information on one channel favoured maps half on,
    half off: it preferred wrong preprocessings on a text detector, whose
    text covers a tenth of the picture.)"""
    m = np.asarray(inp.outputs[guess.detail.output], np.float64)
    n, c, h, w = m.shape
    m = m[:, :, :: max(1, h // MAX_SIDE), :: max(1, w // MAX_SIDE)]
    if c == 1:
        p = m[:, 0]
        if p.min() < -1e-3 or p.max() > 1 + 1e-3:
            p = 1.0 / (1.0 + np.exp(-np.clip(p, -60, 60)))
        q = np.stack([1 - p, p], axis=-1).reshape(n, -1, 2)
        labels = (p > 0.5).reshape(n, -1)
    else:
        z = m.transpose(0, 2, 3, 1).reshape(n, -1, c)
        q = softmax(standardized(z))
        labels = z.argmax(-1)
    if c == 1:
        share = labels.mean(1)
        varied = np.clip(np.minimum(share, 1 - share) / VARIED, 0, 1)
        values = np.abs(2 * p.reshape(n, -1) - 1).mean(1) * varied
    else:
        norm = np.log(max(2, min(q.shape[1], q.shape[2])))
        values = (entropy(q.mean(1)) - entropy(q).mean(1)) / norm
    decided = float(np.mean(np.abs(q.max(-1) * 2 - 1))) if c == 1 else float(q.max(-1).mean())
    coverage = float(np.mean(labels != 0))
    evidence = {"images": n, "points_per_image": int(q.shape[1]), "mean_decidedness": decided, "share_not_background": coverage}
    words = f"map decided to {decided:.2f} on average, {coverage:.0%} of points not label 0"

    def score_of(w: np.ndarray) -> np.ndarray:
        return weighted_mean(w, values)

    return Judgement(one_score(score_of, n), score_of, "decided, varied maps", evidence, words, PixelLabels(labels),
                     clear_gap=CLEAR_GAP_MASK if c == 1 else CLEAR_GAP)


# ---------------------------------------------------------------- presentation


def summary_rows(report: dict) -> list[tuple[str, str, str]]:
    dense = report["fidelity"]["dense"]
    label = "Mask IoU vs FP32" if dense["channels"] == 1 else "Mean IoU vs FP32"
    rows = [(label, "", "-" if dense["iou"] is None else f"{dense['iou'] * 100:.1f}%")]
    if dense.get("mean_abs_error") is not None:
        rows.append(("Mean |FP32 - INT8| of the map (0..1: alpha, probability)", "", f"{dense['mean_abs_error']:.4f}"))
    if dense["map_sqnr_db"] is not None:
        rows.append((f"Map {dense['output']}: SQNR / cosine", "", f"{dense['map_sqnr_db']:.1f} dB / {dense['map_cosine']:.4f}"))
    return rows


def chart(report: dict) -> Chart:
    dense = report["fidelity"]["dense"]
    sqnr = dense["map_sqnr_db"]
    return Chart(f"INT8 map vs FP32 (SQNR {'-' if sqnr is None else f'{sqnr:.1f}'} dB)",
                 (Bar("IoU %", (dense["iou"] or 0) * 100), Bar("same pixels %", (dense["pixel_agreement"] or 0) * 100)))


TASK = Task(
    "dense", "Dense prediction (masks, maps)", guess, DenseFidelity, options=DenseOptions, groups=groups,
    default_resize="letterbox", plausibility=plausibility, summary_rows=summary_rows, chart=chart, pictures=PICTURES,
    metric_words=lambda labels_from: "mask IoU against FP32", needs="no [N, C, H, W] map output", noise_floor=True,
)
