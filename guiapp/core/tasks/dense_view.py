"""A dense model's maps: the image, FP32's map, INT8's map, and where they differ."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..data.preprocess import PreprocessSpec
from .base import Pictures
from .pictures import model_view, scale_for

_PALETTE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]], np.uint8)


def _map_image(m: np.ndarray, classes: int) -> np.ndarray:
    if classes == 1:  # a probability or score map: grey levels over its own range 0..1 (or min..max for logits)
        lo, hi = (0.0, 1.0) if m.min() >= 0 and m.max() <= 1 else (float(m.min()), float(m.max()) or 1.0)
        g = np.clip((m - lo) / max(hi - lo, 1e-9), 0, 1) * 255
        return np.repeat(g[..., None], 3, axis=2).astype(np.uint8)
    return _PALETTE[m.astype(np.int64) % len(_PALETTE)]


def dense_picture(sample: dict, spec: PreprocessSpec, threshold: float | None) -> Image.Image:
    """Image | FP32 map | INT8 map | where they differ (red over the image)."""
    img = model_view(sample["file"], spec)
    a, b, classes = np.asarray(sample["fp32"]), np.asarray(sample["int8"]), sample["classes"]
    size = img.size
    panels = [img]
    for m in (a, b):
        panels.append(Image.fromarray(_map_image(m, classes)).resize(size, Image.Resampling.NEAREST))
    la = a > threshold if classes == 1 and threshold is not None else a
    lb = b > threshold if classes == 1 and threshold is not None else b
    diff = np.asarray(Image.fromarray((la != lb).astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)) > 0
    over = np.asarray(img).copy() // 2
    over[diff] = (230, 30, 30)
    panels.append(Image.fromarray(over))
    k = scale_for(img, 240)
    w, h = size[0] * k, size[1] * k
    out = Image.new("RGB", (4 * w + 3 * 6, h), (255, 255, 255))
    for i, p in enumerate(panels):
        out.paste(p.resize((w, h), Image.Resampling.NEAREST), (i * (w + 6), 0))
    return out


def _legend(section: dict) -> str:
    thr = section.get("threshold")
    if thr is None:
        return "Maps: one colour per class"
    return f"Maps: probability, black 0 to white 1; differences after the threshold {thr:g}"


PICTURES = Pictures(
    usable=lambda section: True,
    title=lambda section: "The image, FP32's map, INT8's map, and where they differ (red)",
    legend=_legend,
    caption=lambda sample: "image, FP32 map, INT8 map, differences (red)",
    draw=lambda sample, section, spec, names: dense_picture(sample, spec, section.get("threshold")),
)
