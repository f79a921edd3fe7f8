"""Preprocessing: from a decoded image to the exact tensor the model expects.

Normalization follows RKNN's ``mean_values``/``std_values`` convention, in pixel
units 0..255: ``out = (pixel - mean) / std``, with mean and std listed in the
channel order the model receives (for BGR, blue first). A spec written the
torchvision way (``x / 255`` then 0..1 mean/std) converts exactly with
:meth:`PreprocessSpec.from_unit`.

:func:`load_tensor` is the one path from an image file to a model input;
:func:`prepare` is the same path from an already decoded image, returning the
intermediate stages the preview shows.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from ..errors import JobError
from .imagefile import open_rgb

COLORS = ("rgb", "bgr", "gray")
LAYOUTS = ("auto", "nchw", "nhwc")
RESIZES = ("stretch", "shorter", "letterbox")
INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "area": Image.Resampling.BOX,
}

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
# Caffe / Keras "caffe" mode: BGR order, ImageNet means, no scaling.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

# name -> (mean, std, color, one-line description); 3-channel values.
PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...], str, str]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD, "rgb", "torchvision ImageNet: x/255, mean (0.485,0.456,0.406), std (0.229,0.224,0.225)"),
    "unit": ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0), "rgb", "scale to [0, 1]: x / 255"),
    "pm1": ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5), "rgb", "scale to [-1, 1]: (x - 127.5) / 127.5 (TensorFlow, MobileNet)"),
    "raw": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "rgb", "raw pixels 0..255, no normalization"),
    "caffe": (CAFFE_MEAN_BGR, (1.0, 1.0, 1.0), "bgr", "Caffe: BGR order, ImageNet means subtracted, no scaling"),
}


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything that turns a picture into the model's input tensor.

    ``layout`` may be ``"auto"`` and ``size`` None (take them from the model)
    until :meth:`resolved` makes them concrete.
    """

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    color: str = "rgb"
    layout: str = "auto"
    size: tuple[int, int] | None = None  # (height, width)
    resize: str = "shorter"
    resize_shorter: int | None = None  # None: round(size * 256 / 224)
    pad_value: int = 0  # letterbox fill, pixel units
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.size is not None:
            object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        self._validate()

    def _validate(self) -> None:
        f = "preprocess."
        if self.color not in COLORS:
            raise JobError(f + "color", f"unknown channel order {self.color!r}", f"Choose one of {', '.join(COLORS)}.")
        if self.layout not in LAYOUTS:
            raise JobError(f + "layout", f"unknown layout {self.layout!r}", f"Choose one of {', '.join(LAYOUTS)}.")
        if self.resize not in RESIZES:
            raise JobError(f + "resize", f"unknown resize policy {self.resize!r}", f"Choose one of {', '.join(RESIZES)}.")
        if self.interpolation not in INTERPOLATIONS:
            raise JobError(
                f + "interpolation", f"unknown interpolation {self.interpolation!r}", f"Choose one of {', '.join(INTERPOLATIONS)}."
            )
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != self.channels:
                raise JobError(
                    f + name,
                    f"{len(values)} values for a {self.color.upper()} input with {self.channels} channel(s)",
                    "Give one mean and one std per channel.",
                )
        for i, s in enumerate(self.std):
            if s == 0 or not math.isfinite(s):
                raise JobError(f + "std", f"channel {i} has std {s}", "Std divides, so it must be a non-zero number (1 means no scaling).")
        for i, m in enumerate(self.mean):
            if not math.isfinite(m):
                raise JobError(f + "mean", f"channel {i} has mean {m}", "Use a finite number in pixel units (0..255).")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise JobError(f + "size", f"invalid size {self.size}", "Give height and width as positive integers, e.g. 224x224.")
        if self.resize_shorter is not None and self.resize_shorter < 1:
            raise JobError(f + "resize_shorter", f"invalid value {self.resize_shorter}", "Use a positive number of pixels.")
        if not 0 <= self.pad_value <= 255:
            raise JobError(f + "pad_value", f"{self.pad_value} is outside 0..255", "Give the letterbox fill in pixel units.")

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3

    @classmethod
    def from_unit(cls, mean01, std01, **kwargs) -> "PreprocessSpec":
        """From torchvision-style 0..1 mean/std (applied after x/255)."""
        return cls(mean=tuple(m * 255.0 for m in mean01), std=tuple(s * 255.0 for s in std01), **kwargs)

    @property
    def unit_mean(self) -> tuple[float, ...]:
        return tuple(m / 255.0 for m in self.mean)

    @property
    def unit_std(self) -> tuple[float, ...]:
        return tuple(s / 255.0 for s in self.std)

    def resolved(self, layout: str, size: tuple[int, int] | None) -> "PreprocessSpec":
        """A copy with concrete layout and size (the model's, unless set here)."""
        if self.layout != "auto":
            layout = self.layout
        if layout not in ("nchw", "nhwc"):
            raise JobError("preprocess.layout", "the model's layout could not be detected", "Set it to nchw or nhwc.")
        size = self.size or size
        if size is None or any(not isinstance(v, int) for v in size):
            raise JobError(
                "preprocess.size", "the model's input height and width are dynamic", "Give the size to feed, e.g. --size 224x224."
            )
        return replace(self, layout=layout, size=tuple(size))

    @property
    def shorter_side(self) -> int:
        if self.resize_shorter is not None:
            return self.resize_shorter
        assert self.size is not None
        return int(round(min(self.size) * 256 / 224))

    def to_dict(self) -> dict:
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "color": self.color,
            "layout": self.layout,
            "size": list(self.size) if self.size else None,
            "resize": self.resize,
            "resize_shorter": self.resize_shorter,
            "pad_value": self.pad_value,
            "interpolation": self.interpolation,
        }


