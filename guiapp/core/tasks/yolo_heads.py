"""Ultralytics YOLOv8/11 pose and segmentation heads, recognized so that they
are judged by their boxes (and pose heads also by their keypoints).

- pose: one output ``[N, 4 + C + P*D, A]``: box (cx, cy, w, h), C class
  scores, then per keypoint x, y (input pixels) and, with D = 3, a visibility
  already through a sigmoid (Ultralytics' ``Pose.kpts_decode`` in export
  mode). ``kpt_shape`` in the metadata ("[17, 3]") gives P and D.
- segment: ``output0 [N, 4 + C + M, A]`` (M mask coefficients, 32) and
  ``output1 [N, M, H/4, W/4]`` (the prototype masks).

Boxes are decoded as the plain YOLO rows once the trailing rows (keypoints or
mask coefficients) are dropped: :func:`box_class_rows`. What the file says
(class names, ``kpt_shape``) comes from :mod:`guiapp.core.model.exporter`;
only Ultralytics' own task word and ``end2end`` are read from the raw
metadata (the exporter's facts map pose and segment to "detection").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..model.exporter import ExporterFacts
from ..model.tensors import ImageInput, TensorInfo

ANCHOR_STRIDES = ((8, 16, 32), (8, 16, 32, 64))  # the usual heads and the P6 ones


@dataclass(frozen=True)
class HeadHints:
    """What the file says that tells a pose or segmentation head from a plain detector."""

    task: str = ""  # Ultralytics' own word: "pose", "segment", "detect", ... ("": not said)
    classes: int | None = None  # from the class names
    keypoints: tuple[int, int] | None = None  # kpt_shape: (keypoints, values each: 2 or 3)
    end2end: bool = False  # the file decodes and filters boxes itself


def hints_from(exporter: ExporterFacts, metadata: dict[str, str]) -> HeadHints:
    """The hints in a model file: the exporter's reading plus the raw task word."""
    k = exporter.keypoints
    valid = k is not None and len(k) == 2 and all(isinstance(v, int) and v > 0 for v in k) and k[1] in (2, 3)
    return HeadHints(task=str(metadata.get("task", "")), classes=len(exporter.class_names) or None,
                     keypoints=(int(k[0]), int(k[1])) if valid else None, end2end=metadata.get("end2end") == "True")


def _shape_text(shape: tuple) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


@dataclass(frozen=True)
class YoloHead:
    task: str  # "pose" | "segment"
    output: str  # the [N, 4 + C + trailing, A] output
    classes: int
    trailing: int  # rows after the class scores: keypoint values or mask coefficients
    keypoints: tuple[int, int] = (0, 0)  # pose: (keypoints, values each: 2 or 3)
    protos: str | None = None  # segment: the prototype masks output
    shape: tuple[int, ...] = ()  # the main output's shape at the size it was recognized at
    protos_shape: tuple[int, ...] = ()

    @property
    def box_rows(self) -> slice:
        return slice(0, 4 + self.classes)

    @property
    def keypoint_rows(self) -> slice | None:
        return slice(4 + self.classes, 4 + self.classes + self.trailing) if self.task == "pose" else None

    def describe(self) -> str:
        classes = f"{self.classes} class{'es' if self.classes != 1 else ''}"
        where = f"{self.output} {_shape_text(self.shape)}" if self.shape else self.output
        if self.task == "pose":
            p, d = self.keypoints
            values = "x, y, visibility" if d == 3 else "x, y"
            return f"YOLOv8/11 pose head: {classes}, {p} keypoints ({values}) in {where}"
        protos = f"{self.protos} {_shape_text(self.protos_shape)}" if self.protos_shape else str(self.protos)
        return (f"YOLOv8/11 segmentation head: {classes} and {self.trailing} mask coefficients in {where}, "
                f"prototype masks in {protos}; judged by its boxes (the prototype masks are compared value by value "
                "like any output)")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["keypoints"], d["shape"], d["protos_shape"] = list(self.keypoints), list(self.shape), list(self.protos_shape)
        return d


def _fixed(t: TensorInfo, rank: int) -> tuple | None:
    """The shape when every dimension but the batch is a fixed size."""
    s = t.shape
    return tuple(s) if s is not None and len(s) == rank and all(isinstance(d, int) and d > 0 for d in s[1:]) else None


def anchors_fit(anchors: int, size: tuple[int, int]) -> bool:
    """Whether ``anchors`` is the anchor count of a stride-8/16/32(/64) head at ``size`` (height, width)."""
    h, w = size
    return any(sum(math.ceil(h / s) * math.ceil(w / s) for s in strides) == anchors for strides in ANCHOR_STRIDES)


