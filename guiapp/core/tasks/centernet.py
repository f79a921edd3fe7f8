"""CenterNet-style heads ("objects as points"): a heatmap of object centres
``[N, C, H, W]``, a size map ``[N, 2, H, W]``, an offset map ``[N, 2, H, W]``
and optionally landmarks ``[N, 2K, H, W]``, all at H, W = input / stride.

Two conventions of real exports are read (``style``):

- ``centernet`` (xingyizhou/CenterNet, ``ctdet_decode``/``multi_pose_decode``):
  channels in (x, y) / (w, h) order; centre ``(cell + offset) * stride``; size
  in output-map units (``size_format="map"``, the default); keypoints ``hps``
  relative to the integer cell, in map units. The heatmap is often exported as
  logits (CenterNet applies the sigmoid outside the network).
- ``centerface`` (Star-Clouds/CenterFace, ``prj-python/centerface.py``):
  channels in (y, x) / (h, w) order; centre ``(cell + offset + 0.5) * stride``;
  size log-encoded (``size_format="log"``: ``exp(s) * stride``); landmarks
  relative to the box's top-left corner, in units of the box's width and height.

Peaks: 3x3 local maxima over the threshold (CenterNet's max-pool), then
class-aware NMS (CenterFace's step). Boxes and keypoints are in input pixels.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, replace

import numpy as np

from ..model.modelinfo import ImageInput, TensorInfo
from .boxes import Detections, nms

SIZE_FORMATS = ("auto", "map", "log", "pixels")
_SIZE_WORDS = {"log": "log-encoded: exp(value) x stride", "map": "in map units", "pixels": "in input pixels",
               None: "their encoding decided on FP32 outputs"}
STRIDES = (2, 4, 8)
_ROLE_WORDS = {  # short words match whole name parts only ("hm" in "out_hm", not in "ohm"); offset first: "hm_offset"
    "offset": ("offset", "reg", "off"),
    "size": ("scale", "wh", "size"),
    "landmarks": ("landmark", "landm", "lms", "kps", "hps"),
    "heatmap": ("heatmap", "heat", "hm"),
}


@dataclass(frozen=True)
class CenterNetLayout:
    heatmap: str
    size: str
    offset: str
    landmarks: str | None = None
    classes: int = 1
    keypoints: int = 0  # landmarks per object (landmark channels / 2)
    stride: int | None = None  # None: taken from the input size when decoding
    style: str = "centernet"  # "centernet" | "centerface" (see the module's doc)
    size_format: str | None = None  # "map" | "log" | "pixels"; None: decided on FP32 outputs
    sigmoid: bool | None = None  # heatmap holds logits (None: decided on FP32 outputs)

    map_size: tuple[int, ...] = ()  # (height, width) of the maps at the size they were recognized at

    def describe(self) -> str:
        name = "CenterFace-style" if self.style == "centerface" else "CenterNet-style"
        classes = f"{self.classes} class{'es' if self.classes != 1 else ''}"
        maps = f" ({self.map_size[0]}x{self.map_size[1]} maps)" if len(self.map_size) == 2 else ""
        lms = f", {self.keypoints} landmarks (x, y) in {self.landmarks}" if self.landmarks else ""
        return (f"{name} heatmap head: {classes} in {self.heatmap}{maps} at stride {self.stride or '?'}, sizes in "
                f"{self.size} ({_SIZE_WORDS.get(self.size_format, _SIZE_WORDS[None])}), offsets in {self.offset}{lms}; "
                "one box at each peak of the heatmap")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["map_size"] = list(self.map_size)
        return d


def _role(name: str) -> str | None:
    low = name.lower()
    parts = re.split(r"[^a-z0-9]+", low)
    if "hp" in parts:
        return "aside"  # CenterNet multi-pose's keypoint heatmaps (hm_hp) and their offsets (hp_offset)
    for role, words in _ROLE_WORDS.items():
        if any(w in parts or (len(w) > 4 and w in low) for w in words):
            return role
    return None


def _channels(t: TensorInfo, hw: tuple) -> int | None:
    s = t.shape
    if s is None or len(s) != 4 or not all(isinstance(d, int) and d > 0 for d in s[1:]) or tuple(s[2:]) != hw:
        return None
    return s[1]


def _by_name(outputs, ch: dict) -> dict | None:
    roles: dict[str, list] = {}
    for t in outputs:
        roles.setdefault(_role(t.name), []).append(t)
    if None in roles or any(len(roles.get(r, ())) != 1 for r in ("heatmap", "size", "offset")) or len(roles.get("landmarks", ())) > 1:
        return None
    found = {r: ts[0] for r, ts in roles.items() if r != "aside"}
    return found if ch[found["size"].name] == ch[found["offset"].name] == 2 else None


def _by_shape(outputs, ch: dict) -> dict | None:
    """Two 2-channel maps (size before offset, as both references declare
    them), a heatmap, and landmarks with an even channel count."""
    if len(outputs) not in (3, 4):
        return None
    two = [t for t in outputs if ch[t.name] == 2]
    rest = [t for t in outputs if ch[t.name] != 2]
    if len(two) != 2:
        return None
    found = {"size": two[0], "offset": two[1]}
    odd = [t for t in rest if ch[t.name] % 2]
    if len(rest) == 1:
        found["heatmap"] = rest[0]
    elif len(odd) == 1:
        found["heatmap"] = odd[0]
        found["landmarks"] = next(t for t in rest if t is not odd[0])
    else:
        return None
    named = {t.name: _role(t.name) for t in outputs}
    if any(named[t.name] not in (None, role) for role, t in found.items()):
        return None  # a name says otherwise
    return found


def guess(outputs: tuple[TensorInfo, ...], image: ImageInput | None) -> tuple[CenterNetLayout, str] | None:
    """The CenterNet layout of these outputs, and why; None when unsure."""
    if not 3 <= len(outputs) <= 6 or outputs[0].shape is None or len(outputs[0].shape) != 4:
        return None
    hw = tuple(outputs[0].shape[2:])
    ch = {t.name: _channels(t, hw) for t in outputs}
    if any(c is None for c in ch.values()) or min(hw) < 2:
        return None
    stride = _stride(hw, image.size if image is not None else None)
    if stride == 0:
        return None  # the maps are not at input / 2, 4 or 8: not this head
    found = _by_name(outputs, ch)
    by_name = found is not None
    if not by_name:
        found = _by_shape(outputs, ch)
        if found is None or stride is None:
            return None
    lm = found.get("landmarks")
    k = ch[lm.name] // 2 if lm is not None else 0
    if lm is not None and ch[lm.name] % 2:
        return None
    classes = ch[found["heatmap"].name]
    # CenterFace calls its sizes "scale"; its own exports carry numbered names, one class, 5 landmarks or none.
    face = "scale" in found["size"].name.lower() or (not by_name and classes == 1 and k in (0, 5))
    lay = CenterNetLayout(found["heatmap"].name, found["size"].name, found["offset"].name, lm.name if lm is not None else None,
                          classes=classes, keypoints=k, stride=stride, style="centerface" if face else "centernet", map_size=hw)
    how = "by their names" if by_name else "by their channel counts and order"
    return lay, f"{len(outputs)} maps of {hw[0]}x{hw[1]} read {how}: " + lay.describe()


def _stride(hw: tuple, size: tuple[int, int] | None) -> int | None:
    """The stride that maps the input onto the maps; None when the input size
    is unknown, 0 when no usual stride fits."""
    if size is None:
        return None
    return next((s for s in STRIDES if (math.ceil(size[0] / s), math.ceil(size[1] / s)) == hw), 0)


# ---------------------------------------------------------------- decoding


def resolve(layout: CenterNetLayout, fp32: dict[str, np.ndarray], size_format: str = "auto",
            input_size: tuple[int, int] | None = None) -> CenterNetLayout:
    """Decide from FP32 outputs what the shapes could not tell: logits or
    scores, and how sizes read (unless the user chose ``size_format``)."""
    hm = np.asarray(fp32[layout.heatmap], dtype=np.float64)
    sigmoid = layout.sigmoid if layout.sigmoid is not None else bool(hm.size and (hm.min() < -1e-3 or hm.max() > 1 + 1e-3))
    fmt = size_format if size_format != "auto" else layout.size_format
    if fmt is None:
        fmt = _size_format(layout, hm, np.asarray(fp32[layout.size], dtype=np.float64), input_size)
    return replace(layout, sigmoid=sigmoid, size_format=fmt)


def _size_format(layout: CenterNetLayout, hm: np.ndarray, size: np.ndarray, input_size) -> str:
    """A linear size is never negative, a log size is (objects smaller than
    a stride) and stays small; map units that make boxes larger than the
    image were pixels. Decided on the most confident cells."""
    default = "log" if layout.style == "centerface" else "map"
    best = hm.max(axis=1).reshape(hm.shape[0], -1)  # [N, H*W]
    top = np.argsort(-best, axis=1)[:, :20]
    vals = np.stack([np.take_along_axis(size[:, c].reshape(size.shape[0], -1), top, axis=1) for c in (0, 1)])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return default
    if vals.min() < -0.05:
        return "log"
    if default == "log" and vals.max() > 9:  # exp(9) strides: far beyond any image
        return "map"
    stride = layout.stride or 4
    if default == "map" and input_size and np.median(vals) * stride > 1.5 * max(input_size):
        return "pixels"
    return default


def local_maxima(heat: np.ndarray) -> np.ndarray:
    """[C, H, W] -> bool: cells that equal the maximum of their 3x3 neighbourhood (one per flat top)."""
    c, h, w = heat.shape
    padded = np.pad(heat, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    around = np.max([padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=0)
    # A flat top (neighbours tied, common in an INT8 heatmap) is one peak, not several:
    # its first cell in reading order (no tied neighbour above or to the left).
    earlier = np.max([padded[:, dy:dy + h, dx:dx + w] for dy, dx in ((0, 0), (0, 1), (0, 2), (1, 0))], axis=0)
    return (heat >= around) & (heat > earlier)


def _heat(layout: CenterNetLayout, outputs: dict[str, np.ndarray]) -> np.ndarray:
    heat = np.asarray(outputs[layout.heatmap], dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-np.clip(heat, -60, 60))) if layout.sigmoid else heat


def _stride_of(layout: CenterNetLayout, heat: np.ndarray, input_size: tuple[int, int] | None) -> int:
    return layout.stride or (round(input_size[0] / heat.shape[2]) if input_size else 4)


def decode(layout: CenterNetLayout, outputs: dict[str, np.ndarray], threshold: float, nms_iou: float,
           input_size: tuple[int, int] | None = None, max_det: int = 100) -> tuple[list[Detections], list[np.ndarray]]:
    """Per image: boxes (xyxy, input pixels) of the heatmap's peaks over
    ``threshold`` after class-aware NMS, and their keypoints [K, P, 2] (x, y
    in input pixels; P = 0 without landmarks). Call :func:`resolve` first."""
    heat = _heat(layout, outputs)
    size = np.asarray(outputs[layout.size], dtype=np.float64)
    offset = np.asarray(outputs[layout.offset], dtype=np.float64)
    marks = np.asarray(outputs[layout.landmarks], dtype=np.float64) if layout.landmarks else None
    stride = _stride_of(layout, heat, input_size)
    dets, points = [], []
    for n in range(heat.shape[0]):
        cls, ys, xs = np.nonzero(local_maxima(heat[n]) & (heat[n] > threshold))
        scores = heat[n, cls, ys, xs]
        boxes = _boxes(layout, size[n][:, ys, xs], offset[n][:, ys, xs], (xs, ys), stride)
        kps = np.zeros((len(xs), layout.keypoints, 2))
        if marks is not None:
            kps = _keypoints(layout, marks[n][:, ys, xs], (xs, ys), boxes, stride)
        keep = nms(boxes, scores, cls, nms_iou, max_det)
        dets.append(Detections(boxes[keep], scores[keep], cls[keep].astype(np.int64)))
        points.append(kps[keep])
    return dets, points


def cell_predictions(layout: CenterNetLayout, outputs: dict[str, np.ndarray],
                     input_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every cell's box [N, H*W, 4] (xyxy, input pixels) and class scores
    [N, H*W, C], cells row by row, before peaks and NMS. Call :func:`resolve` first."""
    heat = _heat(layout, outputs)
    n, c, h, w = heat.shape
    ys, xs = np.divmod(np.arange(h * w), w)
    size = np.asarray(outputs[layout.size], dtype=np.float64).reshape(n, 2, -1)
    offset = np.asarray(outputs[layout.offset], dtype=np.float64).reshape(n, 2, -1)
    stride = _stride_of(layout, heat, input_size)
    boxes = np.stack([_boxes(layout, size[i], offset[i], (xs, ys), stride) for i in range(n)])
    return boxes, heat.reshape(n, c, -1).transpose(0, 2, 1)


