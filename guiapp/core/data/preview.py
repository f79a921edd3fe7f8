"""What the preprocessing page shows: the image on its way into the model,
its per-channel numbers, and warnings in words when those look wrong.

A wrong mean/std is the most common reason a quantized model fails; these
checks exist to catch it before calibration does the damage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..model.modelinfo import ModelInfo
from .preprocess import PRESETS, PreprocessSpec, model_pixels, normalize, preset, same_values

ZERO_CENTRED = tuple(name for name, (mean, *_) in PRESETS.items() if any(mean))  # presets that subtract a mean
HIST_BINS = 64


@dataclass(frozen=True)
class ChannelStats:
    name: str
    min: float
    max: float
    mean: float
    std: float
    counts: np.ndarray  # histogram of the normalized values
    edges: np.ndarray


@dataclass(frozen=True)
class Preview:
    model_view: np.ndarray  # uint8 (H, W, C), model channel order
    channels: np.ndarray  # float32 (C, H, W): exactly the tensor the model gets, channels first
    stats: tuple[ChannelStats, ...]
    tensor: np.ndarray  # the model's input as core makes it (its layout, no batch axis)


class ResizeCache:
    """Keeps the resized image between edits: a mean/std edit then costs only
    the normalization, not another resize of a 1920x1080 photo."""

    def __init__(self) -> None:
        self._key = None
        self._pixels: np.ndarray | None = None

    def pixels(self, img: Image.Image, spec: PreprocessSpec) -> np.ndarray:
        key = (id(img), img.size, spec.size, spec.resize, spec.resize_shorter, spec.pad_value, spec.interpolation, spec.color)
        if key != self._key or self._pixels is None:
            self._key, self._pixels = key, model_pixels(img, spec)
        return self._pixels


def channel_names(spec: PreprocessSpec) -> tuple[str, ...]:
    return {"rgb": ("R", "G", "B"), "bgr": ("B", "G", "R"), "gray": ("Y",)}[spec.color]


def build_preview(img: Image.Image, spec: PreprocessSpec, cache: ResizeCache | None = None) -> Preview:
    """The stages of :func:`guiapp.core.data.preprocess.prepare` (the same
    functions), plus per-channel statistics. ``spec`` must be resolved."""
    pixels = (cache or ResizeCache()).pixels(img, spec)
    tensor = normalize(pixels, spec)
    channels = tensor if spec.layout == "nchw" else tensor.transpose(2, 0, 1)
    stats = []
    for name, ch in zip(channel_names(spec), channels):
        lo, hi = float(ch.min()), float(ch.max())
        # A flat channel (a solid colour) still gets a range float32 can split into bins.
        counts, edges = np.histogram(ch, bins=HIST_BINS, range=(lo, hi if hi > lo else lo + max(1e-6, abs(lo) * 1e-4)))
        stats.append(ChannelStats(name, lo, hi, float(ch.mean()), float(ch.std()), counts, edges))
    return Preview(pixels, channels, tuple(stats), tensor)


def target_range(spec: PreprocessSpec, preset_name: str | None) -> tuple[float, float]:
    """The range a correctly normalized input typically spans, for the
    histogram's shaded band: the chosen preset's output for 0..255 pixels."""
    ref = preset(preset_name, spec.channels) if preset_name in PRESETS else None
    if ref is None:
        return (-1.0, 1.0)
    lows = [(0 - m) / s for m, s in zip(ref.mean, ref.std)]
    highs = [(255 - m) / s for m, s in zip(ref.mean, ref.std)]
    return min(lows), max(highs)


def warnings_for(preview: Preview, spec: PreprocessSpec, preset_name: str | None, info: ModelInfo | None = None) -> list[str]:
    """Plain-language warnings about numbers that look wrong."""
    out = []
    lo = min(s.min for s in preview.stats)
    hi = max(s.max for s in preview.stats)
    span = max(abs(lo), abs(hi))
    if span > 20 and preset_name != "caffe":  # Caffe subtracts means only: +-150 is its normal
        out.append(
            f"Values reach {span:.0f}: the model gets (nearly) raw pixel values. Did you forget std? "
            "Most models expect about -3..3 (ImageNet: std 58) or 0..1 (std 255); raw 0..255 is right only "
            "for models trained on raw pixels."
        )
    elif span < 0.05:
        out.append(f"All values lie within +-{span:.3f}: is std far too large?")
    if preset_name in ZERO_CENTRED and lo >= 0:
        out.append(
            f"All values are positive, but the {preset_name} preset is zero-centred: is the mean missing (or in 0..1 units "
            "while pixel units are selected)?"
        )
    expected = PRESETS[preset_name][2] if preset_name in PRESETS else None
    if expected and spec.color != "gray" and spec.color != expected:
        out.append(
            f"The channel order is {spec.color.upper()}, but the {preset_name} preset was made for {expected.upper()}: "
            "a swapped order often costs a few points of accuracy without any other sign."
        )
    stds = [s.std for s in preview.stats]
    if len(stds) > 1 and min(stds) > 0 and max(stds) / min(stds) > 20:
        out.append("One channel's values are spread 20x more than another's: check the per-channel mean/std for a typo.")
    gn = info.graph_normalization if info is not None else None
    if gn is not None:
        fits = preset(gn.preset, spec.channels)  # what the graph expects: say nothing once it is chosen
        if not (same_values(spec.mean, fits.mean) and same_values(spec.std, fits.std)):
            out.append(f"The model normalizes its input itself: {gn.describe()}. {gn.advice()}")
    return out


def equivalents(spec: PreprocessSpec) -> dict[str, str]:
    """The same preprocessing written for other tools, to copy."""
    f = lambda vals: ", ".join(f"{v:g}" for v in vals)  # noqa: E731
    size = spec.size
    unit_mean, unit_std = f(round(v, 6) for v in spec.unit_mean), f(round(v, 6) for v in spec.unit_std)
    rknn = f"rknn.config(mean_values=[[{f(spec.mean)}]], std_values=[[{f(spec.std)}]])"
    if spec.color == "bgr":
        rknn += "\n# RKNN reads calibration images as RGB: add quant_img_RGB2BGR=True for this BGR model"
    tv = []
    if size:
        if spec.resize == "shorter":
            tv.append(f"T.Resize({spec.shorter_side}), T.CenterCrop(({size[0]}, {size[1]})),")
        elif spec.resize == "stretch":
            tv.append(f"T.Resize(({size[0]}, {size[1]})),")
        else:
            tv.append(f"# letterbox to {size[0]}x{size[1]} (pad {spec.pad_value}): no single torchvision transform")
    if spec.color == "gray":
        tv.append("T.Grayscale(),")
    tv.append("T.ToTensor(),  # x / 255")
    tv.append(f"T.Normalize(mean=[{unit_mean}], std=[{unit_std}]),")
    torch = "T.Compose([\n    " + "\n    ".join(tv) + "\n])"
    if spec.color == "bgr":
        torch += "\n# then reverse the channels for this BGR model: x = x[[2, 1, 0]]"
    one_std = len(set(spec.std)) == 1
    scale = f"1 / {spec.std[0]:g}" if one_std else "1.0"
    cv = (
        f"blob = cv2.dnn.blobFromImage(img, scalefactor={scale}, size=({size[1] if size else 'W'}, {size[0] if size else 'H'}), "
        f"mean=({f(spec.mean)}), swapRB={spec.color == 'rgb'}, crop={spec.resize == 'shorter'})"
    )
    if not one_std:
        cv += f"\nblob /= np.array([{f(spec.std)}], np.float32).reshape(1, -1, 1, 1)  # blobFromImage has one scale for all channels"
    if spec.resize == "shorter":
        cv += "\n# crop=True resizes the shorter side to the input size, not to the 256/224 margin used here"
    return {"RKNN": rknn, "torchvision": torch, "OpenCV": cv}

