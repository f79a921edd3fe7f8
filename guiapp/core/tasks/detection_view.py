"""A detector's FP32 and INT8 boxes over the image it saw.

Colours: FP32 boxes green, INT8 boxes blue (dashed); an FP32 box INT8 missed
is red, an INT8 box FP32 does not have is magenta. Keypoints (pose joints,
face landmarks) in the same colours: FP32's as dots, INT8's as crosses, so
that a cross off its dot shows how far INT8 moved it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ..data.preprocess import PreprocessSpec
from .base import Bar, Chart, Pictures
from .boxes import Detections, match
from .keypoints import VISIBLE
from .pictures import model_view, scale_for

FP32_COLOR, INT8_COLOR = (40, 170, 70), (40, 110, 220)
MISSED_COLOR, EXTRA_COLOR = (220, 40, 40), (200, 40, 200)
LEGEND = (("FP32", FP32_COLOR), ("INT8", INT8_COLOR), ("FP32 only (INT8 missed it)", MISSED_COLOR),
          ("INT8 only", EXTRA_COLOR))


def _dets(d: dict) -> Detections:
    return Detections(np.asarray(d["boxes"], np.float64).reshape(-1, 4), np.asarray(d["scores"], np.float64),
                      np.asarray(d["classes"], np.int64))


def detection_picture(sample: dict, spec: PreprocessSpec, names: list[str] | None = None, match_iou: float = 0.5) -> Image.Image:
    """One evaluation image with FP32 and INT8 boxes (a fidelity ``samples`` entry)."""
    img = model_view(sample["file"], spec)
    k = scale_for(img)
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
    for i, points in enumerate(_points(sample["fp32"])):
        _draw_points(draw, points * k, FP32_COLOR if i in matched_r else MISSED_COLOR, cross=False)
    for j, points in enumerate(_points(sample["int8"])):
        _draw_points(draw, points * k, INT8_COLOR if j in matched_g else EXTRA_COLOR, cross=True)
    return img


def _points(d: dict) -> list[np.ndarray]:
    """Each box's visible keypoints [P, 2] (x, y), in the order of its boxes; none without keypoints."""
    out = []
    for kp in d.get("keypoints") or []:
        a = np.asarray(kp, np.float64)
        if a.ndim != 2 or a.shape[1] < 2:
            a = np.zeros((0, 2))
        if a.shape[1] >= 3:
            a = a[a[:, 2] >= VISIBLE]
        out.append(a[:, :2][np.isfinite(a[:, :2]).all(axis=1)])
    return out


def _draw_points(draw: ImageDraw.ImageDraw, points: np.ndarray, color, cross: bool, r: float = 3.0) -> None:
    for x, y in points.tolist():
        if cross:
            draw.line((x - r, y - r, x + r, y + r), fill=color, width=2)
            draw.line((x - r, y + r, x + r, y - r), fill=color, width=2)
        else:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=color)


