"""Streaming per-tensor statistics in fixed memory.

Each tensor keeps its min and max, a per-image moving average of both, and a
histogram of its values on a symmetric grid [-a, a] where ``a`` is a power of
two at least max|x|, in ``2 * HALF`` bins. When a batch widens the range, ``a``
doubles (once or more) and every 2^k old bins merge exactly into one new bin,
since the grids nest. Binning by a power-of-two scale is exact in float32, so
collecting batch by batch gives the same histogram as collecting everything at
once. Since max|x| > a/2, at least HALF/2 = 2048 bins cover [0, max|x|].

A batch is folded in cache-sized chunks, each read from memory once: its
extremes, its exact zeros, and its bin counts, by fast-histogram (a compiled
loop that releases the GIL: NumPy's bincount holds it, so two folding threads
ran one at a time; see :func:`_counts` for why its float64 binning is ours).
The grid may widen from one chunk to the next; merging is exact, so the
histogram is the one binning the whole batch at once would give. Where a
Relu or Clip input keeps its own statistics (TensorRT's cache; or it has other
readers), and the Clip's bounds enclose 0, the input is folded by a
:class:`TwinStats`, which gives the output's statistics too without reading
it (with NumPy's bincount: it bins on two grids at once). Otherwise the input
shares the output's statistics (calibration.py's ``derivation_plan``).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import threading
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
from fast_histogram import histogram1d

HALF = 4096  # bins per side; max|x| > a/2, so at least HALF/2 bins cover the data
_LOG2_HALF = 12
_CHUNK = 1 << 16  # 256 KB of float32: every pass over a chunk reads from cache (TwinStats makes four)
_COUNT_CHUNK = 1 << 18  # 1 MB, within L2: fewer calls, each releasing the GIL longer (TensorStats makes four passes)
_local = threading.local()


def _scratch() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-thread chunk buffers (two float32, intp indices, a mask), allocated
    once: allocating them per call costs an mmap and page faults each time."""
    if not hasattr(_local, "buffers"):
        _local.buffers = (np.empty(_CHUNK, np.float32), np.empty(_CHUNK, np.float32),
                          np.empty(_CHUNK, np.intp), np.empty(_COUNT_CHUNK, np.bool_))  # bincount wants intp
    return _local.buffers


def _chunks(batch: np.ndarray, size: int = _CHUNK) -> Iterator[np.ndarray]:
    x = np.asarray(batch)
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    values = x.reshape(-1)
    for start in range(0, values.size, size):
        yield values[start : start + size]


