"""Building and scoring one trial: what the search needs, made once.

The FP32 graph and its calibration statistics come from the run; an
equalized graph gets its own calibration pass (equalization changes the
activations it rescales) the first time a trial asks for it; a bias-corrected
graph is made once per (equalized, per-channel) pair, since weight
quantization does not depend on the activation strategy.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from ..data.dataset import batches as make_batches
from ..data.dataset import iter_tensors, seeded_order
from ..errors import StudioError
from ..model.feeds import Feeds
from ..calibrate.histogram import TensorStats
from ..job import QuantSettings
from ..evaluate.perlayer import per_layer_error
from ..progress import CancelToken
from ..calibrate.strategies import StrategySettings, Target, compute_ranges
from ..tasks import EvalContext, TaskGuess
from .biascorr import apply_shifts, bias_shifts
from .equalize import equalized
from .evalset import EvalSet, score
from .trials import Goal, Trial, TrialSettings

BIAS_IMAGES = 128  # calibration images for the channel statistics of equalization and bias correction
PER_LAYER_IMAGES = 8
LATENCY_RUNS = 20


@dataclass
class Variant:
    """An FP32 graph to quantize (saved: ONNX Runtime's quantizer reads a file)
    and the calibration statistics that belong to it."""

    prepared: object  # pipeline.Prepared
    stats: dict[str, TensorStats]


@dataclass
class Workspace:
    base: Variant
    quant: QuantSettings  # the user's settings (exclusions, activation type, format)
    protected: tuple[str, ...]  # output protection's nodes: always float
    percentile: float
    feeds: Feeds
    evalset: EvalSet
    task: TaskGuess
    ctx: EvalContext
    goal: Goal
    tmp: Path
    calibrate: Callable[[onnx.ModelProto], dict[str, TensorStats]]  # a calibration pass over another graph
    calib_files: list[Path]
    spec: object
    fixed_batch: int | None
    build: Callable  # pipeline.build(prepared, ranges, q, out)
    make_prepared: Callable[[onnx.ModelProto, str], object]  # saves a graph as a Prepared
    notes: list[str] = field(default_factory=list)
    _equalized: Variant | None = None
    _shifts: dict = field(default_factory=dict)
    _corrected: dict = field(default_factory=dict)
    _count: int = 0

    # ---- graphs

    def variant(self, s: TrialSettings, cancel: CancelToken) -> Variant:
        v = self.base
        if s.equalize:
            if self._equalized is None:
                model, note = equalized(self.base.prepared.model, self.feeds, self.calib_batches(cancel), cancel)
                self.notes.append(note)
                prepared = self.make_prepared(model, "equalized")
                self._equalized = Variant(prepared, self.calibrate(model))
            v = self._equalized
        if s.bias_correction:
            key = (s.equalize, s.per_channel)
            if key not in self._shifts:
                probe = self.tmp / f"probe_{len(self._shifts)}.onnx"
                self.build(v.prepared, compute_ranges(v.stats, StrategySettings("minmax"), self.target()),
                           replace(self.quant, per_channel=s.per_channel), probe)
                self._shifts[key] = bias_shifts(v.prepared.model, onnx.load(str(probe)), self.feeds,
                                                self.calib_batches(cancel), cancel)
                probe.unlink()
                self.notes.append(f"bias correction ({'per-channel' if s.per_channel else 'per-tensor'} weights"
                                  f"{', equalized' if s.equalize else ''}): {len(self._shifts[key])} layer(s)")
            shifts = self._shifts[key]
            # Layers kept in float keep their bias: their weights are not quantized.
            floats = frozenset(self.all_float(s) & set(shifts))
            ckey = (*key, floats)
            if ckey not in self._corrected:
                model, _ = apply_shifts(v.prepared.model, shifts, floats)
                if len(self._corrected) >= 4:  # keep the folder small: each is a copy of the model
                    old = self._corrected.pop(next(iter(self._corrected)))
                    old.prepared.path.unlink(missing_ok=True)
                self._corrected[ckey] = Variant(self.make_prepared(model, f"corrected_{self._count}_{len(floats)}"), v.stats)
            v = self._corrected[ckey]
        return v

    def all_float(self, s: TrialSettings) -> set[str]:
        return set(self.quant.exclude_nodes) | set(self.protected) | set(s.float_nodes)

    def calib_batches(self, cancel: CancelToken):
        """A few calibration images, for channel statistics."""
        stream = iter_tensors(seeded_order(self.calib_files, 7), self.spec, BIAS_IMAGES, _log(), cancel)
        return make_batches(stream, self.fixed_batch or 8)

    def target(self) -> Target:
        return Target(self.quant.activation_type, self.quant.symmetric_activations)

    def settings_for(self, s: TrialSettings) -> QuantSettings:
        exclude = tuple(dict.fromkeys((*self.quant.exclude_nodes, *self.protected, *s.float_nodes)))
        return replace(self.quant, per_channel=s.per_channel, exclude_nodes=exclude, keep_float=0)

    def build_trial(self, s: TrialSettings, out: Path, cancel: CancelToken) -> Variant:
        v = self.variant(s, cancel)
        ranges = compute_ranges(v.stats, StrategySettings(s.method, self.percentile), self.target())
        self.build(v.prepared, ranges, self.settings_for(s), out)
        return v

    # ---- one trial

    def run(self, stage: str, s: TrialSettings, cancel: CancelToken, note: str = "") -> Trial:
        t0 = time.perf_counter()
        self._count += 1
        out = self.tmp / f"trial_{self._count}.onnx"
        self.build_trial(s, out, cancel)
        result, session = score(self.evalset, out, self.task, self.ctx, cancel, self.fixed_batch)
        head = result["fidelity"]["headline"]
        value = head["value"]
        latency = _latency(session, self.feeds, self.evalset, self.fixed_batch)
        size = out.stat().st_size
        trial = Trial(self._count, stage, s, value, self.goal.meets(value), size, latency,
                      time.perf_counter() - t0, note, details=head)
        del session
        return trial

    def path_of(self, trial: Trial) -> Path:
        return self.tmp / f"trial_{trial.index}.onnx"

    def per_layer(self, trial: Trial, cancel: CancelToken) -> list[dict]:
        v = self.variant(trial.settings, cancel)
        n = min(PER_LAYER_IMAGES, len(self.evalset))
        step = self.fixed_batch or n
        stream = ((p, x) for p, x, _ in self.evalset.batches(step))
        return per_layer_error(v.prepared.model, self.path_of(trial), self.feeds,
                               itertools.islice(stream, max(1, n // step)), cancel)

    def discard(self, trial: Trial, keep: set[int]) -> None:
        """Drop a trial's model file unless it may still be chosen."""
        if trial.index not in keep:
            try:
                os.unlink(self.path_of(trial))
            except OSError:
                pass


def _log():
    from ..data.dataset import ReadLog

    return ReadLog()


def _latency(session, feeds: Feeds, evalset: EvalSet, fixed_batch: int | None) -> float | None:
    """The INT8 model alone, one image a batch (the FP32 outputs are kept, so no
    other session is running or spinning): median of a few timed runs."""
    try:
        x = np.stack([evalset.pixels[0]] * (fixed_batch or 1))
        from ..data.preprocess import normalize

        feed = feeds(np.stack([normalize(p, evalset.spec) for p in x]))
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