def recognize(outputs: tuple[TensorInfo, ...], image: ImageInput | None, hints: HeadHints = HeadHints(),
              fp32: np.ndarray | None = None) -> tuple[YoloHead, str] | None:
    """A pose or segmentation head in these outputs (concrete shapes), and
    why; None for anything else, plain YOLO detectors included, and when
    unsure. ``fp32``: the main output's FP32 values, which tell keypoint
    rows (pixels) from class scores (0..1) when no metadata does."""
    task = hints.task
    if (task and task not in ("pose", "segment")) or hints.end2end:
        return None
    mains = [t for t in outputs if _fixed(t, 3)]
    if len(mains) != 1:
        return None
    main = mains[0]
    _, k, a = _fixed(main, 3)
    size = image.size if image is not None else None
    if k >= a or k < 6 or (size is not None and not anchors_fit(a, size)):
        return None
    if len(outputs) == 2 and task in ("", "segment"):
        protos = next((t for t in outputs if t is not main and _fixed(t, 4)), None)
        return _segment(main, a, protos, hints.classes, size) if protos is not None else None
    if len(outputs) == 1 and task in ("", "pose"):
        return _pose(main, hints, fp32)
    return None


def _segment(main: TensorInfo, a: int, protos: TensorInfo, names: int | None,
             size: tuple[int, int] | None) -> tuple[YoloHead, str] | None:
    shape, pshape = _fixed(main, 3), _fixed(protos, 4)
    k, (_, m, ph, pw) = shape[1], pshape
    c = k - 4 - m
    if c < 1 or (names is not None and names != c) or not anchors_fit(a, (ph * 4, pw * 4)):
        return None
    if size is not None and (math.ceil(size[0] / 4), math.ceil(size[1] / 4)) != (ph, pw):
        return None
    head = YoloHead("segment", main.name, c, m, protos=protos.name, shape=shape, protos_shape=pshape)
    return head, (f"{main.name} {main.shape_text} = 4 box values + {c} class scores + {m} mask coefficients for {a} anchors, "
                  f"with {m} prototype masks {protos.name} {protos.shape_text} at 1/4 of the input (YOLOv8-style segmentation)")


def _pose(main: TensorInfo, hints: HeadHints, fp32: np.ndarray | None) -> tuple[YoloHead, str] | None:
    shape = _fixed(main, 3)
    k, names = shape[1], hints.classes
    kpt, why = hints.keypoints, "kpt_shape in the metadata"
    if kpt is None and names is not None and hints.task == "pose":
        rest = k - 4 - names
        d = [d for d in (3, 2) if rest > 0 and rest % d == 0]
        kpt, why = ((rest // d[0], d[0]), "task=pose and the class names in the metadata") if len(d) == 1 else (None, "")
    if kpt is None and fp32 is not None and np.ndim(fp32) == 3 and np.shape(fp32)[1] == k:
        found = keypoint_rows_in(np.asarray(fp32))
        if found is not None and (names is None or found[0] == names):
            kpt, why = found[1], "the FP32 values: pixel rows after the class scores"
    if kpt is None:
        return None
    p, d = kpt
    c = k - 4 - p * d
    if c < 1 or (names is not None and names != c):
        return None
    head = YoloHead("pose", main.name, c, p * d, keypoints=(p, d), shape=shape)
    return head, f"{main.name} {main.shape_text} = 4 box values + {c} class scores + {p} keypoints x {d} values ({why})"


def keypoint_rows_in(values: np.ndarray) -> tuple[int, tuple[int, int]] | None:
    """(classes, (keypoints, values each)) read from a [N, K, A] output's
    values: class scores stay in 0..1 while keypoint x, y rows hold pixels,
    each pair followed by a visibility in 0..1 (D = 3) or not (D = 2)."""
    if values.ndim != 3 or values.shape[1] < 7:
        return None
    rows = np.abs(np.asarray(values[:, 4:, :], dtype=np.float64))
    big = np.where(np.isfinite(rows), rows, 0.0).max(axis=(0, 2)) > 1.5
    first = int(np.argmax(big)) if big.any() else 0
    tail = big[first:]
    if first < 1:
        return None
    for d in (3, 2):
        pattern = np.array([True, True, False][:d] if d == 3 else [True, True])
        if len(tail) % d == 0 and np.array_equal(tail, np.tile(pattern, len(tail) // d)):
            return first, (len(tail) // d, d)
    return None


def box_class_rows(head: YoloHead, output: np.ndarray) -> np.ndarray:
    """The main output without its trailing rows: [N, 4 + C, A], for the plain YOLO decoding."""
    return np.asarray(output)[:, head.box_rows, :]


def pose_keypoints(head: YoloHead, output: np.ndarray) -> np.ndarray:
    """Every anchor's keypoints [N, A, P, D]: x, y in input pixels (and visibility)."""
    rows = np.asarray(output, dtype=np.float64)[:, head.keypoint_rows, :]  # [N, P*D, A]
    p, d = head.keypoints
    return rows.reshape(rows.shape[0], p, d, -1).transpose(0, 3, 1, 2)