def _side(v: np.ndarray, fmt: str | None, stride: int) -> np.ndarray:
    if fmt == "log":
        return np.exp(np.clip(v, -30, 30)) * stride
    return v if fmt == "pixels" else v * stride


def _boxes(layout: CenterNetLayout, size: np.ndarray, offset: np.ndarray, cells: tuple, stride: int) -> np.ndarray:
    """size, offset [2, M] at the peaks -> [M, 4] xyxy in input pixels."""
    xs, ys = cells
    face = layout.style == "centerface"
    sw, sh = (size[1], size[0]) if face else (size[0], size[1])
    ox, oy = (offset[1], offset[0]) if face else (offset[0], offset[1])
    shift = 0.5 if face else 0.0
    cx, cy = (xs + ox + shift) * stride, (ys + oy + shift) * stride
    w, h = _side(sw, layout.size_format, stride), _side(sh, layout.size_format, stride)
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).reshape(-1, 4)


def _keypoints(layout: CenterNetLayout, marks: np.ndarray, cells: tuple, boxes: np.ndarray, stride: int) -> np.ndarray:
    """marks [2P, M] at the peaks -> [M, P, 2] (x, y) in input pixels."""
    v = marks.T.reshape(marks.shape[1], layout.keypoints, 2)
    if layout.style == "centerface":  # (y, x) pairs, in box sizes from the top-left corner
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        return np.stack([boxes[:, :1] + v[..., 1] * w[:, None], boxes[:, 1:2] + v[..., 0] * h[:, None]], axis=2)
    xs, ys = cells  # (x, y) pairs in map units from the integer cell
    return np.stack([(xs[:, None] + v[..., 0]) * stride, (ys[:, None] + v[..., 1]) * stride], axis=2)
