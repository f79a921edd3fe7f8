"""What every task module provides, and the settings a user can correct.

A task (classification, detection, dense, generic) is one module with a
``TASK``: how to recognise a model of that kind from its outputs, and how to
measure INT8 against FP32 in terms that mean something for it. The registry
in :mod:`guiapp.core.tasks` lists them; nothing else branches on the kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from ..errors import JobError
from ..model.modelinfo import ModelInfo
from .detection_layout import BOX_FORMATS, DetectionLayout

TASK_KINDS = ("auto", "classification", "detection", "dense", "generic")


@dataclass(frozen=True)
class TaskSettings:
    """The task and the knobs of its fidelity numbers, as the job stores them."""

    kind: str = "auto"  # "auto": decided from the model's outputs
    box_format: str = "auto"  # detection: how box values read (auto: from the layout)
    score_threshold: float = 0.25  # detection: a box counts from this score on
    nms_iou: float = 0.45  # detection: overlap at which NMS drops the weaker box
    match_iou: float = 0.5  # detection: INT8 box matches an FP32 box (same class) from this IoU on
    mask_threshold: float | None = None  # dense, one channel: None = 0.5 for probabilities, 0 for logits

    def __post_init__(self) -> None:
        f = "task."
        if self.kind not in TASK_KINDS:
            raise JobError(f + "kind", f"unknown task {self.kind!r}", f"Choose one of {', '.join(TASK_KINDS)}.")
        if self.box_format not in BOX_FORMATS:
            raise JobError(f + "box_format", f"unknown box format {self.box_format!r}", f"Choose one of {', '.join(BOX_FORMATS)}.")
        for name in ("score_threshold", "nms_iou", "match_iou"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise JobError(f + name, f"{v} is outside 0..1", "Give a fraction, e.g. 0.25 or 0.5.")

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "box_format": self.box_format,
            "score_threshold": self.score_threshold,
            "nms_iou": self.nms_iou,
            "match_iou": self.match_iou,
            "mask_threshold": self.mask_threshold,
        }


@dataclass(frozen=True)
class TaskGuess:
    """What the model does, and how that was decided."""

    kind: str
    reason: str
    detection: DetectionLayout | None = None
    dense_output: str | None = None  # dense: the map output
    chosen_by_user: bool = False

    @property
    def title(self) -> str:
        return TITLES[self.kind]

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "reason": self.reason,
            "chosen_by_user": self.chosen_by_user,
            "detection": self.detection.to_dict() if self.detection else None,
            "dense_output": self.dense_output,
        }


TITLES = {
    "classification": "Classification",
    "detection": "Object detection",
    "dense": "Dense prediction (masks, maps)",
    "generic": "Generic (no task-specific numbers)",
}


@dataclass(frozen=True)
class EvalContext:
    """What a fidelity accumulator may need besides the outputs."""

    settings: TaskSettings
    labels: Any = None  # classification: Labels; detection: BoxLabels; or None
    class_offset: int = 0
    spec: Any = None  # the resolved PreprocessSpec (detection labels map through it)
    samples: int = 12  # images kept for pictures


class Fidelity(Protocol):
    """Accumulates FP32 vs INT8 over batches; ``result()`` gives the report's
    ``fidelity`` section (with a ``headline``); ``samples`` holds pictures' data."""

    samples: list

    def add(self, paths: list[Path], fp32: dict[str, np.ndarray], int8: dict[str, np.ndarray]) -> None: ...

    def result(self) -> dict: ...


@dataclass(frozen=True)
class PlausibilityInput:
    """One candidate preprocessing's outputs on the check's images."""

    outputs: dict[str, np.ndarray]  # every model output, images along the first axis
    logits: dict[str, np.ndarray]  # output name -> the tensor its final Softmax reads (the true logits)
    settings: TaskSettings
    labels: np.ndarray | None = None  # classification: class index per image (-1: unlabeled)
    class_offset: int = 0


class Signature(Protocol):
    """What two candidates' outputs are compared by (top-1 classes, boxes, maps)."""

    def agreement(self, other: "Signature") -> float:
        """0..1: how far the two candidates' outputs lead to the same result."""


@dataclass(frozen=True)
class Judgement:
    """How plausible a model's outputs are for its task, under one preprocessing.

    ``score_of(weights)`` gives the score under each row of image weights
    ``[R, n]`` (the check's bootstrap: how often each image is drawn); a row
    of ones gives ``score``. Higher is more plausible, comparable between the
    candidates of one model only."""

    score: float
    score_of: Callable[[np.ndarray], np.ndarray]
    metric: str  # what the score is, in words
    evidence: dict  # the numbers behind it
    words: str  # the evidence in plain words
    signature: Signature
    clear_gap: float = 0.03  # a candidate is clearly better only by this share of its score, or more


@dataclass(frozen=True)
class Task:
    kind: str
    guess: Callable[[ModelInfo], TaskGuess | None]
    fidelity: Callable[[TaskGuess, EvalContext], Fidelity]
    groups: Callable[[TaskGuess, str, tuple], list[tuple[str, int, slice]]] = field(default=lambda g, n, s: [])
    default_resize: str = "letterbox"
    # How plausible outputs are for this task (the normalization check); None: no way to judge.
    plausibility: Callable[[TaskGuess, PlausibilityInput], Judgement] | None = None


def headline(metric: str, label: str, value: float | None, broken_below: float, advice: str, **extra) -> dict:
    """The one number a task is judged by, and whether it says the INT8 model is broken."""
    return {
        "metric": metric,
        "label": label,
        "value": value,
        "broken_below": broken_below,
        "broken": value is not None and value < broken_below,
        "advice": advice,
        **extra,
    }


def channel_groups(shape: tuple, axis: int = 1, limit: int = 64) -> list[tuple[str, int, slice]]:
    """One group per channel along ``axis`` when there are 2..``limit`` of them."""
    if len(shape) <= axis or not isinstance(shape[axis], int) or not 2 <= shape[axis] <= limit:
        return []
    return [(f"channel {c}", axis, slice(c, c + 1)) for c in range(shape[axis])]


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats along ``axis``."""
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=axis)


def standardized(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """``z`` shifted and scaled to mean 0, std 1 along ``axis``: what is left
    of scores once their overall scale (which grows with the input's) is
    taken out."""
    return (z - z.mean(axis=axis, keepdims=True)) / np.maximum(z.std(axis=axis, keepdims=True), 1e-12)


def looks_like_probabilities(a: np.ndarray, axis: int = -1) -> bool:
    """Rows that are non-negative and sum to 1: a softmax was applied."""
    return bool(a.size and a.min() >= 0 and np.allclose(a.sum(axis=axis), 1.0, atol=1e-3))


def weighted_mean(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per row of ``weights`` [R, n]: the weighted mean of ``values`` [n] (or
    [n, k], giving [R, k]), leaving out NaN values; 0 where nothing is left."""
    ok = ~np.isnan(values)
    if values.ndim > 1:
        ok = ok.all(axis=tuple(range(1, values.ndim)))
    w = weights * ok
    total = w.sum(axis=1)
    v = np.where(ok.reshape(-1, *([1] * (values.ndim - 1))), values, 0.0)
    mean = (w @ v.reshape(len(v), -1)).reshape(len(w), *values.shape[1:])
    scale = np.where(total > 0, total, 1.0).reshape(-1, *([1] * (values.ndim - 1)))
    return np.where((total > 0).reshape(scale.shape), mean / scale, 0.0)


def one_score(score_of: Callable[[np.ndarray], np.ndarray], n: int) -> float:
    return float(score_of(np.ones((1, n)))[0])
