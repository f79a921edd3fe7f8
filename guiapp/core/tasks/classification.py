"""Classifiers: one output of class scores. Fidelity is top-1 agreement with
FP32, and top-1/top-5 accuracy when there are labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..modelinfo import ModelInfo
from .base import EvalContext, Task, TaskGuess, headline


def guess(info: ModelInfo) -> TaskGuess | None:
    if len(info.task_outputs) != 1:
        return None
    t = info.task_outputs[0]
    s = t.shape
    if s is None or not t.dtype.startswith("float"):
        return None
    if len(s) == 2 and isinstance(s[1], int) and s[1] >= 2:
        return TaskGuess("classification", f"one output {t.shape_text}: {s[1]} class scores per image")
    if len(s) == 4 and isinstance(s[1], int) and s[1] >= 2 and s[2] == 1 and s[3] == 1:
        return TaskGuess("classification", f"one output {t.shape_text}: {s[1]} class scores per image (1x1 map)")
    return None


def topk_hits(scores: np.ndarray, labels: np.ndarray, k: int, offset: int) -> int:
    """How many rows have ``label + offset`` among their top ``k`` scores."""
    flat = scores.reshape(scores.shape[0], -1)
    k = min(k, flat.shape[1])
    top = np.argpartition(-flat, k - 1, axis=1)[:, :k]
    return int(np.sum(np.any(top == (labels[:, None] + offset), axis=1)))


class ClassificationFidelity:
    def __init__(self, guess: TaskGuess, ctx: EvalContext) -> None:
        self.ctx = ctx
        self.agree = self.seen = self.labeled = 0
        self.hits = {"fp32": {1: 0, 5: 0}, "int8": {1: 0, 5: 0}}
        self.samples: list = []

    def add(self, paths: list[Path], fp32: dict, int8: dict) -> None:
        n = len(paths)
        a = np.asarray(next(iter(fp32.values()))).reshape(n, -1)
        b = np.asarray(next(iter(int8.values()))).reshape(n, -1)
        self.agree += int(np.sum(a.argmax(1) == b.argmax(1)))
        self.seen += n
        labels = self.ctx.labels
        if labels is None:
            return
        ys = [labels.get(p) for p in paths]
        idx = [i for i, y in enumerate(ys) if y is not None]
        if not idx:
            return
        y = np.array([ys[i] for i in idx])
        for key, out in (("fp32", a), ("int8", b)):
            for k in (1, 5):
                self.hits[key][k] += topk_hits(out[idx], y, k, self.ctx.class_offset)
        self.labeled += len(idx)

    def accuracy(self) -> dict | None:
        if not self.labeled:
            return None
        n = self.labeled
        return {
            "labeled_images": n,
            "class_offset": self.ctx.class_offset,
            "fp32": {"top1": self.hits["fp32"][1] / n, "top5": self.hits["fp32"][5] / n},
            "int8": {"top1": self.hits["int8"][1] / n, "top5": self.hits["int8"][5] / n},
        }

    def result(self) -> dict:
        agreement = self.agree / self.seen if self.seen else None
        acc = self.accuracy()
        advice = ("The INT8 model picks another class than FP32 on most images. Check the preprocessing, try "
                  "per-channel weights, another strategy (entropy or mse), or keep the worst layers in float.")
        head = headline("top1_agreement", "Top-1 agreement with FP32", agreement, 0.5, advice)
        if acc is not None:
            head.update(metric="top1", label=f"Top-1 accuracy ({acc['labeled_images']} labeled images)",
                        value=acc["int8"]["top1"], fp32=acc["fp32"]["top1"], agreement=agreement)
            head["broken"] = agreement is not None and agreement < 0.5
        return {"headline": head, "classification": {"agreement_top1": agreement, "accuracy": acc, "images": self.seen}}


TASK = Task("classification", guess, ClassificationFidelity, default_resize="shorter")
