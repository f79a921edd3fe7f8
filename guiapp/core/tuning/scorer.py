"""One trial of the search: build a recipe's INT8 model, score it on the
kept evaluation images in the task's own metric, time it alone.

The search does not build models itself: it is given a :class:`Builder`
(the run's :class:`guiapp.core.quantize.variants.VariantBuilder`, the same
one the plain run uses) and asks it by recipe.

Two recipes may write the same file (a layer sent to float whose Q/DQ pairs
the quantizer keeps for its neighbours, such as an Add between quantized
convolutions): a trial whose file has the bytes of an earlier one takes that
trial's numbers instead of being scored again (one process: not scored at
all; workers: scored, then recorded the same way), and says so in its note.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from ..data.preprocess import normalize
from ..errors import StudioError
from ..evaluate.compare import EvalPlan
from ..evaluate.perlayer import per_layer_error
from ..job import Recipe
from ..progress import CancelToken
from ..evaluate.sessions import make_session
from ..parallel import Failed
from .evalset import EvalSet, load_evalset, save_evalset, score
from .trials import Goal, Trial

PER_LAYER_IMAGES = 8
LATENCY_RUNS = 20


class Builder(Protocol):
    """What the search needs of a model builder."""

    notes: list[str]

    def build(self, r: Recipe, out: Path, cancel: CancelToken) -> Any:
        """Write ``r``'s INT8 model to ``out``; return its variant (``.prepared.model``: the FP32 graph it came from)."""

    def variant(self, r: Recipe, cancel: CancelToken) -> Any:
        """The FP32 graph and statistics ``r`` quantizes."""

    def all_float(self, r: Recipe) -> set[str]:
        """Every node ``r`` leaves in float (the user's, output protection's and its own)."""

    def build_job(self, r: Recipe, out: Path, cancel: CancelToken) -> Callable[[], Path]:
        """``r``'s model as a picklable job that writes it (run by a worker)."""

    def adopt(self, job: Callable[[], Path]) -> None:
        """A worker ran ``job``: what it wrote may serve later trials."""


@dataclass(frozen=True)
class TrialItem:
    """What a worker needs to score one trial: a job that writes its model, the
    evaluation set's files (decoded images and FP32 outputs), the plan."""

    build: Callable[[], Path]
    evalset: Path
    plan: EvalPlan


def score_trial(item: TrialItem) -> dict:
    """A worker's trial: write the model, score it in the task's metric
    (its latency is timed later, alone)."""
    t0 = time.perf_counter()
    out = item.build()
    result, session = score(load_evalset(item.evalset), out, item.plan, CancelToken())
    del session
    return {"headline": result["fidelity"]["headline"], "size": out.stat().st_size, "seconds": time.perf_counter() - t0}