def preset(name: str, channels: int = 3, **overrides) -> PreprocessSpec:
    """The spec of a named preset for a model with 1 or 3 channels."""
    if name not in PRESETS:
        raise JobError("preprocess.preset", f"unknown preset {name!r}", f"Choose one of {', '.join(PRESETS)}.")
    mean, std, color, _ = PRESETS[name]
    if channels == 1:
        # One channel: luminance, with the mean of the per-channel values.
        mean, std, color = (sum(mean) / 3,), (sum(std) / 3,), "gray"
    return PreprocessSpec(mean=mean, std=std, color=color, **overrides)


def matching_preset(spec: PreprocessSpec) -> str | None:
    """The preset whose normalization and channel order ``spec`` uses, if any."""
    for name in PRESETS:
        p = preset(name, spec.channels)
        if p.color == spec.color and same_values(p.mean, spec.mean) and same_values(p.std, spec.std):
            return name
    return None


def with_preset(spec: PreprocessSpec, name: str, channels: int) -> PreprocessSpec:
    """``spec`` with preset ``name``'s mean, std and channel order; its size,
    resize policy and layout kept."""
    p = preset(name, channels)
    return replace(spec, mean=p.mean, std=p.std, color=p.color)


def same_values(a, b) -> bool:
    """Mean or std values equal to the shown precision."""
    return len(a) == len(b) and all(abs(x - y) < 1e-3 for x, y in zip(a, b))


@dataclass(frozen=True)
class PreparedImage:
    """The stages of one image on its way into the model."""

    model_view: np.ndarray  # uint8 (H, W, C): what the model sees, before normalization, in model channel order
    tensor: np.ndarray  # float32, (C, H, W) or (H, W, C), no batch axis
    source_size: tuple[int, int] = field(default=(0, 0))  # (width, height) of the decoded image


