"""From a recipe to an INT8 model: the one builder the plain run and the
accuracy-target search share.

The FP32 graph and its calibration statistics come from the run; an
equalized graph gets its own calibration pass (equalization changes the
activations it rescales) the first time a recipe asks for it; a
bias-corrected graph is made once per (equalized, per-channel) pair, since
weight quantization does not depend on the activation strategy.

A trial that changes only the strategy of an earlier one (same graph, same
settings, same layers in float) is not given to ONNX Runtime's quantizer
again: the graph it wrote is patched with the new activation scales
(patching.py); each strategy's ranges are computed once per graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import onnx

from ..calibrate.calibration import CalibrationInputs, calibrate
from ..calibrate.histogram import TensorStats
from ..calibrate.strategies import StrategySettings, RangeTarget, compute_ranges
from ..data.dataset import ReadLog, batches, iter_tensors, seeded_order
from ..job import QuantSettings, Recipe
from ..progress import CancelToken, ProgressFn, no_progress
from .biascorr import apply_shifts, bias_shifts
from .equalize import equalized
from .outputform import shared_ranges
from .patching import WrittenGraphs
from .prepare import Prepared, build, quantize_file

BIAS_IMAGES = 128  # calibration images for the channel statistics of equalization and bias correction
KEEP_CORRECTED = 4  # bias-corrected graphs kept at once (each is a copy of the model)


@dataclass(frozen=True)
class BuildJob:
    """One INT8 model to write, as plain data a worker process can run:
    the FP32 graph's file, the final ranges (Concat sharing applied), the
    quantizer's settings, the output file."""

    model: Path
    ranges: dict
    settings: QuantSettings
    out: Path

    def __call__(self) -> Path:
        quantize_file(self.model, self.ranges, self.settings, self.out)
        return self.out


@dataclass(frozen=True)
class Ready:
    """A model already written (patched here): the worker only scores it."""

    out: Path

    def __call__(self) -> Path:
        return self.out


@dataclass
class Variant:
    """An FP32 graph to quantize (saved: ONNX Runtime's quantizer reads a file)
    and the calibration statistics that belong to it."""

    prepared: Prepared
    stats: dict[str, TensorStats]


def channel_batches(source: CalibrationInputs, fixed_batch: int | None, cancel: CancelToken):
    """A few calibration images, for channel statistics."""
    stream = iter_tensors(seeded_order(source.files, 7), source.spec, BIAS_IMAGES, ReadLog(), cancel)
    return batches(stream, fixed_batch or 8)


def equalize_prepared(prepared: Prepared, source: CalibrationInputs, fixed_batch: int | None, cancel: CancelToken,
                      path: Path) -> Prepared:
    """``prepared`` equalized (its Clip bounds measured on calibration images), saved to ``path``."""
    model, note = equalized(prepared.model, source.feeds, channel_batches(source, fixed_batch, cancel), cancel)
    return prepared.with_graph(model, path, note)