@dataclass
class Scorer:
    builder: Builder
    evalset: EvalSet
    plan: EvalPlan
    goal: Goal
    tmp: Path
    fixed: frozenset[str]  # nodes in float whatever the recipe (the user's and output protection's)
    executor: Any = None  # runs the trials of one step concurrently (None: one after another, here)
    _count: int = 0
    _files: Path | None = None  # the evaluation set saved for workers
    _digests: dict = field(default_factory=dict)  # file digest -> the first trial that wrote it
    _done: dict = field(default_factory=dict)  # trial index -> (metric, its headline, latency)

    def _same_as(self, index: int, path: Path) -> int | None:
        """The earlier trial whose model file has ``path``'s bytes, if any
        (else ``index`` is remembered as the first to write them)."""
        digest = _digest(path)
        first = self._digests.setdefault(digest, index)
        return first if first != index and first in self._done else None

    def _again(self, index: int, first: int, stage: str, r: Recipe, size: int, seconds: float, note: str) -> Trial:
        value, head, latency = self._done[first]
        self._done[index] = self._done[first]
        return Trial(index, stage, r, value, self.goal.meets(value), size, latency, seconds,
                     f"{note}; the same model as trial {first}", details=head)

    def run(self, stage: str, r: Recipe, cancel: CancelToken, note: str = "") -> Trial:
        t0 = time.perf_counter()
        self._count += 1
        out = self.tmp / f"trial_{self._count}.onnx"
        self.builder.build(r, out, cancel)
        first = self._same_as(self._count, out)
        if first is not None:
            return self._again(self._count, first, stage, r, out.stat().st_size, time.perf_counter() - t0, note)
        result, session = score(self.evalset, out, self.plan, cancel)
        head = result["fidelity"]["headline"]
        latency = latency_ms(session, self.evalset, self.plan.fixed_batch)
        del session
        self._done[self._count] = (head["value"], head, latency)
        return Trial(self._count, stage, r, head["value"], self.goal.meets(head["value"]), out.stat().st_size, latency,
                     time.perf_counter() - t0, note, details=head)

    def run_many(self, stage: str, todo: list[tuple[Recipe, str]], cancel: CancelToken) -> list[Trial]:
        """The trials of one step: with an executor of several workers, built
        and scored concurrently, then each model timed here, alone; else one
        after another. Same indices, files and numbers either way."""
        workers = getattr(self.executor, "workers", 1)
        if workers <= 1 or len(todo) <= 1:
            return [self.run(stage, r, cancel, note) for r, note in todo]
        if self._files is None:
            self._files = save_evalset(self.evalset, self.tmp / "evalset")
        items, indices = [], []
        for r, _ in todo:
            self._count += 1
            indices.append(self._count)
            items.append(TrialItem(self.builder.build_job(r, self.tmp / f"trial_{self._count}.onnx", cancel), self._files, self.plan))
        outcomes = self.executor.map(score_trial, items, cancel)
        trials = []
        for index, (r, note), o, item in zip(indices, todo, outcomes, items):
            if isinstance(o, Failed):
                trials.append(Trial(index, stage, r, None, False, 0, None, 0.0, f"{note}; failed: {o.reason}"))
                continue
            self.builder.adopt(item.build)
            first = self._same_as(index, self.tmp / f"trial_{index}.onnx")
            if first is not None:
                trials.append(self._again(index, first, stage, r, o["size"], o["seconds"], note))
                continue
            value = o["headline"]["value"]
            session = make_session(self.tmp / f"trial_{index}.onnx")
            latency = latency_ms(session, self.evalset, self.plan.fixed_batch)
            del session
            self._done[index] = (value, o["headline"], latency)
            trials.append(Trial(index, stage, r, value, self.goal.meets(value), o["size"], latency, o["seconds"], note,
                                details=o["headline"]))
        return trials

    def path_of(self, trial: Trial) -> Path:
        return self.tmp / f"trial_{trial.index}.onnx"

    def graph_of(self, trial: Trial, cancel: CancelToken):
        """The FP32 graph ``trial``'s model was made from."""
        return self.builder.variant(trial.recipe, cancel).prepared.model

    def per_layer(self, trial: Trial, cancel: CancelToken) -> list[dict]:
        n = min(PER_LAYER_IMAGES, len(self.evalset))
        step = self.plan.fixed_batch or n
        stream = ((p, x) for p, x, _ in self.evalset.batches(step))
        return per_layer_error(self.graph_of(trial, cancel), self.path_of(trial), self.plan.feeds,
                               itertools.islice(stream, max(1, n // step)), cancel)

    def discard(self, trial: Trial, keep: set[int]) -> None:
        """Drop a trial's model file unless it may still be chosen."""
        if trial.index not in keep:
            try:
                os.unlink(self.path_of(trial))
            except OSError:
                pass


def _digest(path: Path) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


def latency_ms(session, evalset: EvalSet, fixed_batch: int | None) -> float | None:
    """The INT8 model alone, one image a batch (the FP32 outputs are kept, so no
    other session is running or spinning): median of a few timed runs."""
    try:
        x = np.stack([evalset.pixels[0]] * (fixed_batch or 1))
        feed = evalset.feeds(np.stack([normalize(p, evalset.spec) for p in x]))
        for _ in range(3):
            session.run(None, feed)
        times = []
        for _ in range(LATENCY_RUNS):
            t = time.perf_counter()
            session.run(None, feed)
            times.append((time.perf_counter() - t) * 1000)
        return float(np.median(times))
    except StudioError:
        return None
