"""Tasks: what a model does, decided from its outputs, and how its INT8
version is judged against FP32.

``TASKS`` is the registry; :func:`detect_task` asks each task in turn (the
most specific first) and says how it decided. A user's choice overrides it.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import JobError
from ..model.modelinfo import ModelInfo
from . import classification, dense, detection, generic
from .base import TASK_KINDS, EvalContext, Fidelity, Task, TaskGuess, TaskSettings

TASKS: dict[str, Task] = {t.kind: t for t in (detection.TASK, classification.TASK, dense.TASK, generic.TASK)}

__all__ = ["TASKS", "TASK_KINDS", "EvalContext", "Fidelity", "Task", "TaskGuess", "TaskSettings", "detect_task", "make_fidelity"]


def detect_task(info: ModelInfo, kind: str = "auto") -> TaskGuess:
    """The task of ``info``'s model: ``kind`` when the user chose one, else
    the first task (detection, classification, dense, generic) that fits."""
    if kind == "auto":
        for task in TASKS.values():
            g = task.guess(info)
            if g is not None:
                return g
        raise AssertionError("generic always fits")
    g = TASKS[kind].guess(info)
    if g is None and kind == "classification" and info.task_outputs:
        t = info.task_outputs[0]
        g = TaskGuess("classification", f"chosen by you; the first output {t.name} {t.shape_text} is read as class scores")
    if g is None:
        shapes = ", ".join(f"{t.name} {t.shape_text}" for t in info.task_outputs)
        raise JobError(
            "task.kind",
            f"the model's outputs ({shapes}) do not fit {kind}: "
            + {"detection": "no YOLO-style tensor, score/box pair or per-stride outputs",
               "dense": "no [N, C, H, W] map output"}.get(kind, "unknown layout"),
            "Choose auto, generic, or another task.",
        )
    return replace(g, chosen_by_user=True, reason=g.reason if g.reason.startswith("chosen") else "chosen by you: " + g.reason)


def make_fidelity(guess: TaskGuess, ctx: EvalContext) -> Fidelity:
    return TASKS[guess.kind].fidelity(guess, ctx)


def default_resize(kind: str) -> str:
    """Detectors and dense models see the whole picture: never a centre crop."""
    return TASKS[kind].default_resize if kind in TASKS else "shorter"
