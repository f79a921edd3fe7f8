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
from ..modelinfo import ModelInfo
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
class Task:
    kind: str
    guess: Callable[[ModelInfo], TaskGuess | None]
    fidelity: Callable[[TaskGuess, EvalContext], Fidelity]
    groups: Callable[[TaskGuess, str, tuple], list[tuple[str, int, slice]]] = field(default=lambda g, n, s: [])
    default_resize: str = "letterbox"


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
