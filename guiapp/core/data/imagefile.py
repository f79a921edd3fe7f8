"""Decoding image files into upright 8-bit RGB, whatever the file holds.

Every consumer (calibration, evaluation, the CLI, the preview) goes through
:func:`open_rgb`, so an odd file behaves the same everywhere.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageReadError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)

# Refuse to decode images larger than this (a decompression bomb declares a
# huge size in a tiny file). 100 MP covers any real camera; Pillow's own
# default guard sits at ~89 MP as a warning and 179 MP as an error.
MAX_PIXELS = 100_000_000


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` to an upright RGB image.

    EXIF orientation is applied; transparency is composited on black; palette,
    16-bit, float, CMYK and 1-bit images are converted; an animated image gives
    its first frame. Raises :class:`ImageReadError` naming the file and reason.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageReadError(path, "empty file (0 bytes)")
        with warnings.catch_warnings():
            # Our own MAX_PIXELS check replaces Pillow's bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise ImageReadError(path, _too_large(w * h, f"{w}x{h}, "))
                img.seek(0)
                img.load()
                img = ImageOps.exif_transpose(img)
                return _to_rgb(img)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a folder") from None
    except UnidentifiedImageError:
        kind = _signature(path)
        if kind:  # it says it is one, but its header is broken
            raise ImageReadError(path, f"damaged {kind} (its header is corrupt)") from None
        raise ImageReadError(path, "not an image file (or an unsupported format)") from None
    except Image.DecompressionBombError as exc:
        # Pillow's own guard fires while reading the header, for huge sizes.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise ImageReadError(path, _too_large(int(found.group(1)) if found else None)) from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        # Truncated files, bad CRCs and broken headers surface as these.
        raise ImageReadError(path, f"damaged or truncated ({exc})") from None


_SIGNATURES = ((b"\x89PNG", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"),
               (b"MM\x00*", "TIFF"), (b"RIFF", "WebP"))


def _signature(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return None
    return next((name for magic, name in _SIGNATURES if head.startswith(magic)), None)


def _too_large(pixels: int | None, dims: str = "") -> str:
    size = f"{dims}{pixels / 1e6:,.0f} MP" if pixels else "unknown"
    return f"declared size ({size}) is over the {MAX_PIXELS // 1_000_000} MP limit; not decoded (decompression bomb?)"


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_wide_to_uint8(img, mode)).convert("RGB")
    # CMYK, YCbCr, LAB, HSV, L, 1: Pillow's converters are right for these.
    return img.convert("RGB")


def _wide_to_uint8(img: Image.Image, mode: str) -> np.ndarray:
    arr = np.asarray(img)
    if mode == "F":
        scaled = arr.astype(np.float64)
        # Float images are either 0..1 or 0..255; take the former when it fits.
        if scaled.size and np.nanmax(scaled) <= 1.0:
            scaled = scaled * 255.0
    else:
        # 16-bit (I;16*) and 32-bit (I) greyscale: map the full 16-bit range.
        scaled = arr.astype(np.float64) / 257.0
    return np.clip(np.nan_to_num(np.rint(scaled)), 0, 255).astype(np.uint8)


def check_readable(path: str | os.PathLike) -> str | None:
    """None when ``path`` decodes, else the reason. JPEGs decode at reduced
    scale (DCT scaling), which still reads every byte: several times faster."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.size[0] * img.size[1] > MAX_PIXELS:
                    return _too_large(img.size[0] * img.size[1], f"{img.size[0]}x{img.size[1]}, ")
                if img.format == "JPEG":
                    img.draft("RGB", (max(1, img.size[0] // 8), max(1, img.size[1] // 8)))
                img.load()
        return None
    except Exception:  # noqa: BLE001 - the full decoder says precisely why
        try:
            open_rgb(path)
            return None
        except ImageReadError as exc:
            return exc.reason


_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def upright_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of ``path`` as :func:`open_rgb` returns it (after EXIF
    rotation), read from the header only."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except Exception as exc:  # noqa: BLE001 - the decoder says precisely why
        raise ImageReadError(Path(path), f"cannot read its size ({exc})") from None
    return (h, w) if orientation in _TRANSPOSED_ORIENTATIONS else (w, h)
