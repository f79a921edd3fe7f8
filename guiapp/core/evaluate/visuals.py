"""Pictures of FP32 vs INT8 that a person would rather look at than read:
boxes of both models over the image a detector saw, and masks side by side.

Drawn with Pillow (no Qt), so the wizard and the HTML report show the same
pictures. Colours: FP32 boxes green, INT8 boxes blue (dashed); an FP32 box
INT8 missed is red, an INT8 box FP32 does not have is magenta.
"""

from __future__ import annotations

import ast
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..data.imagefile import open_rgb
from ..data.preprocess import PreprocessSpec, model_pixels
from ..tasks.boxes import Detections, match

FP32_COLOR, INT8_COLOR = (40, 170, 70), (40, 110, 220)
MISSED_COLOR, EXTRA_COLOR = (220, 40, 40), (200, 40, 200)
LEGEND = (("FP32", FP32_COLOR), ("INT8", INT8_COLOR), ("FP32 only (INT8 missed it)", MISSED_COLOR),
          ("INT8 only", EXTRA_COLOR))


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


def _scale_for(img: Image.Image, target: int = 480) -> int:
    return max(1, round(target / max(img.size)))


def _dets(d: dict) -> Detections:
    return Detections(np.asarray(d["boxes"], np.float64).reshape(-1, 4), np.asarray(d["scores"], np.float64),
                      np.asarray(d["classes"], np.int64))


def detection_picture(sample: dict, spec: PreprocessSpec, names: list[str] | None = None, match_iou: float = 0.5) -> Image.Image:
    """One evaluation image with FP32 and INT8 boxes (a fidelity ``samples`` entry)."""
    img = model_view(sample["file"], spec)
    k = _scale_for(img)
    img = img.resize((img.width * k, img.height * k), Image.Resampling.BILINEAR)
    ref, got = _dets(sample["fp32"]), _dets(sample["int8"])
    pairs = match(ref, got, match_iou)
    matched_r, matched_g = {i for i, _ in pairs}, {j for _, j in pairs}
    draw = ImageDraw.Draw(img)

    def label(c: int, s: float) -> str:
        name = names[c] if names and 0 <= c < len(names) else str(c)
        return f"{name} {s:.2f}"

    for i in range(len(ref)):
        color = FP32_COLOR if i in matched_r else MISSED_COLOR
        x1, y1, x2, y2 = (ref.boxes[i] * k).tolist()
        draw.rectangle((x1, y1, x2, y2), outline=color, width=3)
        draw.text((x1 + 2, max(0, y1 - 11)), label(int(ref.classes[i]), float(ref.scores[i])), fill=color)
    for j in range(len(got)):
        color = INT8_COLOR if j in matched_g else EXTRA_COLOR
        _dashed_rect(draw, (got.boxes[j] * k).tolist(), color)
        x2, y2 = float(got.boxes[j][2] * k), float(got.boxes[j][3] * k)
        draw.text((max(0, x2 - 52), y2 + 1), f"{float(got.scores[j]):.2f}", fill=color)
    return img


def _dashed_rect(draw: ImageDraw.ImageDraw, box: list[float], color, dash: int = 6) -> None:
    x1, y1, x2, y2 = box
    for (ax, ay), (bx, by) in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = max(abs(bx - ax), abs(by - ay))
        steps = max(1, int(length // dash))
        for s in range(0, steps, 2):
            t0, t1 = s / steps, min(1.0, (s + 1) / steps)
            draw.line((ax + (bx - ax) * t0, ay + (by - ay) * t0, ax + (bx - ax) * t1, ay + (by - ay) * t1), fill=color, width=2)


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
    k = _scale_for(img, 240)
    w, h = size[0] * k, size[1] * k
    out = Image.new("RGB", (4 * w + 3 * 6, h), (255, 255, 255))
    for i, p in enumerate(panels):
        out.paste(p.resize((w, h), Image.Resampling.NEAREST), (i * (w + 6), 0))
    return out


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def sample_pngs(report: dict, samples: list[dict], spec: PreprocessSpec, names: list[str] | None = None,
                limit: int = 6) -> list[tuple[str, bytes]]:
    """(caption, PNG) of the first ``limit`` pictures of a run, for the HTML report."""
    fid = report.get("fidelity") or {}
    det, dense = fid.get("detection"), fid.get("dense")
    out = []
    for s in samples[:limit]:
        name = Path(s["file"]).name
        if det and det.get("compared") == "boxes":
            img = detection_picture(s, spec, names, det.get("match_iou", 0.5))
            caption = f"{name}: FP32 {len(s['fp32']['scores'])} boxes, INT8 {len(s['int8']['scores'])} ({s['matched']} matching)"
        elif dense:
            img = dense_picture(s, spec, dense.get("threshold"))
            caption = f"{name}: image, FP32 map, INT8 map, differences (red)"
        else:
            break
        out.append((caption, png_bytes(img)))
    return out
