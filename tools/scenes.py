"""Synthetic scenes for the detector and segmenter demo models: a few shapes
of four classes on textured backgrounds, with exact boxes and masks.

Used by tools/make_detector.py and tools/make_segmenter.py. Every random
choice comes from the generator passed in, so a seed gives the same scene.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = ("circle", "square", "triangle", "star")
SIZES = ((240, 180), (180, 240), (200, 200), (256, 192), (224, 168))  # (width, height)
SUPERSAMPLE = 3
JPEG_QUALITY = 90


@dataclass(frozen=True)
class Scene:
    image: Image.Image  # RGB
    boxes: np.ndarray  # [K, 4] x1, y1, x2, y2 in source pixels (tight around the drawn shape)
    classes: np.ndarray  # [K] class index
    mask: np.ndarray  # (H, W) float 0..1: shape coverage


def _color(rng) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float64)


def _contrasting(rng, against: np.ndarray) -> np.ndarray:
    for _ in range(100):
        c = _color(rng)
        if np.abs(c - against).sum() > 150:
            return c
    return 255.0 - against


def _background(rng, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """A gradient with blotchy texture; returns (pixels, mean colour)."""
    c0, c1 = _color(rng), _color(rng)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    t = (xx / w - 0.5) * math.cos(angle) + (yy / h - 0.5) * math.sin(angle)
    t = ((t - t.min()) / (np.ptp(t) + 1e-9))[..., None]
    bg = (1 - t) * c0 + t * c1
    blot = Image.fromarray((rng.random((h // 8 + 1, w // 8 + 1)) * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    bg += (np.asarray(blot, np.float64)[..., None] - 128) * rng.uniform(0.05, 0.3)
    return bg, bg.reshape(-1, 3).mean(0)


def _outline(name: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]] | None:
    def poly(radii):
        n = len(radii)
        return [(cx + q * math.cos(rot + 2 * math.pi * i / n), cy + q * math.sin(rot + 2 * math.pi * i / n)) for i, q in enumerate(radii)]

    if name == "square":
        return poly([r] * 4)
    if name == "triangle":
        return poly([r] * 3)
    if name == "star":
        return poly([r, r * 0.45] * 5)
    return None  # circle


def _shape_mask(rng, name: str, w: int, h: int, r: float, cx: float, cy: float) -> np.ndarray:
    s = SUPERSAMPLE
    m = Image.new("L", (w * s, h * s), 0)
    d = ImageDraw.Draw(m)
    pts = _outline(name, cx * s, cy * s, r * s, rng.uniform(0, 2 * math.pi))
    if pts is None:
        d.ellipse((s * (cx - r), s * (cy - r), s * (cx + r), s * (cy + r)), fill=255)
    else:
        d.polygon(pts, fill=255)
    return np.asarray(m.resize((w, h), Image.Resampling.BOX), np.float64) / 255.0


def _box(mask: np.ndarray) -> np.ndarray | None:
    ys, xs = np.nonzero(mask > 0.5)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def scene(rng: np.random.Generator, max_objects: int = 5) -> Scene:
    w, h = SIZES[rng.integers(len(SIZES))]
    pixels, bg_mean = _background(rng, w, h)
    draw = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    dd = ImageDraw.Draw(draw)
    for _ in range(rng.integers(0, 4)):  # distractor lines
        x0, x1 = rng.uniform(0, w, 2)
        y0, y1 = rng.uniform(0, h, 2)
        dd.line((x0, y0, x1, y1), fill=tuple(int(v) for v in _color(rng)), width=int(rng.integers(1, 4)))
    pixels = np.asarray(draw, np.float64)
    boxes, classes = [], []
    coverage = np.zeros((h, w))
    for _ in range(rng.integers(1, max_objects + 1)):
        for _attempt in range(20):
            r = rng.uniform(7, min(w, h) * 0.3)
            cx, cy = rng.uniform(r * 0.6, w - r * 0.6), rng.uniform(r * 0.6, h - r * 0.6)
            cls = int(rng.integers(len(CLASSES)))
            m = _shape_mask(rng, CLASSES[cls], w, h, r, cx, cy)
            b = _box(m)
            if b is None or (b[2] - b[0]) < 6 or (b[3] - b[1]) < 6:
                continue
            if any(_iou(b, o) > 0.15 for o in boxes):
                continue
            color = _contrasting(rng, bg_mean)
            pixels = pixels * (1 - m[..., None]) + color * m[..., None]
            coverage = np.maximum(coverage, m)
            boxes.append(b)
            classes.append(cls)
            break
    pixels += rng.normal(0, rng.uniform(1, 6), size=pixels.shape)
    img = Image.fromarray(np.clip(pixels.round(), 0, 255).astype(np.uint8))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return Scene(img, np.array(boxes).reshape(-1, 4), np.array(classes, np.int64), coverage)


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def yolo_lines(s: Scene) -> str:
    """The scene's boxes as a YOLO label file: class cx cy w h, normalized."""
    w, h = s.image.size
    out = []
    for (x1, y1, x2, y2), c in zip(s.boxes, s.classes):
        out.append(f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
    return "\n".join(out) + ("\n" if out else "")
