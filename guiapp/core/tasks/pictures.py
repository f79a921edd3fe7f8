"""What every task's pictures share: the image the model saw, class names
from the model's metadata, PNG bytes. Drawn with Pillow (no Qt), so the
wizard and the HTML report show the same pictures; each task draws its own
(detection_view.py, dense_view.py)."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.imagefile import open_rgb
from ..data.preprocess import PreprocessSpec, model_pixels


def class_names(metadata: dict[str, str]) -> list[str] | None:
    """Class names from the model's metadata: Ultralytics' ``names`` (a dict
    literal) or a comma-separated ``classes``."""
    raw = metadata.get("names")
    if raw:
        try:
            value = ast.literal_eval(raw)
            if isinstance(value, dict):
                return [str(value[k]) for k in sorted(value)]
            if isinstance(value, (list, tuple)):
                return [str(v) for v in value]
        except (ValueError, SyntaxError):
            pass
    raw = metadata.get("classes")
    if raw and "," in raw:
        return [c.strip() for c in raw.split(",")]
    return None


def model_view(path: str | Path, spec: PreprocessSpec) -> Image.Image:
    """The picture the model saw (resized, cropped or padded), in RGB."""
    pixels = model_pixels(open_rgb(path), spec)
    if spec.color == "bgr":
        pixels = pixels[:, :, ::-1]
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(pixels))


def scale_for(img: Image.Image, target: int = 480) -> int:
    return max(1, round(target / max(img.size)))


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


