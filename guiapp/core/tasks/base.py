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
from PIL import Image

from ..data.preprocess import PreprocessSpec
from ..model.modelinfo import ModelInfo


@dataclass(frozen=True)
class TaskGuess:
    """What the model does, and how that was decided. ``detail`` is the
    task's own reading of the outputs (a detector's layout, a dense model's
    map output), reported under the task's kind."""

    kind: str
    reason: str
    detail: Any = None
    chosen_by_user: bool = False

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "reason": self.reason, "chosen_by_user": self.chosen_by_user}
        if self.detail is not None:
            out[self.kind] = self.detail.to_dict()
        return out


@dataclass(frozen=True)
class EvalContext:
    """What a fidelity accumulator may need besides the outputs."""

    options: Any  # the task's options (its ``Task.options`` dataclass), or None
    labels: Any = None  # classification: Labels; detection: BoxLabels; or None
    class_offset: int = 0
    spec: Any = None  # the resolved PreprocessSpec (detection labels map through it)
    samples: int = 12  # images kept for pictures


class Fidelity(Protocol):
    """Accumulates FP32 vs INT8 over batches; ``result()`` gives the report's
    ``fidelity`` section (with a ``headline``); ``samples`` holds pictures' data."""

    samples: list

    def add(self, paths: list[Path], fp32: dict[str, np.ndarray], int8: dict[str, np.ndarray]) -> None: ...

    def merge(self, other: "Fidelity") -> None:
        """Add ``other``, made on the images after these (an evaluation split
        across workers): the result is the one a single pass gives."""

    def result(self) -> dict: ...


def keep_samples(mine: list, theirs: list, limit: int) -> None:
    """A merge's pictures: the first ``limit`` of both, in order."""
    mine.extend(theirs[: max(0, limit - len(mine))])


@dataclass(frozen=True)
class PlausibilityInput:
    """One candidate preprocessing's outputs on the check's images."""

    outputs: dict[str, np.ndarray]  # every model output, images along the first axis
    logits: dict[str, np.ndarray]  # output name -> the tensor its final Softmax reads (the true logits)
    options: Any  # the task's options
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
class Bar:
    label: str
    value: float
    role: str = "int8"  # "fp32" or "int8": the colour it is drawn in


@dataclass(frozen=True)
class Chart:
    """A bar chart of a task's own numbers, drawn by the wizard and the report."""

    title: str
    bars: tuple[Bar, ...]
    fmt: str = "{:.1f}"  # how a bar's value is printed on it


@dataclass(frozen=True)
class Pictures:
    """How a task shows FP32 against INT8 on single images (the fidelity's
    ``samples``). ``section`` is the task's part of the report's fidelity."""

    usable: Callable[[dict], bool]  # whether this run's samples can be drawn
    title: Callable[[dict], str]
    legend: Callable[[dict], str]  # may hold <span style='color:...'> marks
    caption: Callable[[dict], str]  # one sample, in a few words
    draw: Callable[[dict, dict, PreprocessSpec, list | None], Image.Image]  # (sample, section, spec, class names)
    scatter: Callable[[dict], list] = lambda section: []  # (FP32, INT8) value pairs worth a scatter plot
    scatter_title: str = ""


BOARD_PRINT = 'print(path, [(o.shape, float(o.min()), float(o.max())) for o in outputs])\n'


@dataclass(frozen=True)
class Task:
    """Everything the app knows about one task. Adding a task is a module
    with a ``TASK`` and a line in the registry (:mod:`guiapp.core.tasks`)."""

    kind: str
    title: str
    guess: Callable[[ModelInfo], TaskGuess | None]
    fidelity: Callable[[TaskGuess, EvalContext], Fidelity]
    options: type | None = None  # its options dataclass (kept in the job under the task's kind)
    groups: Callable[[TaskGuess, str, tuple], list[tuple[str, int, slice]]] = field(default=lambda g, n, s: [])
    default_resize: str = "letterbox"
    # How plausible outputs are for this task (the normalization check); None: no way to judge.
    plausibility: Callable[[TaskGuess, PlausibilityInput], Judgement] | None = None
    summary_rows: Callable[[dict], list[tuple[str, str, str]]] = field(default=lambda report: [])
    chart: Callable[[dict], Chart | None] = field(default=lambda report: None)
    pictures: Pictures | None = None
    # What the headline measures, given the job's label source (for the accuracy target's text); "": nothing to aim at.
    metric_words: Callable[[str], str] = field(default=lambda labels_from: "")
    needs: str = ""  # what outputs it needs, for the error when a user picks it for a model that has none
    # Python lines for a script on a device: print ``outputs`` (a list of arrays, one image) of ``path``
    # as this task reads them (braces doubled: the lines go through str.format). CLASS_OFFSET is defined.
    board_print: str = BOARD_PRINT
    fallback: bool = False  # fits every model: asked last (generic)
    noise_floor: bool = False  # its headline is measured against FP32, and FP32 itself moves under input noise



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