@dataclass
class VariantBuilder:
    """Builds the INT8 model of any :class:`Recipe` from one prepared graph.

    ``quant`` holds the user's settings (exclusions, activation type,
    format); ``protected`` output protection's nodes, always in float;
    ``source`` the calibration images (for an equalized graph's own pass)."""

    base: Variant
    quant: QuantSettings
    protected: tuple[str, ...]
    percentile: float
    source: CalibrationInputs
    fixed_batch: int | None
    tmp: Path
    progress: ProgressFn = no_progress  # an equalized graph's calibration pass reports here
    notes: list[str] = field(default_factory=list)
    # Graphs the quantizer wrote, patched for trials that change only the strategy (None: it writes every one).
    written: WrittenGraphs | None = field(default_factory=WrittenGraphs)
    _ranges: dict = field(default_factory=dict)
    _equalized: Variant | None = None
    _shifts: dict = field(default_factory=dict)
    _corrected: dict = field(default_factory=dict)
    _count: int = 0

    def variant(self, r: Recipe, cancel: CancelToken) -> Variant:
        """The FP32 graph and statistics ``r`` quantizes."""
        v = self.base
        if r.equalize:
            v = self._equalized_variant(cancel)
        if r.bias_correction:
            v = self._corrected_variant(v, r, cancel)
        return v

    def _equalized_variant(self, cancel: CancelToken) -> Variant:
        if self._equalized is None:
            prepared = equalize_prepared(self.base.prepared, self.source, self.fixed_batch, cancel, self.tmp / "equalized.onnx")
            self.notes.append(prepared.steps[-1])
            stats = calibrate(prepared.model, replace(self.source, cache_path=None), self.progress, cancel).stats
            self._equalized = Variant(prepared, stats)
        return self._equalized

    def _corrected_variant(self, v: Variant, r: Recipe, cancel: CancelToken) -> Variant:
        key = (r.equalize, r.per_channel)
        if key not in self._shifts:
            probe = self.tmp / f"probe_{len(self._shifts)}.onnx"
            build(v.prepared, compute_ranges(v.stats, StrategySettings("minmax"), self.target()),
                  replace(self.quant, per_channel=r.per_channel), probe)
            self._shifts[key] = bias_shifts(v.prepared.model, onnx.load(str(probe)), self.source.feeds,
                                            channel_batches(self.source, self.fixed_batch, cancel), cancel)
            probe.unlink()
            self.notes.append(f"bias correction ({'per-channel' if r.per_channel else 'per-tensor'} weights"
                              f"{', equalized' if r.equalize else ''}): {len(self._shifts[key])} layer(s)")
        shifts = self._shifts[key]
        # Layers kept in float keep their bias: their weights are not quantized.
        floats = frozenset(self.all_float(r) & set(shifts))
        ckey = (*key, floats)
        if ckey not in self._corrected:
            model, _ = apply_shifts(v.prepared.model, shifts, floats)
            if len(self._corrected) >= KEEP_CORRECTED:
                old = self._corrected.pop(next(iter(self._corrected)))
                old.prepared.path.unlink(missing_ok=True)
            self._count += 1
            path = self.tmp / f"corrected_{self._count}_{len(floats)}.onnx"
            self._corrected[ckey] = Variant(v.prepared.with_graph(model, path), v.stats)
        return self._corrected[ckey]

    def all_float(self, r: Recipe) -> set[str]:
        return set(self.quant.exclude_nodes) | set(self.protected) | set(r.float_nodes)

    def target(self) -> RangeTarget:
        return RangeTarget(self.quant.activation_type, self.quant.symmetric_activations)

    def settings_for(self, r: Recipe) -> QuantSettings:
        """The settings ONNX Runtime's quantizer gets for ``r``."""
        exclude = tuple(dict.fromkeys((*self.quant.exclude_nodes, *self.protected, *r.float_nodes)))
        return replace(self.quant, per_channel=r.per_channel, exclude_nodes=exclude, keep_float=0)

    def ranges(self, v: Variant, r: Recipe, names: set[str] | None = None) -> dict:
        """``r``'s strategy's ranges of ``v``'s statistics (of ``names`` only,
        when given), each computed once (a bias-corrected graph shares its
        parent's statistics)."""
        key = (id(v.stats), r.method)
        hit = self._ranges.get(key)
        if hit is None or hit[0] is not v.stats:
            hit = self._ranges[key] = (v.stats, {}, {})
        done = hit[1]
        todo = {n: s for n, s in v.stats.items() if n not in done and (names is None or n in names)}
        if todo:
            done.update(compute_ranges(todo, StrategySettings(r.method, self.percentile), self.target(), hit[2]))
        return {n: done[n] for n in v.stats if n in done and (names is None or n in names)}

    def range_names(self, v: Variant) -> frozenset[str]:
        """The tensors that get a range (whatever the strategy: those that saw finite values)."""
        return frozenset(n for n, s in v.stats.items() if s.finite)

    def final_ranges(self, v: Variant, r: Recipe, settings: QuantSettings) -> dict:
        """The ranges the quantizer gets for ``r`` (Concat inputs tied as the settings say)."""
        return shared_ranges(v.prepared.model, self.ranges(v, r), settings)

    def build(self, r: Recipe, out: Path, cancel: CancelToken) -> Variant:
        """Write ``r``'s INT8 model to ``out``; returns the variant it came from."""
        v = self.variant(r, cancel)
        settings = self.settings_for(r)
        if not self._patched(v, r, settings, out):
            ranges = self.final_ranges(v, r, settings)
            quantize_file(v.prepared.path, ranges, settings, out)
            self.adopt(BuildJob(v.prepared.path, ranges, settings, out))
        return v

    def build_job(self, r: Recipe, out: Path, cancel: CancelToken) -> BuildJob | Ready:
        """``r``'s model as a job for a worker: the graph it needs is made
        here (equalized, bias-corrected), the quantizer runs there (or the
        model is patched here, when an earlier trial's graph serves)."""
        v = self.variant(r, cancel)
        settings = self.settings_for(r)
        if self._patched(v, r, settings, out):
            return Ready(out)
        return BuildJob(v.prepared.path, self.final_ranges(v, r, settings), settings, out)

    def adopt(self, job) -> None:
        """Keep the graph ``job`` had the quantizer write (when it did) as a base for later trials."""
        if self.written is not None and isinstance(job, BuildJob) and job.out.is_file():
            self.written.remember(job.model, job.ranges, job.settings, job.out)

    def _patched(self, v: Variant, r: Recipe, settings: QuantSettings, out: Path) -> bool:
        """Write ``r``'s model by patching an earlier one, computing only the ranges the patch reads."""
        if self.written is None:
            return False
        model, names = v.prepared.model, self.range_names(v)
        needed = self.written.needed(model, v.prepared.path, names, settings)
        if needed is None:
            return False
        ranges = shared_ranges(model, self.ranges(v, r, needed), settings)
        return self.written.patch(model, v.prepared.path, names, ranges, settings, out)
