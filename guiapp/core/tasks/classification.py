"""Classifiers: one output of class scores. Fidelity is top-1 agreement with
FP32, and top-1/top-5 accuracy when there are labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..model.modelinfo import ModelInfo
from .base import (
    Bar, Chart, EvalContext, Judgement, PlausibilityInput, Task, TaskGuess, entropy, keep_samples, headline, looks_like_probabilities, one_score,
    softmax, standardized, weighted_mean,
)


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

    def merge(self, other: "ClassificationFidelity") -> None:
        self.agree += other.agree
        self.seen += other.seen
        self.labeled += other.labeled
        for key, hits in other.hits.items():
            for k, v in hits.items():
                self.hits[key][k] += v
        keep_samples(self.samples, other.samples, self.ctx.samples)

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
        return {"headline": head, "classification": {"agreement_top1": agreement, "accuracy": acc, "images": self.seen},
                # Top-1 agreement and top-k mean something for classifiers only: the report lists them apart.
                "agreement": {"top1": agreement}, "accuracy": acc}


# ---------------------------------------------------------------- plausibility

MIN_LABELED = 8  # fewer labeled images than this: judge without the labels


class TopClasses:
    """Candidates agree on an image when they pick the same top-1 class."""

    def __init__(self, classes: np.ndarray) -> None:
        self.classes = classes

    def agreement(self, other: "TopClasses") -> float:
        return float(np.mean(self.classes == other.classes)) if len(self.classes) else 1.0


def _logits(inp: PlausibilityInput) -> np.ndarray:
    name = next(iter(inp.outputs))  # like the fidelity: the first output holds the class scores
    n = len(inp.outputs[name])
    if name in inp.logits:
        return np.asarray(inp.logits[name], np.float64).reshape(n, -1)
    z = np.asarray(inp.outputs[name], np.float64).reshape(n, -1)
    return np.log(np.maximum(z, 1e-30)) if looks_like_probabilities(z) else z


def plausibility(guess: TaskGuess, inp: PlausibilityInput) -> Judgement:
    """Unlabeled: how decided and how varied the predictions are: the mutual
    information between image and class (high when each image gets a
    confident prediction and the images get different ones), normalized to
    0..1, computed twice and multiplied: at the model's own temperature, and
    on logits standardized per image. The second takes the logits' scale out:
    an input that is merely too large inflates the logits and the top
    probability of a network without normalization layers, which the first
    would reward. With labels: top-1 accuracy."""
    z = _logits(inp)
    n, classes = z.shape
    norm = np.log(max(2, min(n, classes)))
    own, scaled = softmax(z), softmax(standardized(z))
    h_own, h_scaled = entropy(own), entropy(scaled)

    def information(q: np.ndarray, h: np.ndarray, w: np.ndarray) -> np.ndarray:
        return np.maximum((entropy(weighted_mean(w, q)) - weighted_mean(w, h)) / norm, 0.0)

    def decided(w: np.ndarray) -> np.ndarray:
        return information(own, h_own, w) * information(scaled, h_scaled, w)

    top = own.max(1)
    picks = z.argmax(1)
    values, counts = np.unique(picks, return_counts=True)
    common, common_n = int(values[counts.argmax()]), int(counts.max())
    evidence = {
        "mean_top_probability": float(top.mean()),
        "distinct_classes": int(len(values)),
        "most_common_class": common,
        "most_common_count": common_n,
        "saturated_images": int(np.sum(top > 0.999)),
        "images": n,
    }
    ones = np.ones((1, n))
    evidence["information_own"] = float(information(own, h_own, ones)[0])
    evidence["information_standardized"] = float(information(scaled, h_scaled, ones)[0])
    k = len(values)
    if k == 1:
        words = f"mean top probability {top.mean():.2f}, the same class ({common}) for all {n} images"
    else:
        words = f"mean top probability {top.mean():.2f}, {k} different classes in {n} images"
        if common_n > max(2, n // 3):
            words += f" (class {common} for {common_n})"
    if evidence["saturated_images"] > n // 2:
        words += f"; top probability over 0.999 on {evidence['saturated_images']}"
    labeled = inp.labels is not None and int(np.sum(inp.labels >= 0)) >= MIN_LABELED
    if labeled:
        has = inp.labels >= 0
        hit = np.where(has, (picks == inp.labels + inp.class_offset).astype(np.float64), np.nan)

        def accuracy(w: np.ndarray) -> np.ndarray:
            return weighted_mean(w, hit)

        evidence.update(top1=one_score(accuracy, n), labeled_images=int(has.sum()), decided=one_score(decided, n))
        words = f"top-1 accuracy {evidence['top1']:.2f} on {int(has.sum())} labeled images; " + words
        return Judgement(evidence["top1"], accuracy, "top-1 accuracy", evidence, words, TopClasses(picks))
    return Judgement(one_score(decided, n), decided, "decided, varied predictions", evidence, words, TopClasses(picks))


# ---------------------------------------------------------------- presentation

BOARD_PRINT = """
scores = np.asarray(outputs[0]).reshape(-1)
top = np.argsort(scores)[::-1][:5]
print(path, " ".join(f"{{i - CLASS_OFFSET}}:{{scores[i]:.3f}}" for i in top))
"""


def summary_rows(report: dict) -> list[tuple[str, str, str]]:
    rows = []
    acc = report.get("accuracy")
    if acc:
        n = acc["labeled_images"]
        for k in ("top1", "top5"):
            delta = (acc["int8"][k] - acc["fp32"][k]) * 100
            rows.append((f"Accuracy {k} ({n} images)", f"{acc['fp32'][k] * 100:.1f}%",
                         f"{acc['int8'][k] * 100:.1f}% ({delta:+.1f} points)"))
    agree = (report.get("agreement") or {}).get("top1")
    if agree is not None:
        rows.append(("Top-1 agreement with FP32", "", f"{agree * 100:.1f}%"))
    return rows


def chart(report: dict) -> Chart:
    acc = report.get("accuracy")
    if acc:
        bars = (Bar("FP32 top-1", acc["fp32"]["top1"] * 100, "fp32"), Bar("INT8 top-1", acc["int8"]["top1"] * 100),
                Bar("FP32 top-5", acc["fp32"]["top5"] * 100, "fp32"), Bar("INT8 top-5", acc["int8"]["top5"] * 100))
        return Chart(f"Accuracy %, {acc['labeled_images']} labeled images", bars, fmt="{:.1f}%")
    out = report["outputs"][0] if report.get("outputs") else {}
    agree = (report.get("agreement") or {}).get("top1") or 0
    sqnr = out.get("sqnr_db")
    return Chart("INT8 vs FP32 (no labels)" + (f": output SQNR {sqnr:.1f} dB" if sqnr is not None else ""),
                 (Bar("top-1 agreement %", agree * 100), Bar("cosine × 100", (out.get("cosine") or 0) * 100)))


TASK = Task(
    "classification", "Classification", guess, ClassificationFidelity, default_resize="shorter", plausibility=plausibility,
    summary_rows=summary_rows, chart=chart,
    metric_words=lambda labels_from: "top-1 accuracy" if labels_from in ("csv", "subfolders") else "top-1 agreement with FP32",
    board_print=BOARD_PRINT,
)
