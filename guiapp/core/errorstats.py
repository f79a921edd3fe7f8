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