def _finite_extremes(chunk: np.ndarray) -> tuple[float, float, np.ndarray]:
    """The chunk's min and max. NaN and inf carry no range: they count as 0
    (in a copy of the chunk)."""
    lo, hi = float(chunk.min()), float(chunk.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        chunk = np.where(np.isfinite(chunk), chunk, np.float32(0))
        lo, hi = float(chunk.min()), float(chunk.max())
    return lo, hi, chunk


def _exact_zeros(chunk: np.ndarray, mask: np.ndarray) -> int:
    # A compare and a count of booleans: count_nonzero on float32 is several times slower.
    m = mask[: chunk.size]
    np.equal(chunk, 0, out=m)
    return int(np.count_nonzero(m))


def _scaled_floor(chunk: np.ndarray, exp: int, buffer: np.ndarray) -> np.ndarray:
    """floor(chunk * HALF / 2**exp) in ``buffer``: the signed bin index on the
    grid of half-range 2**exp. Exact: a power-of-two scale only moves the
    exponent (beyond float32's largest power of two, in two steps)."""
    f = buffer[: chunk.size]
    shift, source = _LOG2_HALF - exp, chunk
    if shift > 127:  # every value below 2**-115
        np.multiply(chunk, np.float32(2.0**64), out=f)
        shift, source = shift - 64, f
    np.multiply(source, np.float32(2.0**shift), out=f)
    np.floor(f, out=f)
    return f


def _counts(chunk: np.ndarray, exp: int, lo: float) -> np.ndarray:
    """The chunk's counts on the grid of half-range a = 2**exp (every |x| <
    a), as floor(x * HALF / a) + HALF would bin them. fast-histogram bins
    int((x + a) * HALF / a) in float64: the scale is a power of two and x + a
    is exact for |x| >= 2**(exp - 29) (float32's 24 bits within float64's 53),
    and the truncation of a non-negative number is its floor, so it bins every
    value as we do but a negative one with |x| <= 2**(exp - 54), whose x + a
    rounds to a: one bin up, moved back here. Counts are float64, exact."""
    a = 2.0**exp
    counts = histogram1d(chunk, 2 * HALF, (-a, a))
    if lo < 0:
        tiny = np.float32(2.0 ** (exp - 54))  # a power of two: exact, or 0 below float32's range (then none)
        if tiny > 0:
            moved = int(np.count_nonzero((chunk < 0) & (chunk >= -tiny)))
            counts[HALF] -= moved
            counts[HALF - 1] += moved
    return counts


def _grid_for(absmax: float) -> int:
    return math.frexp(absmax)[1]  # smallest e with absmax < 2**e (absmax == 2**e-1 lands in the top bin)


@dataclass
class TensorStats:
    lo: float = math.inf
    hi: float = -math.inf
    ema_lo: float = math.nan
    ema_hi: float = math.nan
    exp: int | None = None  # grid half-range a = 2**exp; None while every value was 0
    zeros_pending: int = 0  # exact zeros seen before the grid existed
    count: int = 0
    zeros: int = 0  # exact zeros (quantized exactly whatever the range; entropy ignores them)
    hist: np.ndarray = field(default_factory=lambda: np.zeros(2 * HALF, np.int64))

    # ------------------------------------------------------------ folding

    def fold(self, batch: np.ndarray, ema_constant: float = 0.01, histogram: bool = True) -> tuple[float, float]:
        """Add one batch to the statistics; returns the batch's (min, max).
        Without ``histogram`` only the extremes and their moving average are kept."""
        lo, hi = math.inf, -math.inf
        for chunk in _chunks(batch, _COUNT_CHUNK):
            clo, chi, chunk = _finite_extremes(chunk)
            lo, hi = min(lo, clo), max(hi, chi)
            if histogram:
                self._add(chunk, clo, chi)
        if lo <= hi:
            self.fold_extremes(lo, hi, ema_constant)
        return lo, hi

    def fold_extremes(self, lo: float, hi: float, ema_constant: float = 0.01) -> None:
        """Add one batch's extremes (the moving average is per batch)."""
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return
        self._fold_ema(lo, hi, ema_constant)
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)

    def _fold_ema(self, lo: float, hi: float, c: float) -> None:
        # Per batch, as PyTorch's MovingAverageMinMaxObserver and ONNX
        # Runtime's moving average do (per image, it tracks a typical image's
        # extremes and clips every peak).
        if math.isnan(self.ema_lo):
            self.ema_lo, self.ema_hi = lo, hi
        else:
            self.ema_lo += c * (lo - self.ema_lo)
            self.ema_hi += c * (hi - self.ema_hi)

    def _grow_to(self, absmax: float) -> None:
        need = _grid_for(absmax)
        if self.exp is None:
            self.exp = need
            self.hist[HALF] += self.zeros_pending
            self.zeros_pending = 0
        elif need > self.exp:
            self.hist = rebin(self.hist, need - self.exp)
            self.exp = need

    def _add(self, chunk: np.ndarray, lo: float, hi: float) -> None:
        n = chunk.size
        self.count += n
        absmax = max(-lo, hi)
        if absmax == 0.0:
            self.zeros += n
            if self.exp is None:
                self.zeros_pending += n
            else:
                self.hist[HALF] += n
            return
        self._grow_to(absmax)
        self.zeros += _exact_zeros(chunk, _scratch()[3])
        np.add(self.hist, _counts(chunk, self.exp, lo), out=self.hist, casting="unsafe")  # whole numbers

    # ------------------------------------------------------------ views

    def fingerprint(self) -> tuple:
        """Equal for equal statistics (every field a strategy reads)."""
        digest = hashlib.blake2b(self.hist.tobytes(), digest_size=16).digest()
        return (self.lo, self.hi, self.ema_lo, self.ema_hi, self.exp, self.count, self.zeros, self.zeros_pending, digest)

    @property
    def width(self) -> float:
        """Bin width."""
        return 2.0 ** self.exp / HALF if self.exp is not None else 0.0

    @property
    def finite(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    def abs_hist(self) -> np.ndarray:
        """Histogram of |x|: bin j covers [j*w, (j+1)*w)."""
        return self.hist[HALF:] + self.hist[:HALF][::-1]


def rebin(hist: np.ndarray, doublings: int) -> np.ndarray:
    """The histogram on a grid 2**doublings times wider (bins nest exactly)."""
    k = 2**doublings
    out = np.zeros_like(hist)
    pos, neg = hist[HALF:], hist[:HALF][::-1]  # both start at zero and go outwards
    if k >= HALF:
        out[HALF] = pos.sum()
        out[HALF - 1] = neg.sum()
        return out
    n = HALF // k
    out[HALF : HALF + n] = pos.reshape(n, k).sum(axis=1)
    out[HALF - n : HALF] = neg.reshape(n, k).sum(axis=1)[::-1]
    return out


class TwinStats:
    """Folds a tensor y into ``stats`` and gives, from the same pass, the
    statistics of z = clip(y, low, high) with low <= 0 <= high (a Relu, or a
    Clip around 0): z is neither output by ONNX Runtime nor binned.

    z's grid is often finer than y's (y in [-30, 20], z in [0, 6]: half-ranges
    32 and 8), so y's values within z's grid are binned on it ("fine" bins)
    and the others on y's grid ("coarse" bins). A value left outside z's grid
    when binned is one the clip moves (|clip(v)| <= z's max < the grid's
    half-range <= |v|): for z only the side it fell on counts. Both grids nest
    in y's, so y's histogram is exact too. Exact zeros are counted apart and
    put back by :meth:`finish`.
    """

    def __init__(self, stats: TensorStats, bounds: tuple[float, float]):
        self.stats = stats  # y's extremes, count and zeros as folded; its histogram comes at finish()
        self.low, self.high = bounds
        self.coarse = np.zeros(2 * HALF, np.int64)  # on y's grid, stats.exp
        self.fine = np.zeros(2 * HALF, np.int64)  # on z's grid, fine_exp
        self.fine_exp: int | None = None
        self._lo, self._hi = math.inf, -math.inf  # y's extremes so far, chunk by chunk

    def fold(self, batch: np.ndarray, ema_constant: float = 0.01, histogram: bool = True) -> tuple[float, float]:
        """As :meth:`TensorStats.fold` (always with histograms)."""
        lo, hi = math.inf, -math.inf
        for chunk in _chunks(batch):
            clo, chi, chunk = _finite_extremes(chunk)
            lo, hi = min(lo, clo), max(hi, chi)
            self._add(chunk, clo, chi)
        if lo <= hi:
            self.stats.fold_extremes(lo, hi, ema_constant)
        return lo, hi

    def _clip(self, v: float) -> float:
        return min(max(v, self.low), self.high)

    def _grow(self) -> None:
        s = self.stats
        need = _grid_for(max(-self._lo, self._hi))
        if s.exp is None or need > s.exp:
            self.coarse = self.coarse if s.exp is None else rebin(self.coarse, need - s.exp)
            s.exp = need
        zmax = max(-self._clip(self._lo), self._clip(self._hi))
        need = _grid_for(zmax) if zmax > 0 else None
        if need is not None and (self.fine_exp is None or need > self.fine_exp):
            self.fine = self.fine if self.fine_exp is None else rebin(self.fine, need - self.fine_exp)
            self.fine_exp = need

    def _add(self, chunk: np.ndarray, lo: float, hi: float) -> None:
        s, n = self.stats, chunk.size
        s.count += n
        self._lo, self._hi = min(self._lo, lo), max(self._hi, hi)
        if max(-lo, hi) == 0.0:
            s.zeros += n
            return
        self._grow()
        fbuf, gbuf, ibuf, mask = _scratch()
        zeros = _exact_zeros(chunk, mask)
        s.zeros += zeros
        index = ibuf[:n]
        if self.fine_exp == s.exp:  # z's grid is y's: every value is on it
            f = _scaled_floor(chunk, s.exp, fbuf)
            f += HALF
            index[...] = f
            self.fine += np.bincount(index, minlength=2 * HALF)
            self.fine[HALF] -= zeros
            return
        g = _scaled_floor(chunk, s.exp, gbuf)
        g += HALF
        if self.fine_exp is not None:  # else z is all zeros so far: every nonzero value is clipped
            # Far outside z's grid the scaled values may overflow to inf: masked out anyway.
            with np.errstate(over="ignore") if s.exp - self.fine_exp > 100 else contextlib.nullcontext():
                f = _scaled_floor(chunk, self.fine_exp, fbuf)
            inside = mask[:n]
            np.less(np.abs(f, out=ibuf.view(np.float32)[:n]), HALF, out=inside)
            f += 3 * HALF
            np.copyto(g, f, where=inside)  # fine bins after the coarse ones
        index[...] = g
        counts = np.bincount(index, minlength=4 * HALF)
        self.coarse += counts[: 2 * HALF]
        self.fine += counts[2 * HALF :]
        (self.fine if self.fine_exp is not None else self.coarse)[HALF] -= zeros

    def finish(self, out: TensorStats) -> None:
        """Complete y's statistics, and z's in ``out`` but for its extremes
        (folded batch by batch from y's by the caller). Call once."""
        s = self.stats
        below, above = int(self.coarse[:HALF].sum() + self.fine[:HALF].sum()), int(self.coarse[HALF:].sum() + self.fine[HALF:].sum())
        out.count, out.exp = s.count, self.fine_exp
        out.zeros = s.zeros + (below if self.low == 0 else 0) + (above if self.high == 0 else 0)
        out.zeros_pending, out.hist = (out.count, np.zeros(2 * HALF, np.int64)) if out.exp is None else (0, self._clipped())
        if s.exp is None:  # every value was 0
            s.zeros_pending, s.hist = s.zeros, np.zeros(2 * HALF, np.int64)
            return
        s.hist = self.coarse + (self.fine if self.fine_exp in (None, s.exp) else rebin(self.fine, s.exp - self.fine_exp))
        s.hist[HALF] += s.zeros
        s.zeros_pending = 0

    def _clipped(self) -> np.ndarray:
        """z's histogram: fine bins beyond a bound go to the bound's bin, and so
        do coarse ones (each side's), with y's exact zeros in the zero bin."""
        w = 2.0**self.fine_exp / HALF
        a = HALF + (max(math.floor(self.low / w), -HALF) if math.isfinite(self.low) else -HALF)
        b = HALF + (min(math.floor(self.high / w), HALF - 1) if math.isfinite(self.high) else HALF - 1)
        h = self.fine.copy()
        h[a] += h[:a].sum() + self.coarse[:HALF].sum()
        h[:a] = 0
        h[b] += h[b + 1 :].sum() + self.coarse[HALF:].sum()
        h[b + 1 :] = 0
        h[HALF] += self.stats.zeros
        return h


# ---------------------------------------------------------------- exact derivations
# Some operators' output statistics follow exactly from their inputs', so the
# collector need not read those tensors at all. Extremes are derived batch by
# batch (the caller does that, so the moving average stays exact); histograms
# once collection is done.
#
# Histograms derive from the inputs' own histograms only where the output's
# grid is the one direct collection would choose: values unchanged (reshapes)
# or a union (Concat, on the widest input's grid). A Relu or Clip output's grid
# is often finer than its input's (a tensor spanning [-30, 5] has a grid for
# 32, its Relu output one for 8): those derive exactly from a TwinStats that
# folded the input on both grids.

SAME_VALUES = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity"})
# Not an operator: a Relu or Clip input that takes its output's statistics
# (ONNX Runtime's quantizer gives such a tensor its activation's range).
SHARED = "shares its activation's range"
HISTOGRAM_DERIVABLE = SAME_VALUES | {"Concat"}
TWIN_DERIVABLE = frozenset({"Relu", "Clip"})  # through TwinStats, when the bounds enclose 0
EXTREMES_DERIVABLE = HISTOGRAM_DERIVABLE | TWIN_DERIVABLE


def derived_hist(op: str, inputs: list[TensorStats], out: TensorStats) -> None:
    """Fill ``out``'s histogram, zeros and count from its inputs' (its extremes
    are already folded batch by batch)."""
    if op in SAME_VALUES or op == SHARED:
        src = inputs[0]
        out.exp, out.zeros_pending, out.count, out.zeros, out.hist = src.exp, src.zeros_pending, src.count, src.zeros, src.hist.copy()
    elif op == "Concat":
        exps = [s.exp for s in inputs if s.exp is not None]
        out.exp = max(exps) if exps else None
        out.hist = np.zeros(2 * HALF, np.int64)
        out.zeros_pending = 0
        for s in inputs:
            if s.exp is None:
                out.zeros_pending += s.zeros_pending
            else:
                out.hist += rebin(s.hist, out.exp - s.exp) if out.exp > s.exp else s.hist
        if out.exp is not None:
            out.hist[HALF] += out.zeros_pending
            out.zeros_pending = 0
        out.count = sum(s.count for s in inputs)
        out.zeros = sum(s.zeros for s in inputs)
    else:
        raise ValueError(f"no exact histogram derivation for {op}")


def derived_extremes(op: str, extremes: list[tuple[float, float]], bounds: tuple[float, float] | None = None) -> tuple[float, float]:
    """One batch's (min, max) of the output from the inputs' (same batch);
    ``bounds`` are Clip's constant min and max."""
    if op in SAME_VALUES or op == SHARED:
        return extremes[0]
    if op == "Relu":
        lo, hi = extremes[0]
        return max(lo, 0.0), max(hi, 0.0)
    if op == "Clip":
        lo, hi = extremes[0]
        a, b = bounds
        return min(max(lo, a), b), min(max(hi, a), b)
    if op == "Concat":
        return min(e[0] for e in extremes), max(e[1] for e in extremes)
    raise ValueError(f"no exact derivation for {op}")
