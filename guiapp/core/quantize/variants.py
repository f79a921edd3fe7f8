"""From a recipe to an INT8 model: the one builder the plain run and the
accuracy-target search share.

The FP32 graph and its calibration statistics come from the run; an
equalized graph gets its own calibration pass (equalization changes the
activations it rescales) the first time a recipe asks for it; a
bias-corrected graph is made once per (equalized, per-channel) pair, since
weight quantization does not depend on the activation strategy.
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

    def ranges(self, v: Variant, r: Recipe) -> dict:
        return compute_ranges(v.stats, StrategySettings(r.method, self.percentile), self.target())

    def build(self, r: Recipe, out: Path, cancel: CancelToken) -> Variant:
        """Write ``r``'s INT8 model to ``out``; returns the variant it came from."""
        v = self.variant(r, cancel)
        build(v.prepared, self.ranges(v, r), self.settings_for(r), out)
        return v

    def build_job(self, r: Recipe, out: Path, cancel: CancelToken) -> BuildJob:
        """``r``'s model as a job for a worker: the graph it needs is made
        here (equalized, bias-corrected), the quantizer runs there."""
        v = self.variant(r, cancel)
        settings = self.settings_for(r)
        return BuildJob(v.prepared.path, shared_ranges(v.prepared.model, self.ranges(v, r), settings), settings, out)
