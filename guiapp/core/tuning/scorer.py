"""One trial of the search: build a recipe's INT8 model, score it on the
kept evaluation images in the task's own metric, time it alone.

The search does not build models itself: it is given a :class:`Builder`
(the run's :class:`guiapp.core.quantize.variants.VariantBuilder`, the same
one the plain run uses) and asks it by recipe.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..data.preprocess import normalize
from ..errors import StudioError
from ..evaluate.compare import EvalPlan
from ..evaluate.perlayer import per_layer_error
from ..job import Recipe
from ..progress import CancelToken
from .evalset import EvalSet, score
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


@dataclass
class Scorer:
    builder: Builder
    evalset: EvalSet
    plan: EvalPlan
    goal: Goal
    tmp: Path
    fixed: frozenset[str]  # nodes in float whatever the recipe (the user's and output protection's)
    _count: int = 0

    def run(self, stage: str, r: Recipe, cancel: CancelToken, note: str = "") -> Trial:
        t0 = time.perf_counter()
        self._count += 1
        out = self.tmp / f"trial_{self._count}.onnx"
        self.builder.build(r, out, cancel)
        result, session = score(self.evalset, out, self.plan, cancel)
        head = result["fidelity"]["headline"]
        latency = _latency(session, self.evalset, self.plan.fixed_batch)
        del session
        return Trial(self._count, stage, r, head["value"], self.goal.meets(head["value"]), out.stat().st_size, latency,
                     time.perf_counter() - t0, note, details=head)

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


def _latency(session, evalset: EvalSet, fixed_batch: int | None) -> float | None:
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