def _fit(spec: PreprocessSpec, w: int, h: int) -> tuple[int, int, int, int]:
    """The resized image's (width, height) and where its top-left corner
    lands in the model input (negative: cropped, positive: padded)."""
    assert spec.size is not None, "resolve the spec first"
    th, tw = spec.size
    if spec.resize == "stretch":
        return tw, th, 0, 0
    if spec.resize == "letterbox":
        scale = min(tw / w, th / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        return nw, nh, (tw - nw) // 2, (th - nh) // 2
    # "shorter": the shorter side to N, the longer in proportion (truncated, as
    # torchvision's Resize does), then a centre crop.
    n = spec.shorter_side
    if w <= h:
        nw, nh = n, int(n * h / w)
    else:
        nw, nh = int(n * w / h), n
    if nw < tw or nh < th:  # extreme aspect ratios: grow until the crop fits
        grow = max(tw / nw, th / nh)
        nw, nh = max(tw, math.ceil(nw * grow)), max(th, math.ceil(nh * grow))
    return nw, nh, -int(round((nw - tw) / 2.0)), -int(round((nh - th) / 2.0))


def resize_for_model(img: Image.Image, spec: PreprocessSpec) -> Image.Image:
    """Resize (and crop or pad) ``img`` to the spec's size with its policy."""
    th, tw = spec.size
    resample = INTERPOLATIONS[spec.interpolation]
    nw, nh, ox, oy = _fit(spec, *img.size)
    if (nw, nh) != img.size:
        img = img.resize((nw, nh), resample)
    if spec.resize == "letterbox":
        fill = spec.pad_value if img.mode == "L" else (spec.pad_value,) * 3
        canvas = Image.new(img.mode, (tw, th), fill)
        canvas.paste(img, (ox, oy))
        return canvas
    if spec.resize == "shorter":
        return img.crop((-ox, -oy, -ox + tw, -oy + th))
    return img


@dataclass(frozen=True)
class Placement:
    """Where a source image lands in the model's input: a source pixel
    coordinate (x, y) maps to (x * sx + dx, y * sy + dy)."""

    sx: float
    sy: float
    dx: float
    dy: float

    def boxes_to_model(self, xyxy: np.ndarray) -> np.ndarray:
        """Source-pixel boxes [K, 4] (x1, y1, x2, y2) in model-input pixels."""
        b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
        return np.stack([b[:, 0] * self.sx + self.dx, b[:, 1] * self.sy + self.dy,
                         b[:, 2] * self.sx + self.dx, b[:, 3] * self.sy + self.dy], axis=1)


def placement(spec: PreprocessSpec, width: int, height: int) -> Placement:
    """How :func:`resize_for_model` places a ``width`` x ``height`` image
    (after EXIF rotation) in the model input. Boxes labelled on the source
    image map through it."""
    nw, nh, ox, oy = _fit(spec, width, height)
    return Placement(nw / width, nh / height, float(ox), float(oy))


def model_pixels(img: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """A decoded RGB image resized for the model: uint8 (H, W, C) in the
    model's channel order, before normalization."""
    if spec.color == "gray":
        img = img.convert("L")  # ITU-R 601-2 luminance
    pixels = np.asarray(resize_for_model(img, spec))
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    elif spec.color == "bgr":
        pixels = pixels[:, :, ::-1]
    return np.ascontiguousarray(pixels)


def prepare(img: Image.Image, spec: PreprocessSpec) -> PreparedImage:
    """Turn a decoded RGB image into the model's input (without batch axis)."""
    pixels = model_pixels(img, spec)
    return PreparedImage(model_view=pixels, tensor=normalize(pixels, spec), source_size=img.size)


def normalize(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """(H, W, C) pixels in model channel order -> float32 tensor in the model's
    layout; a stack (N, H, W, C) gives a batch."""
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    out = (pixels.astype(np.float32) - mean) / std
    if spec.layout == "nchw":
        out = np.moveaxis(out, -1, -3)
    return np.ascontiguousarray(out)


def load_tensor(path: str | os.PathLike, spec: PreprocessSpec) -> np.ndarray:
    """The one path from an image file to a model input tensor (no batch axis)."""
    return normalize(model_pixels(open_rgb(path), spec), spec)
