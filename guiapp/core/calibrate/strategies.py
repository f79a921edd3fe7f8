"""Calibration strategies: from collected statistics to one range per tensor.

Every strategy reads the same :class:`~guiapp.core.calibrate.histogram.TensorStats`, so
switching strategy needs no new pass over the images (the calibration cache).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .histogram import HALF, TensorStats

METHODS = ("minmax", "ema-minmax", "percentile", "entropy", "mse")
HISTOGRAM_METHODS = frozenset({"percentile", "entropy", "mse"})  # the others need only extremes
RANGE_WORKERS = min(4, os.cpu_count() or 1)

DESCRIPTIONS = {
    "minmax": "The full observed range. The safe first choice: exact for well-behaved activations, but one outlier image widens the range and costs resolution for all others.",
    "ema-minmax": "A moving average (constant 0.01) of each batch's min and max: robust to a rare outlier batch, but clips values that only some batches reach.",
    "percentile": "Clips the range at a percentile of the values (default 99.99%): drops rare outliers, but also the real peaks some layers need. Try it when a few extreme values stretch the range, and compare with minmax.",
    "entropy": "TensorRT's KL-divergence search: the clipping threshold whose INT8 histogram loses the least information. Strong on CNN classifiers.",
    "mse": "The range that minimizes the mean squared quantize-dequantize error under the observed histogram (RKNN's mmse). Balances clipping and rounding.",
}

# Integer limits ONNX Runtime uses (quant_utils.get_qmin_qmax_for_qType, no reduce_range).
_QRANGE = {("uint8", False): (0, 255), ("uint8", True): (0, 255), ("int8", False): (-128, 127), ("int8", True): (-127, 127)}


@dataclass(frozen=True)
class RangeTarget:
    """How activations will be quantized: the strategies optimize for it."""

    qtype: str = "uint8"
    symmetric: bool = False

    @property
    def qmin_qmax(self) -> tuple[int, int]:
        return _QRANGE[(self.qtype, self.symmetric)]


@dataclass(frozen=True)
class StrategySettings:
    method: str = "minmax"
    percentile: float = 99.99


def compute_ranges(stats: dict[str, TensorStats], settings: StrategySettings, target: RangeTarget,
                   known: dict | None = None) -> dict[str, tuple[float, float]]:
    """One (low, high) range per tensor that saw finite values. Tensors with
    the same statistics (a Relu or Clip input sharing its output's) get the
    range computed once; ``known`` carries those across calls (one dict per
    strategy and target)."""
    known = {} if known is None else known
    keys = {name: s.fingerprint() for name, s in stats.items() if s.finite}
    todo = {key: stats[name] for name, key in keys.items() if key not in known}
    if settings.method == "mse" and len(todo) > 1:
        # 5-9 ms a tensor, in NumPy loops that release the GIL: side by side
        # (1.4x on two cores). Entropy's and percentile's are too short to gain.
        with ThreadPoolExecutor(max_workers=RANGE_WORKERS, thread_name_prefix="guiapp-ranges") as pool:
            found = pool.map(lambda s: tensor_range(s, settings, target), todo.values())
            known.update(zip(todo, found))
    else:
        known.update((key, tensor_range(s, settings, target)) for key, s in todo.items())
    return {name: known[key] for name, key in keys.items()}


def tensor_range(s: TensorStats, settings: StrategySettings, target: RangeTarget) -> tuple[float, float]:
    m = settings.method
    if m == "minmax":
        return s.lo, s.hi
    if m == "ema-minmax":
        return s.ema_lo, s.ema_hi
    if s.exp is None:  # no histogram: every value was 0
        return s.lo, s.hi
    if m == "percentile":
        return percentile_range(s, settings.percentile, target.symmetric)
    if m == "entropy":
        return _clip_to_observed(s, entropy_threshold(s, target))
    if m == "mse":
        return mse_range(s, target)
    raise ValueError(f"unknown calibration method {m!r}")


def _clip_to_observed(s: TensorStats, t: float) -> tuple[float, float]:
    """A symmetric threshold, clipped to what was observed (a ReLU output
    keeps 0 as its lower end)."""
    return max(-t, s.lo), min(t, s.hi)


# ---------------------------------------------------------------- percentile


def percentile_range(s: TensorStats, p: float, symmetric: bool) -> tuple[float, float]:
    """``symmetric``: the p-th percentile of |x|, as +-t. Otherwise the lower
    (100-p)-th and upper p-th percentiles of x, each tail clipped on its own."""
    w = s.width
    if symmetric:
        h = s.abs_hist()
        cdf = np.cumsum(h) / h.sum()
        j = int(np.searchsorted(cdf, p / 100.0))
        return _clip_to_observed(s, (j + 1) * w)
    cdf = np.cumsum(s.hist) / s.hist.sum()
    j_hi = int(np.searchsorted(cdf, p / 100.0))
    j_lo = int(np.searchsorted(cdf, (100.0 - p) / 100.0, side="right"))
    hi = (j_hi + 1 - HALF) * w  # upper edge of the bin
    lo = (j_lo - HALF) * w  # lower edge
    return max(lo, s.lo), min(hi, s.hi)


# ---------------------------------------------------------------- entropy


def entropy_threshold(s: TensorStats, target: RangeTarget) -> float:
    """TensorRT's KL-divergence threshold over the |x| histogram (>= 2048 bins).

    For each candidate threshold (a bin edge i), P is the histogram up to i
    with the clipped mass added to its last bin, and Q is P merged into the
    quantized levels and spread back evenly over each level's non-empty bins.
    Q is constant inside a level, so KL(P||Q) = sum P log P - sum_levels
    P_level log q_level, which prefix sums give for all thresholds at once.

    Exact zeros are left out: zero is represented exactly at any threshold,
    and after a ReLU their spike in the first bin would otherwise favour tiny
    thresholds (where it gets a level of its own) and clip far too much.
    """
    h = s.abs_hist().astype(np.float64)
    h[0] -= s.zeros
    nonzero = np.flatnonzero(h)
    if nonzero.size == 0:
        return 0.0
    h = h[: nonzero[-1] + 1]
    # Levels available on one side: 256 for a non-negative tensor in asymmetric
    # uint8 (the whole code range covers [0, t]), otherwise 128 (TensorRT).
    nq = 256 if (s.lo >= 0 and not target.symmetric and target.qtype == "uint8") else 128
    if h.size <= nq:
        return h.size * s.width
    return kl_best_bins(h, nq) * s.width


def kl_best_bins(h: np.ndarray, nq: int) -> int:
    """The number of bins i (nq <= i <= len(h)) whose threshold gives the least
    KL(P||Q), the first of equal ones; h's last bin is not empty.

    With i bins in levels of step = i // nq bins (the last level also takes
    the remainder), q_level = mass_level / nonempty_level / kept_i, so

        sum P log Q = (1/total) sum_levels P_level (log(mass_level / nonempty_level) - log kept_i).

    Every level but the last spans the same bins for all thresholds of one
    step: their sum comes once per step (at most len(h) / nq of them), and
    each threshold adds only its last level. O(len(h)) work, not O(len(h) * nq).
    """
    n = h.size
    total = h.sum()
    csum = np.concatenate(([0.0], np.cumsum(h)))
    cnz = np.concatenate(([0.0], np.cumsum(h > 0)))
    hlogh = np.concatenate(([0.0], np.cumsum(np.where(h > 0, h * np.log(np.where(h > 0, h, 1.0)), 0.0))))

    i = np.arange(nq, n + 1)  # bins kept
    step = i // nq
    steps = np.arange(step[0], step[-1] + 1)
    # Levels 0 .. nq-2 of each step: mass and non-empty bins, then sum m log(m / nonempty).
    starts = steps[:, None] * np.arange(nq - 1)[None, :]
    mass = csum[starts + steps[:, None]] - csum[starts]
    nonempty = cnz[starts + steps[:, None]] - cnz[starts]
    some = mass > 0
    head_mlogq = np.where(some, mass * np.log(np.where(some, mass, 1.0) / np.maximum(nonempty, 1)), 0.0).sum(axis=1)
    head_mass = csum[(nq - 1) * steps]
    k = step - steps[0]

    kept = csum[i]
    outliers = total - kept  # mass beyond the threshold, folded into bin i-1
    last = h[i - 1]
    # sum P log P, with P = h / total and bin i-1 holding last + outliers
    with_outliers = last + outliers
    a = hlogh[i - 1] + np.where(with_outliers > 0, with_outliers * np.log(np.maximum(with_outliers, 1e-300)), 0.0)
    a = a / total - math.log(total)
    # The last level: bins (nq-1)*step .. i-1, carrying the clipped mass too.
    tail = kept - csum[(nq - 1) * step]
    tail_nonempty = cnz[i] - cnz[(nq - 1) * step]
    has = tail > 0  # an empty last level has no Q: its clipped mass is caught below
    tail_p = np.where(has, tail + outliers, 0.0)
    tail_mlogq = np.where(has, tail_p * np.log(np.where(has, tail, 1.0) / np.maximum(tail_nonempty, 1)), 0.0)
    b = (head_mlogq[k] + tail_mlogq - np.log(np.maximum(kept, 1e-300)) * (head_mass[k] + tail_p)) / total
    kl = a - b
    # A clipped mass on an empty last bin has no Q to match: infinite KL.
    kl = np.where((last == 0) & (outliers > 0), np.inf, kl)
    return int(i[int(np.argmin(kl))])


# ---------------------------------------------------------------- mse


def _scale_zero_point(lo, hi, target: RangeTarget):
    """ONNX Runtime's compute_scale_zp, vectorized: the range always includes
    0; symmetric ranges are centred. Returns scale, zero point and the lowest
    and highest representable values."""
    qmin, qmax = target.qmin_qmax
    rmin = np.minimum(lo, 0.0)
    rmax = np.maximum(hi, 0.0)
    if target.symmetric:
        a = np.maximum(-rmin, rmax)
        rmin, rmax = -a, a
    scale = (rmax - rmin) / (qmax - qmin)
    scale = np.where(scale > 0, scale, 1.0)
    zp = np.full_like(scale, round((qmin + qmax) / 2)) if target.symmetric else np.round(qmin - rmin / scale)
    zp = np.clip(zp, qmin, qmax)
    return scale, zp, (qmin - zp) * scale, (qmax - zp) * scale


def _cube(x):
    # x * x * x, not x ** 3: glibc's pow takes up to 50 ns a value on negative
    # bases (two roundings instead of one: 1e-16 relative, no threshold moved)
    return x * x * x


def _rounding_integral(x, s):
    """Integral of the squared rounding error (x - s*round(x/s))^2 from a grid
    midpoint up to x: whole periods give s^3/12 each, the rest r^3/3."""
    k = np.floor(x / s + 0.5)
    r = x - k * s
    return k * (s**3 / 12.0) + (_cube(r) + (s / 2.0) ** 3) / 3.0


_MSE_ROWS = 16  # candidates per block: a block's (rows, bins) temporaries stay in cache


def quantization_mse(edges_lo, edges_hi, counts, lo, hi, target: RangeTarget) -> np.ndarray:
    """Expected squared quantize-dequantize error of a histogram for each
    candidate range (lo[i], hi[i]), values spread evenly within each bin.

    Inside the representable range the error is the rounding sawtooth, whose
    integral has a closed form; beyond it, the distance to the clipped end.
    Exact for any ratio of bin width to quantization step. Candidates go in
    blocks (each row's sum is the same as in one pass), and a side with no bin
    beyond it adds nothing, so it is not computed.
    """
    lo = np.atleast_1d(np.asarray(lo, np.float64))[:, None]
    hi = np.atleast_1d(np.asarray(hi, np.float64))[:, None]
    a, b = edges_lo[None, :], edges_hi[None, :]
    width = b - a
    total = counts.sum()
    out = np.empty(lo.shape[0])
    for r in range(0, lo.shape[0], _MSE_ROWS):
        rows = slice(r, r + _MSE_ROWS)
        scale, _, vmin, vmax = _scale_zero_point(lo[rows], hi[rows], target)
        # inside [vmin, vmax]
        ia, ib = np.clip(a, vmin, vmax), np.clip(b, vmin, vmax)
        err = _rounding_integral(ib, scale) - _rounding_integral(ia, scale)
        # above vmax and below vmin: (x - end)^2 integrates to a cubic
        if b[0, -1] > vmax.min():
            ua = np.maximum(a, vmax)
            err += np.where(b > vmax, (_cube(b - vmax) - _cube(ua - vmax)) / 3.0, 0.0)
        if a[0, 0] < vmin.max():
            lb = np.minimum(b, vmin)
            err += np.where(a < vmin, (_cube(lb - vmin) - _cube(a - vmin)) / 3.0, 0.0)
        err /= width
        err *= counts[None, :]
        out[rows] = err.sum(axis=1) / total
    return out


def mse_range(s: TensorStats, target: RangeTarget) -> tuple[float, float]:
    """Shrink the observed range by a factor alpha in (0, 1] and keep the alpha
    with the least expected QDQ error: a coarse search over 99 factors, then a
    fine one around the best."""
    counts = s.hist.reshape(-1, 2).sum(axis=1).astype(np.float64)  # 2x coarser: exact integration copes
    w = s.width * 2
    keep = np.flatnonzero(counts)
    edges_lo = (keep - counts.size // 2) * w
    counts = counts[keep]
    lo, hi = s.lo, s.hi

    def best(alphas: np.ndarray) -> float:
        e = quantization_mse(edges_lo, edges_lo + w, counts, alphas * lo, alphas * hi, target)
        return float(alphas[int(np.argmin(e))])

    a = best(np.linspace(0.01, 1.0, 100))
    a = best(np.clip(np.linspace(a - 0.01, a + 0.01, 41), 1e-3, 1.0))
    return a * lo, a * hi
