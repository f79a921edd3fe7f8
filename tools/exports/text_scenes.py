"""Synthetic text images for the DBNet-style text detector: pseudo-words in
DejaVu fonts (Debian's fonts-dejavu-core) on textured backgrounds, with the
exact text-region mask of every word.

The mask marks each word's box (the font's ink box plus a 2 px margin),
turned with the word: plain regions, not shrunk as DBNet's training does, so
that a probability map thresholded at 0.3 should cover them as they are.
Every random choice comes from the generator passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

WIDTH, HEIGHT = 320, 240
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_FILES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSansCondensed.ttf")
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
MARGIN = 2  # pixels around the ink box that belong to the region


@dataclass(frozen=True)
class TextScene:
    image: Image.Image  # RGB, WIDTH x HEIGHT
    mask: np.ndarray  # (H, W) uint8, 255 inside a text region


def fonts_available() -> list[Path]:
    found = [FONT_DIR / f for f in FONT_FILES if (FONT_DIR / f).exists()]
    if not found:
        raise SystemExit(f"no DejaVu fonts in {FONT_DIR}: apt-get install fonts-dejavu-core")
    return found


def _font(rng: np.random.Generator, fonts: list[Path], size: int):
    return ImageFont.truetype(str(fonts[rng.integers(len(fonts))]), size)


def _background(rng: np.random.Generator) -> np.ndarray:
    """A two-colour gradient with blotches and sometimes stripes: (H, W, 3) float."""
    c0, c1 = rng.integers(0, 256, 3).astype(np.float64), rng.integers(0, 256, 3).astype(np.float64)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    t = (xx / WIDTH - 0.5) * math.cos(angle) + (yy / HEIGHT - 0.5) * math.sin(angle)
    t = ((t - t.min()) / (np.ptp(t) + 1e-9))[..., None]
    bg = (1 - t) * c0 + t * c1
    cell = int(rng.integers(4, 24))
    blot = rng.random((HEIGHT // cell + 1, WIDTH // cell + 1)) * 255
    blot = Image.fromarray(blot.astype(np.uint8)).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
    bg += (np.asarray(blot, np.float64)[..., None] - 128) * rng.uniform(0.05, 0.4)
    if rng.random() < 0.3:  # stripes: text-like edges that are not text
        period = rng.uniform(6, 30)
        bg += 25 * np.sign(np.sin(2 * math.pi * (xx * math.cos(angle) - yy * math.sin(angle)) / period))[..., None]
    return bg


def _word(rng: np.random.Generator) -> str:
    n = int(rng.integers(2, 11))
    if rng.random() < 0.2:
        return "".join(rng.choice(list("0123456789"), n))
    word = "".join(rng.choice(list(LETTERS[:26]), n))
    return word.capitalize() if rng.random() < 0.3 else (word.upper() if rng.random() < 0.15 else word)


def _contrasting(rng: np.random.Generator, against: np.ndarray) -> np.ndarray:
    for _ in range(100):
        c = rng.integers(0, 256, 3).astype(np.float64)
        if np.abs(c - against).sum() > 180:
            return c
    return 255.0 - against


def text_scene(rng: np.random.Generator, fonts: list[Path], max_words: int = 7) -> TextScene:
    pixels = _background(rng)
    region = np.zeros((HEIGHT, WIDTH), bool)
    for _ in range(int(rng.integers(1, max_words + 1))):
        for _attempt in range(15):
            font = _font(rng, fonts, int(rng.integers(11, 40)))
            text = _word(rng)
            x0, y0, x1, y1 = font.getbbox(text)
            tw, th = x1 - x0 + 2 * MARGIN, y1 - y0 + 2 * MARGIN
            if tw >= WIDTH - 4 or th >= HEIGHT - 4:
                continue
            ink = Image.new("L", (tw, th), 0)
            ImageDraw.Draw(ink).text((MARGIN - x0, MARGIN - y0), text, fill=255, font=font)
            box = Image.new("L", (tw, th), 255)
            angle = 0.0 if rng.random() < 0.7 else float(rng.uniform(-25, 25))
            ink = ink.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
            box = box.rotate(angle, resample=Image.Resampling.NEAREST, expand=True)
            bw, bh = ink.size
            if bw >= WIDTH or bh >= HEIGHT:
                continue
            px, py = int(rng.integers(0, WIDTH - bw)), int(rng.integers(0, HEIGHT - bh))
            word_region = np.zeros_like(region)
            word_region[py:py + bh, px:px + bw] = np.asarray(box) > 127
            grown = np.asarray(Image.fromarray(word_region.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(7))) > 0
            if (grown & region).any():
                continue
            alpha = np.zeros((HEIGHT, WIDTH))
            alpha[py:py + bh, px:px + bw] = np.asarray(ink, np.float64) / 255.0
            local = pixels[word_region].mean(0)
            color = _contrasting(rng, local)
            pixels = pixels * (1 - alpha[..., None]) + color * alpha[..., None]
            region |= word_region
            break
    if rng.random() < 0.3:  # a line or two that is not text
        img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        d = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 3))):
            xs, ys = rng.uniform(0, WIDTH, 2), rng.uniform(0, HEIGHT, 2)
            d.line((xs[0], ys[0], xs[1], ys[1]), fill=tuple(int(v) for v in rng.integers(0, 256, 3)), width=int(rng.integers(1, 4)))
        pixels = np.asarray(img, np.float64)
    pixels += rng.normal(0, rng.uniform(1, 6), size=pixels.shape)
    img = Image.fromarray(np.clip(pixels.round(), 0, 255).astype(np.uint8))
    if rng.random() < 0.25:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    return TextScene(img, region.astype(np.uint8) * 255)
