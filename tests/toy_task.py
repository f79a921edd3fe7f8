"""A task of the tests' own: scalar regression (one number per image, an
age or a quality score). It shows what adding a task takes: this module,
and one line in the registry (``TASKS["regression"] = TASK``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from guiapp.core.fields import check_between
from guiapp.core.model.modelinfo import ModelInfo
from guiapp.core.tasks.base import Bar, Chart, EvalContext, Task, TaskGuess, headline


@dataclass(frozen=True)
class RegressionOptions:
    tolerance: float = 0.05  # INT8 agrees with FP32 within this share of FP32's spread

    def __post_init__(self) -> None:
        check_between("task.regression.tolerance", self.tolerance, 0.0, 1.0)


def guess(info: ModelInfo) -> TaskGuess | None:
    outs = info.task_outputs
    if len(outs) == 1 and outs[0].shape is not None and len(outs[0].shape) == 2 and outs[0].shape[1] == 1:
        return TaskGuess("regression", f"one output {outs[0].shape_text}: one number per image")
    return None


class RegressionFidelity:
    def __init__(self, guess: TaskGuess, ctx: EvalContext) -> None:
        self.tolerance = ctx.options.tolerance
        self.a: list[np.ndarray] = []
        self.b: list[np.ndarray] = []
        self.samples: list = []

    def add(self, paths: list[Path], fp32: dict, int8: dict) -> None:
        self.a.append(np.asarray(next(iter(fp32.values())), np.float64).reshape(-1))
        self.b.append(np.asarray(next(iter(int8.values())), np.float64).reshape(-1))

    def merge(self, other: "RegressionFidelity") -> None:
        self.a.extend(other.a)
        self.b.extend(other.b)

    def result(self) -> dict:
        a, b = np.concatenate(self.a), np.concatenate(self.b)
        spread = max(float(a.max() - a.min()), 1e-12)
        within = float(np.mean(np.abs(a - b) <= self.tolerance * spread))
        head = headline("regression_within", f"Within {self.tolerance:.0%} of FP32's spread", within, 0.5,
                        "INT8's numbers stray from FP32's: try another strategy, or keep the last layers in float.")
        return {"headline": head, "regression": {"within": within, "mae": float(np.mean(np.abs(a - b))), "images": len(a)}}


def summary_rows(report: dict) -> list[tuple[str, str, str]]:
    r = report["fidelity"]["regression"]
    return [("Mean |FP32 - INT8|", "", f"{r['mae']:.4f}"), ("Within tolerance", "", f"{r['within'] * 100:.1f}%")]


TASK = Task(
    "regression", "Regression (one number per image)", guess, RegressionFidelity, options=RegressionOptions,
    default_resize="shorter", summary_rows=summary_rows,
    chart=lambda report: Chart("INT8 within tolerance", (Bar("within %", report["fidelity"]["regression"]["within"] * 100),)),
    metric_words=lambda labels_from: "agreement with FP32 within the tolerance",
)
