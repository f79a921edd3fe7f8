"""Everything else: the outputs compared value by value (SQNR, cosine), with
no task-specific number. The headline is the worst output's SQNR."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..model.modelinfo import ModelInfo
from .base import Bar, Chart, EvalContext, Task, TaskGuess, channel_groups, headline
from .errorstats import ErrorStats

BROKEN_DB = 10.0  # noise amplitude a third of the signal's


def guess(info: ModelInfo) -> TaskGuess:
    shapes = ", ".join(f"{t.name} {t.shape_text}" for t in info.task_outputs)
    return TaskGuess("generic", f"the outputs ({shapes}) match no classifier, detector or map layout")


def groups(g: TaskGuess, name: str, shape: tuple) -> list[tuple[str, int, slice]]:
    return channel_groups(shape, 1)


class GenericFidelity:
    def __init__(self, guess: TaskGuess, ctx: EvalContext) -> None:
        self.stats: dict[str, ErrorStats] = {}
        self.samples: list = []

    def add(self, paths: list[Path], fp32: dict, int8: dict) -> None:
        for n, a in fp32.items():
            if np.asarray(a).dtype.kind == "f":
                self.stats.setdefault(n, ErrorStats()).add(np.asarray(a), np.asarray(int8[n]))

    def merge(self, other: "GenericFidelity") -> None:
        for n, st in other.stats.items():
            self.stats.setdefault(n, ErrorStats()).merge(st)

    def result(self) -> dict:
        values = [(s.sqnr_db, n) for n, s in self.stats.items() if s.sqnr_db is not None]
        worst = min(values) if values else (None, None)
        advice = ("An output differs from FP32 by more than a third of its size. Check it on your task; try "
                  "another strategy, per-channel weights, or keep the worst layers in float.")
        return {"headline": headline("worst_output_sqnr_db", "Worst output SQNR (dB)", worst[0], BROKEN_DB, advice, output=worst[1]),
                "generic": {"outputs": len(self.stats)}}


def summary_rows(report: dict) -> list[tuple[str, str, str]]:
    head = report["fidelity"]["headline"]
    if head["value"] is None:
        return []
    return [(head["label"], "", f"{head['value']:.1f} dB ({head.get('output')})")]


def chart(report: dict) -> Chart:
    outs = [o for o in report.get("outputs") or [] if o.get("sqnr_db") is not None]
    return Chart("Output SQNR, INT8 vs FP32 (dB)", tuple(Bar(o["name"][:14], min(o["sqnr_db"], 80.0)) for o in outs))


TASK = Task("generic", "Generic (no task-specific numbers)", guess, GenericFidelity, groups=groups, default_resize="shorter",
            summary_rows=summary_rows, chart=chart, metric_words=lambda labels_from: "", fallback=True)
