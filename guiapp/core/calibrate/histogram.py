"""Streaming per-tensor statistics in fixed memory.

Each tensor keeps its min and max, a per-image moving average of both, and a
histogram of its values on a symmetric grid [-a, a] where ``a`` is a power of
two at least max|x|, in ``2 * HALF`` bins. When a batch widens the range, ``a``
doubles (once or more) and every 2^k old bins merge exactly into one new bin,
since the grids nest. Binning by a power-of-two scale is exact in float32, so
collecting batch by batch gives the same histogram as collecting everything at
once. Since max|x| > a/2, at least HALF/2 = 2048 bins cover [0, max|x|].
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np

HALF = 4096  # bins per side; max|x| > a/2, so at least HALF/2 bins cover the data
_CHUNK = 1 << 16
_local = threading.local()


def _scratch() -> tuple[np.ndarray, np.ndarray]:
    """Per-thread chunk buffers, allocated once: allocating them per call
    costs an mmap and page faults each time."""
    if not hasattr(_local, "buffers"):
        _local.buffers = (np.empty(_CHUNK, np.float32), np.empty(_CHUNK, np.int64))  # bincount wants intp
    return _local.buffers


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
        x = np.asarray(batch)
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        if x.size == 0:
            return math.inf, -math.inf
        flat = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(1, -1)
        lo, hi = float(flat.min()), float(flat.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            flat = np.where(np.isfinite(flat), flat, np.float32(0))  # NaN/inf carry no range
            lo, hi = float(flat.min()), float(flat.max())
        self.fold_extremes(lo, hi, ema_constant)
        if not histogram:
            return lo, hi
        self.count += flat.size
        absmax = max(-lo, hi)
        if absmax == 0.0:
            self.zeros += flat.size
            if self.exp is None:
                self.zeros_pending += flat.size
            else:
                self.hist[HALF] += flat.size
            return lo, hi
        self._grow_to(absmax)
        self._add(flat)
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
        need = math.frexp(absmax)[1]  # smallest e with absmax < 2**e (absmax == 2**e-1 lands in the top bin)
        if self.exp is None:
            self.exp = need
            self.hist[HALF] += self.zeros_pending
            self.zeros_pending = 0
        elif need > self.exp:
            self.hist = rebin(self.hist, need - self.exp)
            self.exp = need

    def _add(self, flat: np.ndarray) -> None:
        # x * 2**k and floor() are exact in float32; the offset is added in
        # integers (adding it in float32 would round values near bin edges
        # differently at different scales). Cache-sized chunks: every pass
        # then reads from cache instead of memory, about twice as fast.
        scale = np.float32(2.0 ** (math.log2(HALF) - self.exp))
        values = flat.reshape(-1)
        fbuf, ibuf = _scratch()
        for start in range(0, values.size, _CHUNK):
            chunk = values[start : start + _CHUNK]
            self.zeros += chunk.size - int(np.count_nonzero(chunk))
            f, b = fbuf[: chunk.size], ibuf[: chunk.size]
            np.multiply(chunk, scale, out=f)
            np.floor(f, out=f)
            b[...] = f
            b += HALF
            np.clip(b, 0, 2 * HALF - 1, out=b)
            self.hist += np.bincount(b, minlength=2 * HALF)

    # ------------------------------------------------------------ views

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


# ---------------------------------------------------------------- exact derivations
# Some operators' output statistics follow exactly from their inputs', so the
# collector need not read those tensors at all. Extremes are derived batch by
# batch (the caller does that, so the moving average stays exact); histograms
# once collection is done.
#
# Histograms derive exactly only where the output's grid is the one direct
# collection would choose: values unchanged (reshapes) or a union (Concat, on
# the widest input's grid). Not Relu or Clip: a tensor spanning [-30, 5] has a
# grid for 32, its Relu output one for 8, four times finer; deriving would
# lose that resolution. Their extremes derive exactly.

SAME_VALUES = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity"})
HISTOGRAM_DERIVABLE = SAME_VALUES | {"Concat"}
EXTREMES_DERIVABLE = HISTOGRAM_DERIVABLE | {"Relu", "Clip"}


def derived_hist(op: str, inputs: list[TensorStats], out: TensorStats) -> None:
    """Fill ``out``'s histogram, zeros and count from its inputs' (its extremes
    are already folded batch by batch)."""
    if op in SAME_VALUES:
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
    if op in SAME_VALUES:
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
