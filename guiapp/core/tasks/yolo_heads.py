"""Ultralytics YOLOv8/11 pose and segmentation heads, recognized so that they
are judged by their boxes (and pose heads also by their keypoints).

- pose: one output ``[N, 4 + C + P*D, A]``: box (cx, cy, w, h), C class
  scores, then per keypoint x, y (input pixels) and, with D = 3, a visibility
  already through a sigmoid (Ultralytics' ``Pose.kpts_decode`` in export
  mode). ``kpt_shape`` in the metadata ("[17, 3]") gives P and D.
- segment: ``output0 [N, 4 + C + M, A]`` (M mask coefficients, 32) and
  ``output1 [N, M, H/4, W/4]`` (the prototype masks).

Boxes are decoded as the plain YOLO rows once the trailing rows (keypoints or
mask coefficients) are dropped: :func:`box_class_rows`.
"""

from __future__ import annotations

import ast
import math
from dataclasses import asdict, dataclass

import numpy as np

from ..model.modelinfo import ImageInput, TensorInfo
from .boxes import Detections, nms, to_xyxy

ANCHOR_STRIDES = ((8, 16, 32), (8, 16, 32, 64))  # the usual heads and the P6 ones


@dataclass(frozen=True)
class YoloHead:
    task: str  # "pose" | "segment"
    output: str  # the [N, 4 + C + trailing, A] output
    classes: int
    trailing: int  # rows after the class scores: keypoint values or mask coefficients
    keypoints: tuple[int, int] = (0, 0)  # pose: (keypoints, values each: 2 or 3)
    protos: str | None = None  # segment: the prototype masks output

    @property
    def box_rows(self) -> slice:
        return slice(0, 4 + self.classes)

    @property
    def keypoint_rows(self) -> slice | None:
        return slice(4 + self.classes, 4 + self.classes + self.trailing) if self.task == "pose" else None

    def describe(self) -> str:
        if self.task == "pose":
            p, d = self.keypoints
            return f"YOLO pose head: 4 box values, {self.classes} class scores and {p} keypoints of {d} values in {self.output}"
        return (f"YOLO segmentation head: 4 box values, {self.classes} class scores and {self.trailing} mask coefficients "
                f"in {self.output}, prototype masks in {self.protos} (judged by its boxes)")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["keypoints"] = list(self.keypoints)
        return d


def _literal(text: str | None):
    try:
        return ast.literal_eval(text) if text else None
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def _class_count(metadata: dict[str, str]) -> int | None:
    names = _literal(metadata.get("names"))
    return len(names) if isinstance(names, (dict, list, tuple)) and names else None


def _kpt_shape(metadata: dict[str, str]) -> tuple[int, int] | None:
    k = _literal(metadata.get("kpt_shape"))
    if isinstance(k, (list, tuple)) and len(k) == 2 and all(isinstance(v, int) for v in k) and k[0] > 0 and k[1] in (2, 3):
        return int(k[0]), int(k[1])
    return None


def _fixed(t: TensorInfo, rank: int) -> tuple | None:
    """The shape when every dimension but the batch is a fixed size."""
    s = t.shape
    return tuple(s) if s is not None and len(s) == rank and all(isinstance(d, int) and d > 0 for d in s[1:]) else None


def anchors_fit(anchors: int, size: tuple[int, int]) -> bool:
    """Whether ``anchors`` is the anchor count of a stride-8/16/32(/64) head at ``size`` (height, width)."""
    h, w = size
    return any(sum(math.ceil(h / s) * math.ceil(w / s) for s in strides) == anchors for strides in ANCHOR_STRIDES)


def recognize(outputs: tuple[TensorInfo, ...], metadata: dict[str, str], image: ImageInput | None,
              fp32: np.ndarray | None = None) -> tuple[YoloHead, str] | None:
    """A pose or segmentation head in these outputs (concrete shapes), and
    why; None for anything else, plain YOLO detectors included, and when
    unsure. ``fp32``: the main output's FP32 values, which tell keypoint
    rows (pixels) from class scores (0..1) when no metadata does."""
    task = metadata.get("task", "")
    if (task and task not in ("pose", "segment")) or metadata.get("end2end") == "True":
        return None
    mains = [t for t in outputs if _fixed(t, 3)]
    if len(mains) != 1:
        return None
    main = mains[0]
    _, k, a = _fixed(main, 3)
    size = image.size if image is not None else None
    if k >= a or k < 6 or (size is not None and not anchors_fit(a, size)):
        return None
    names = _class_count(metadata)
    if len(outputs) == 2 and task in ("", "segment"):
        protos = next((t for t in outputs if t is not main and _fixed(t, 4)), None)
        return _segment(main, k, a, protos, names, size) if protos is not None else None
    if len(outputs) == 1 and task in ("", "pose"):
        return _pose(main, k, metadata, names, fp32)
    return None


def _segment(main: TensorInfo, k: int, a: int, protos: TensorInfo, names: int | None,
             size: tuple[int, int] | None) -> tuple[YoloHead, str] | None:
    _, m, ph, pw = _fixed(protos, 4)
    c = k - 4 - m
    if c < 1 or (names is not None and names != c) or not anchors_fit(a, (ph * 4, pw * 4)):
        return None
    if size is not None and (math.ceil(size[0] / 4), math.ceil(size[1] / 4)) != (ph, pw):
        return None
    head = YoloHead("segment", main.name, c, m, protos=protos.name)
    return head, (f"{main.name} {main.shape_text} = 4 box values + {c} class scores + {m} mask coefficients for {a} anchors, "
                  f"with {m} prototype masks {protos.name} {protos.shape_text} at 1/4 of the input (YOLOv8-style segmentation)")


def _pose(main: TensorInfo, k: int, metadata: dict[str, str], names: int | None,
          fp32: np.ndarray | None) -> tuple[YoloHead, str] | None:
    kpt, why = _kpt_shape(metadata), "kpt_shape in the metadata"
    if kpt is None and names is not None and metadata.get("task") == "pose":
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
    head = YoloHead("pose", main.name, c, p * d, keypoints=(p, d))
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


def decode_pose(head: YoloHead, output: np.ndarray, threshold: float, nms_iou: float,
                max_det: int = 300) -> tuple[list[Detections], list[np.ndarray]]:
    """Per image: boxes (xyxy, input pixels) over ``threshold`` after
    class-aware NMS, and their keypoints [K, P, D] (x, y, visibility)."""
    a = np.asarray(output, dtype=np.float64).transpose(0, 2, 1)  # [N, A, K]
    kps = pose_keypoints(head, output)
    dets, points = [], []
    for n in range(a.shape[0]):
        scores = a[n, :, 4:4 + head.classes]
        cls = scores.argmax(axis=1)
        best = scores[np.arange(len(cls)), cls]
        idx = np.nonzero(best > threshold)[0]
        boxes = to_xyxy(a[n, idx, :4], "cxcywh")
        keep = nms(boxes, best[idx], cls[idx], nms_iou, max_det)
        dets.append(Detections(boxes[keep], best[idx][keep], cls[idx][keep].astype(np.int64)))
        points.append(kps[n, idx[keep]])
    return dets, points
