"""How a detector lays out its outputs, guessed from their shapes (their
decoding into boxes is :mod:`.detection_decode`).

Three layouts cover the exporters our users meet:

- ``yolo``: one tensor ``[N, 4+C(+1), A]`` (YOLOv8/v11: box rows, then class
  scores) or ``[N, A, 4+1+C]`` (YOLOv5/v7/X: box, objectness, class scores);
- ``pair``: SSD-style ``scores [N, A, C]`` with ``boxes [N, A, 4]`` (RetinaFace,
  UltraFace, SSD exports with the decoding in the graph);
- ``strides``: one score and one box output per stride, either ``[N, A_i, C]``
  and ``[N, A_i, 4 or 4*bins]`` (PicoDet, NanoDet) or NCHW maps ``[N, C, H_i, W_i]``
  and ``[N, 4*bins, H_i, W_i]`` (YOLOv8 heads split for NPUs). Box distributions
  are decoded like GFL/DFL heads: the expected bin times the stride, around
  the anchor centre ``(i + 0.5) * stride``.

Heads that say more are read by their own modules: ``yolo_pose`` and
``yolo_seg`` (:mod:`.yolo_heads`: YOLO rows followed by keypoints or mask
coefficients; asked first, or a pose output ``[1, 56, A]`` reads as a
52-class detector; segmentation heads are judged by their boxes) and
``centernet`` (:mod:`.centernet`: heatmap, size, offset, landmarks; asked last).

Whatever cannot be decoded into boxes is compared anchor by anchor: a
detection is an (anchor, class) pair over the threshold, and FP32 and INT8
detections match when they are the same pair.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..model.tensors import ImageInput, TensorInfo
from . import centernet
from .centernet import CenterNetLayout
from .yolo_heads import HeadHints, YoloHead, recognize

BOX_FORMATS = ("auto", "cxcywh", "xyxy", "xywh")
_BOX_WORDS = ("box", "bbox", "reg", "dis", "loc")
_SCORE_WORDS = ("cls", "score", "conf", "prob", "logit")
STRIDES = (8, 16, 32, 64, 128)
YOLO_KINDS = ("yolo", "yolo_pose", "yolo_seg")  # read as YOLO rows (pose and segment: the box and class rows of them)


@dataclass(frozen=True)
class DetectionLayout:
    kind: str  # "yolo" | "pair" | "strides" | "yolo_pose" | "yolo_seg" | "centernet"
    scores: tuple[str, ...]  # output names holding scores (yolo: the one tensor)
    boxes: tuple[str, ...]  # output names holding boxes, aligned with ``scores``
    classes: int
    channels_first: bool = True  # yolo: [N, K, A]; strides: NCHW maps. False: [N, A, K]
    objectness: bool = False  # yolo: an objectness row/column after the box
    box_format: str = "cxcywh"  # how box values read; "distribution": bins to decode (strides)
    bins: int = 0  # distribution bins per box side (strides with box_format "distribution")
    strides: tuple[int, ...] = ()
    input_size: tuple[int, int] | None = None  # (height, width), for the anchor grid of "strides"
    background: bool | None = None  # scores hold a background class 0 (None: decided on FP32 outputs)
    sigmoid: bool | None = None  # scores are logits that need a sigmoid (None: decided on FP32 outputs)
    anchors_only: bool = False  # boxes cannot be decoded: compare (anchor, class) pairs
    head: YoloHead | None = None  # yolo_pose, yolo_seg: the head, whose box and class rows decode as "yolo"
    centernet: CenterNetLayout | None = None  # centernet: the heatmap head (its own decoding)

    @property
    def keypoints(self) -> tuple[int, int] | None:
        """(keypoints per box, values each: 2 for x, y; 3 with a visibility), or None."""
        if self.head is not None and self.head.task == "pose":
            return self.head.keypoints
        if self.centernet is not None and self.centernet.landmarks:
            return (self.centernet.keypoints, 2)
        return None

    def describe(self) -> str:
        if self.head is not None:
            return self.head.describe()
        if self.centernet is not None:
            return self.centernet.describe()
        if self.kind == "yolo":
            rows = "4 box values" + (", objectness" if self.objectness else "") + f" and {self.classes} class scores"
            where = "rows" if self.channels_first else "columns"
            return f"YOLO-style single output ({rows} in its {where}, boxes as {self.box_format})"
        if self.kind == "pair":
            return f"SSD-style pair of outputs: {self.scores[0]} (scores, {self.classes} classes) and {self.boxes[0]} (boxes as {self.box_format})"
        form = "box distributions" if self.box_format == "distribution" else "boxes"
        text = f"{len(self.scores)} per-stride score outputs (strides {', '.join(map(str, self.strides))}) with their {form}"
        return text + (" (compared anchor by anchor: boxes not decoded)" if self.anchors_only else "")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scores"], d["boxes"], d["strides"] = list(self.scores), list(self.boxes), list(self.strides)
        d["input_size"] = list(self.input_size) if self.input_size else None
        d["head"] = self.head.to_dict() if self.head is not None else None
        d["centernet"] = self.centernet.to_dict() if self.centernet is not None else None
        d["keypoints"] = list(self.keypoints) if self.keypoints else None
        return d


def _fixed(d) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


def guess(outputs: tuple[TensorInfo, ...], image: ImageInput | None,
          hints: HeadHints | None = None) -> tuple[DetectionLayout, str] | None:
    """The detection layout of these outputs, and why; None when they do not
    look like a detector's. ``hints``: what the file says (Ultralytics' task,
    class names, kpt_shape), which tells pose heads from plain detectors."""
    return (_guess_head(outputs, image, hints or HeadHints()) or _guess_yolo(outputs) or _guess_pair(outputs)
            or _guess_strides(outputs, image) or _guess_centernet(outputs, image))


def _guess_head(outputs, image: ImageInput | None, hints: HeadHints) -> tuple[DetectionLayout, str] | None:
    found = recognize(outputs, image, hints)
    if found is None:
        return None
    head, why = found
    kind = "yolo_pose" if head.task == "pose" else "yolo_seg"
    lay = DetectionLayout(kind, (head.output,), (head.output,), classes=head.classes, channels_first=True, head=head,
                          input_size=image.size if image is not None else None)
    return lay, why


def _guess_centernet(outputs, image: ImageInput | None) -> tuple[DetectionLayout, str] | None:
    found = centernet.guess(outputs, image)
    if found is None:
        return None
    cn, why = found
    lay = DetectionLayout("centernet", (cn.heatmap,), (cn.size,), classes=cn.classes, box_format="centre and size",
                          input_size=image.size if image is not None else None, background=False, centernet=cn)
    return lay, why


def _guess_yolo(outputs) -> tuple[DetectionLayout, str] | None:
    if len(outputs) != 1:
        return None
    t = outputs[0]
    s = t.shape
    if s is None or len(s) != 3:
        return None
    k, a = _fixed(s[1]), _fixed(s[2])
    if k is None or a is None:
        return None
    if 5 <= k < a:  # [N, 4+C, A]: YOLOv8 and later, no objectness
        lay = DetectionLayout("yolo", (t.name,), (t.name,), classes=k - 4, channels_first=True)
        return lay, f"one output {t.shape_text}: {k} = 4 box values + {k - 4} class scores for each of {a} anchors (YOLOv8-style)"
    if 6 <= a < k:  # [N, A, 5+C]: YOLOv5/v7/X, with objectness
        lay = DetectionLayout("yolo", (t.name,), (t.name,), classes=a - 5, channels_first=False, objectness=True)
        return lay, f"one output {t.shape_text}: {a} = 4 box values + objectness + {a - 5} class scores for each of {k} anchors (YOLOv5-style)"
    return None


def _guess_pair(outputs) -> tuple[DetectionLayout, str] | None:
    """Scores [N, A, C] and boxes [N, A, 4] (or [N, A, 1, 4]); a third output
    with the same anchors (RetinaFace's landmarks) is left aside."""
    if len(outputs) not in (2, 3):
        return None
    shapes = [t.shape for t in outputs]
    if any(s is None or len(s) not in (3, 4) or _fixed(s[1]) is None for s in shapes):
        return None
    if len({s[1] for s in shapes}) != 1:
        return None
    a = shapes[0][1]
    boxes = [t for t, s in zip(outputs, shapes) if s[-1] == 4 and (len(s) == 3 or s[2] == 1)]
    if len(boxes) != 1:
        return None
    box = boxes[0]
    rest = [t for t in outputs if t is not box and len(t.shape) == 3 and _fixed(t.shape[2])]
    if len(rest) == 2:  # pick the scores by name, then by the fewest values
        named = [t for t in rest if any(w in t.name.lower() for w in _SCORE_WORDS)]
        rest = named if len(named) == 1 else sorted(rest, key=lambda t: t.shape[2])[:1]
    if len(rest) != 1 or not rest[0].shape[2] < a:
        return None
    sc = rest[0]
    c = sc.shape[2]
    lay = DetectionLayout("pair", (sc.name,), (box.name,), classes=c, channels_first=False, box_format="xyxy")
    extra = f" ({len(outputs) - 2} other output with the same anchors left aside)" if len(outputs) == 3 else ""
    return lay, f"{a} anchors: {sc.name} {sc.shape_text} scores and {box.name} {box.shape_text} boxes (SSD-style){extra}"


_COMMON_BINS = (1, 8, 16, 17, 32)  # 4 values, PicoDet (reg_max 7), YOLOv8 (16), GFL/NanoDet (17)


def _which_is_box(t0: TensorInfo, k0: int, t1: TensorInfo, k1: int) -> bool | None:
    """True when ``t1`` holds the boxes, False when ``t0`` does, None when unclear."""
    named = [any(w in t.name.lower() for w in _BOX_WORDS) and not any(w in t.name.lower() for w in _SCORE_WORDS) for t in (t0, t1)]
    if named[0] != named[1]:
        return named[1]
    fits = [k % 4 == 0 and k // 4 in _COMMON_BINS for k in (k0, k1)]
    if fits[0] != fits[1]:
        return fits[1]
    return None


def _guess_strides(outputs, image: ImageInput | None) -> tuple[DetectionLayout, str] | None:
    if len(outputs) < 4 or len(outputs) % 2:
        return None
    size = image.size if image is not None else None
    groups: dict[int, list[TensorInfo]] = {}
    ranks = set()
    for t in outputs:
        s = t.shape
        if s is None or len(s) not in (3, 4):
            return None
        ranks.add(len(s))
        key = _fixed(s[2]) * _fixed(s[3]) if len(s) == 4 and _fixed(s[2]) and _fixed(s[3]) else _fixed(s[1]) if len(s) == 3 else None
        if key is None:
            return None
        groups.setdefault(key, []).append(t)
    if len(ranks) != 1 or len(groups) < 2 or any(len(g) != 2 for g in groups.values()):
        return None
    nchw = ranks == {4}
    scores, boxes, per_level = [], [], []
    for a in sorted(groups, reverse=True):  # finest stride first
        t0, t1 = groups[a]
        k0, k1 = (t.shape[1] if nchw else t.shape[2] for t in (t0, t1))
        if not (isinstance(k0, int) and isinstance(k1, int)):
            return None
        second = _which_is_box(t0, k0, t1, k1)
        if second is None:
            return None
        sc, bx, kc, kb = (t0, t1, k0, k1) if second else (t1, t0, k1, k0)
        scores.append(sc)
        boxes.append(bx)
        per_level.append((a, kb, kc))
    classes = {kc for _, _, kc in per_level}
    bins = {kb // 4 for _, kb, _ in per_level}
    if len(classes) != 1 or len(bins) != 1:
        return None
    (c,), (b,) = classes, bins
    strides = _strides([a for a, _, _ in per_level], size)
    fmt = "distribution" if b > 1 else "xyxy"
    anchors_only = strides is None or fmt != "distribution"
    lay = DetectionLayout(
        "strides", tuple(t.name for t in scores), tuple(t.name for t in boxes), classes=c, channels_first=nchw,
        box_format=fmt, bins=b if b > 1 else 0, strides=strides or (), input_size=size if strides else None,
        anchors_only=anchors_only,
    )
    why = (f"{len(scores)} pairs of outputs, one per stride ({', '.join(str(a) for a, _, _ in per_level)} anchors): "
           f"{c} class scores and {4 * b} box values each (per-stride head, like PicoDet or a split YOLOv8 head)")
    return lay, why


def _strides(anchor_counts: list[int], size: tuple[int, int] | None) -> tuple[int, ...] | None:
    if size is None:
        return None
    h, w = size
    out = []
    for a in anchor_counts:
        s = next((s for s in STRIDES if math.ceil(h / s) * math.ceil(w / s) == a), None)
        if s is None:
            return None
        out.append(s)
    return tuple(out)