def _dashed_rect(draw: ImageDraw.ImageDraw, box: list[float], color, dash: int = 6) -> None:
    x1, y1, x2, y2 = box
    for (ax, ay), (bx, by) in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = max(abs(bx - ax), abs(by - ay))
        steps = max(1, int(length // dash))
        for s in range(0, steps, 2):
            t0, t1 = s / steps, min(1.0, (s + 1) / steps)
            draw.line((ax + (bx - ax) * t0, ay + (by - ay) * t0, ax + (bx - ax) * t1, ay + (by - ay) * t1), fill=color, width=2)


def _legend(section: dict) -> str:
    marks = "  ".join(f"<span style='color:rgb{c}'>■</span> {t}" for t, c in LEGEND)
    points = "; keypoints: FP32 dots, INT8 crosses" if section.get("keypoints") else ""
    return marks + f"  (INT8 boxes dashed, their scores at the lower right{points})"


def _caption(sample: dict) -> str:
    return f"FP32 {len(sample['fp32']['scores'])} boxes, INT8 {len(sample['int8']['scores'])} ({sample['matched']} matching)"


PICTURES = Pictures(
    usable=lambda section: section.get("compared") == "boxes",
    title=lambda section: f"Boxes over score {section['score_threshold']:g}, FP32 and INT8 on the same images",
    legend=_legend,
    caption=_caption,
    draw=lambda sample, section, spec, names: detection_picture(sample, spec, names, section.get("match_iou", 0.5)),
    scatter=lambda section: section.get("score_pairs") or [],
    scatter_title="Scores of matched boxes: FP32 (x) vs INT8 (y)",
)



def _pct(v) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def summary_rows(report: dict) -> list[tuple[str, str, str]]:
    det = report["fidelity"]["detection"]
    what = "anchors" if det["compared"] == "anchors" else "boxes"
    rows = [(f"Detections over {det['score_threshold']:g} ({det['images']} images)", f"{det['fp32_boxes']} {what}",
             f"{det['int8_boxes']} {what}, {det['matched']} matching FP32")]
    if det.get("ap50_vs_fp32") is not None:
        rows.append(("AP50 vs FP32 (FP32's confident boxes as truth)", "",
                     f"{det['ap50_vs_fp32'] * 100:.1f}%"))
    if det["f1"] is not None:
        rows.append(("Detection F1 / recall / precision vs FP32", "",
                     f"{det['f1']:.3f} / {_pct(det['recall'])} / {_pct(det['precision'])}"))
    if det["score_mae"] is not None:
        rows.append(("Score error of matched boxes (mean |FP32 - INT8|)", "", f"{det['score_mae']:.4f}"))
    rows += _keypoint_rows(det.get("keypoints"))
    m = det.get("map50")
    if m and m["fp32"] is not None:
        rows.append((f"mAP@0.5 ({m['labeled_images']} labeled images)", f"{m['fp32'] * 100:.1f}",
                     f"{m['int8'] * 100:.1f} ({(m['int8'] - m['fp32']) * 100:+.1f} points)"))
        if m.get("fp32_50_95") is not None:
            rows.append(("mAP@0.5:0.95", f"{m['fp32_50_95'] * 100:.1f}",
                         f"{m['int8_50_95'] * 100:.1f} ({(m['int8_50_95'] - m['fp32_50_95']) * 100:+.1f} points)"))
    return rows


def _keypoint_rows(kp: dict | None) -> list[tuple[str, str, str]]:
    if not kp:
        return []
    seen = "visible " if kp.get("visible_only") else ""
    if not kp["points"]:
        return [(f"Keypoints of matched boxes ({kp['per_box']} per box)", "", f"no {seen}keypoint to compare")]
    rows = [(f"Keypoint shift of matched boxes, INT8 vs FP32 ({kp['points']} {seen}keypoints)", "",
             f"mean {kp['mean_px']:.2f} px, p95 {kp['p95_px']:.2f} px, max {kp['max_px']:.2f} px")]
    if kp.get("pck"):
        rows.append(("Keypoints within " + " / ".join(kp["pck"]) + " of FP32's (PCK)", "",
                     " / ".join(_pct(v) for v in kp["pck"].values())))
    return rows


def chart(report: dict) -> Chart:
    det = report["fidelity"]["detection"]
    m = det.get("map50")
    if m and m["fp32"] is not None:
        return Chart(f"mAP@0.5, {m['labeled_images']} labeled images",
                     (Bar("FP32", m["fp32"] * 100, "fp32"), Bar("INT8", m["int8"] * 100)))
    what = "anchors" if det["compared"] == "anchors" else "boxes"
    return Chart(f"{what.capitalize()} over score {det['score_threshold']:g}",
                 (Bar("FP32", det["fp32_boxes"], "fp32"), Bar("INT8", det["int8_boxes"]), Bar("matching", det["matched"])),
                 fmt="{:.0f}")
