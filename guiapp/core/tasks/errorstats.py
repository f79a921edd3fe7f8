"""FP32-vs-INT8 error of one tensor, accumulated over images: SQNR and cosine."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ErrorStats:
    """Accumulates FP32-vs-INT8 error of one tensor over images: SQNR over
    all values, cosine per image (first axis)."""

    signal: float = 0.0
    noise: float = 0.0
    cosines: list[float] = field(default_factory=list)

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        r = ref.reshape(ref.shape[0], -1).astype(np.float64)
        g = got.reshape(got.shape[0], -1).astype(np.float64)
        self.signal += float(np.sum(r * r))
        self.noise += float(np.sum((r - g) ** 2))
        num = np.sum(r * g, axis=1)
        den = np.linalg.norm(r, axis=1) * np.linalg.norm(g, axis=1)
        self.cosines.extend(np.where(den > 0, num / np.maximum(den, 1e-300), 1.0).tolist())

    def merge(self, other: "ErrorStats") -> None:
        """Add ``other``, accumulated on the images after these."""
        self.signal += other.signal
        self.noise += other.noise
        self.cosines.extend(other.cosines)

    @property
    def sqnr_db(self) -> float | None:
        return sqnr_db(self.signal, self.noise)

    @property
    def cosine(self) -> float | None:
        return float(np.mean(self.cosines)) if self.cosines else None

    def result(self, name: str) -> dict:
        return {"name": name, "cosine": self.cosine, "sqnr_db": self.sqnr_db}


def sqnr_db(signal: float, noise: float) -> float | None:
    """Signal-to-quantization-noise ratio in dB (None when undefined; capped at 200 dB for exact matches)."""
    if signal <= 0:
        return None
    if noise <= 0:
        return 200.0
    return float(10.0 * np.log10(signal / noise))


def channel_axis(shape: tuple) -> int | None:
    """The axis whose entries are "channels" worth measuring apart: axis 1
    of a 4-D map; the shorter of axes 1 and 2 of a 3-D tensor ([N, 4+C, A]
    or [N, A, 4+C]); None otherwise or when there are over 256."""
    if len(shape) == 4:
        axis = 1
    elif len(shape) == 3:
        axis = 1 if shape[1] <= shape[2] else 2
    else:
        return None
    return axis if 2 <= shape[axis] <= 256 else None


@dataclass
class ChannelErrorStats:
    """Signal and noise power per channel: a channel crushed to zero shows
    here even when louder channels make the whole tensor's SQNR look fine."""

    axis: int
    signal: np.ndarray | None = None
    noise: np.ndarray | None = None

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        r = np.moveaxis(np.asarray(ref, np.float64), self.axis, 0).reshape(ref.shape[self.axis], -1)
        g = np.moveaxis(np.asarray(got, np.float64), self.axis, 0).reshape(ref.shape[self.axis], -1)
        s, n = (r * r).sum(axis=1), ((r - g) ** 2).sum(axis=1)
        self.signal = s if self.signal is None else self.signal + s
        self.noise = n if self.noise is None else self.noise + n

    def mean_noise_ratio(self) -> float | None:
        """Mean over channels of noise/signal (1 for a silent channel made noisy, capped at 1)."""
        if self.signal is None:
            return None
        ratio = np.where(self.signal > 0, self.noise / np.maximum(self.signal, 1e-300), np.where(self.noise > 0, 1.0, 0.0))
        return float(np.mean(np.minimum(ratio, 1.0)))
