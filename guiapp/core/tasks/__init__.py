"""Tasks: what a model does, decided from its outputs, and how its INT8
version is judged against FP32.

``TASKS`` is the registry; :func:`detect_task` asks each task in turn (the
most specific first) and says how it decided. A user's choice overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from ..errors import JobError
from ..fields import Reader, check_choice, from_json, kind_of, to_json
from ..model.modelinfo import ModelInfo
from . import classification, dense, detection, generic
from .base import EvalContext, Fidelity, Task, TaskGuess

TASKS: dict[str, Task] = {t.kind: t for t in (detection.TASK, classification.TASK, dense.TASK, generic.TASK)}
TASK_KINDS = ("auto", *TASKS)  # as registered at import (the command line's choices)


def task_kinds() -> tuple[str, ...]:
    """"auto" and every registered task, now."""
    return ("auto", *TASKS)

__all__ = ["TASKS", "TASK_KINDS", "EvalContext", "Fidelity", "Task", "TaskGuess", "TaskSettings", "detect_task",
           "make_fidelity", "default_resize"]


@dataclass(frozen=True)
class TaskSettings:
    """The task ("auto": decided from the model's outputs) and each task's
    options (kind -> its ``Task.options`` dataclass), as the job keeps them."""

    kind: str = "auto"
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("task.kind", self.kind, task_kinds(), "task")
        for k, v in self.options.items():
            cls = TASKS[k].options if k in TASKS else None
            if cls is None or not isinstance(v, cls):
                raise JobError(f"task.{k}", f"no options of this kind for the task {k!r}")
        # Defaults are not kept: two settings that mean the same compare equal.
        object.__setattr__(self, "options", {k: v for k, v in self.options.items() if v != type(v)()})

    def options_for(self, kind: str) -> Any:
        """``kind``'s options: the job's, else the task's defaults (None for a task without options)."""
        cls = TASKS[kind].options if kind in TASKS else None
        if cls is None:
            return None
        return self.options.get(kind) or cls()

    def with_options(self, kind: str, options: Any) -> "TaskSettings":
        return replace(self, options={**self.options, kind: options})

    def to_json(self) -> dict:
        """Every task's options are written (defaults too): a job file shows what it can set."""
        return {"kind": self.kind, **{k: to_json(self.options_for(k)) for k, t in TASKS.items() if t.options is not None}}

    @classmethod
    def from_json(cls, data: Any, reader: Reader) -> "TaskSettings":
        if not isinstance(data, dict):
            raise reader.error(f"expected an object, got {kind_of(data)}")
        kind = data.get("kind", "auto")
        if not isinstance(kind, str) or kind not in task_kinds():
            raise reader.at("kind").error(f"expected one of {', '.join(task_kinds())}, got {kind_of(kind)}")
        options = {}
        for key, value in data.items():
            if key == "kind":
                continue
            task = TASKS.get(key)
            if task is None or task.options is None:
                raise reader.at(key).error("unknown setting", "Remove it or check its spelling.")
            if value is not None:
                options[key] = from_json(task.options, value, reader.at(key))
        return cls(kind, options)


def detect_task(info: ModelInfo, kind: str = "auto") -> TaskGuess:
    """The task of ``info``'s model: ``kind`` when the user chose one, else
    the first task in the registry's order that fits (the fallback, generic,
    last)."""
    if kind == "auto":
        stated = info.exporter.task
        if stated in TASKS:  # what the file says, when its outputs agree
            g = TASKS[stated].guess(info)
            if g is not None:
                return replace(g, reason=f"{info.exporter.task_claim} in the file's metadata; {g.reason}")
        for task in sorted(TASKS.values(), key=lambda t: t.fallback):
            g = task.guess(info)
            if g is not None:
                return g
        raise AssertionError("the fallback task always fits")
    g = TASKS[kind].guess(info)
    if g is None and kind == "classification" and info.task_outputs:
        t = info.task_outputs[0]
        g = TaskGuess("classification", f"chosen by you; the first output {t.name} {t.shape_text} is read as class scores")
    if g is None:
        shapes = ", ".join(f"{t.name} {t.shape_text}" for t in info.task_outputs)
        raise JobError(
            "task.kind",
            f"the model's outputs ({shapes}) do not fit {kind}: {TASKS[kind].needs or 'unknown layout'}",
            "Choose auto, generic, or another task.",
        )
    return replace(g, chosen_by_user=True, reason=g.reason if g.reason.startswith("chosen") else "chosen by you: " + g.reason)


def make_fidelity(guess: TaskGuess, ctx: EvalContext) -> Fidelity:
    return TASKS[guess.kind].fidelity(guess, ctx)


def default_resize(kind: str) -> str:
    """Detectors and dense models see the whole picture: never a centre crop."""
    return TASKS[kind].default_resize if kind in TASKS else "shorter"
