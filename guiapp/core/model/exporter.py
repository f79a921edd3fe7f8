"""What the exporter wrote about the model: who made it, and what a file
says about its task, input size, class names and preprocessing.

Ultralytics writes ``task``, ``imgsz``, ``stride``, ``names``, ``batch``
(and ``kpt_shape`` for pose) into ``metadata_props``, and its models take
RGB, x/255, letterboxed with 114. Paddle2ONNX names itself in
``producer_name`` and writes dynamic dims as ``p2o.DynamicDimension.N`` (or
-1); torch writes ``pytorch``, tf2onnx ``tf2onnx``. These are claims: the run
checks them (:mod:`guiapp.core.model.probe`), and a size the model refuses
is reported, not used.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

# Ultralytics' task names -> ours; "obb" (rotated boxes) has no reading of ours yet.
ULTRALYTICS_TASKS = {"detect": "detection", "segment": "detection", "pose": "detection", "classify": "classification"}
ULTRALYTICS_WORDS = {"detect": "boxes", "segment": "boxes and masks (judged by its boxes)",
                     "pose": "boxes and keypoints", "classify": "class scores", "obb": "rotated boxes"}


@dataclass(frozen=True)
class Preprocessing:
    """A preprocessing a file states or implies, in the app's terms."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    color: str
    resize: str
    pad_value: int
    source: str  # where it comes from, in words

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "color": self.color, "resize": self.resize,
                "pad_value": self.pad_value, "source": self.source}


@dataclass(frozen=True)
class ExporterFacts:
    exporter: str  # "Ultralytics 8.4.190", "Paddle2ONNX 2.1.0", "PyTorch 2.14.1", ... or ""
    task: str | None = None  # our task kind, as the file states it
    task_claim: str = ""  # the file's own words ("task=detect")
    size: tuple[int, int] | None = None  # (height, width) the file states
    size_claim: str = ""
    class_names: tuple[str, ...] = ()
    stride: int | None = None
    keypoints: tuple[int, int] | None = None  # (keypoints, values each) for pose heads
    preprocessing: Preprocessing | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"exporter": self.exporter, "task": self.task, "task_claim": self.task_claim,
                "size": list(self.size) if self.size else None, "size_claim": self.size_claim,
                "class_names": list(self.class_names), "stride": self.stride,
                "keypoints": list(self.keypoints) if self.keypoints else None,
                "preprocessing": self.preprocessing.to_dict() if self.preprocessing else None, "notes": list(self.notes)}


def _literal(text: str | None):
    if not text:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def class_names(metadata: dict[str, str]) -> tuple[str, ...]:
    """Class names from ``names`` (Ultralytics: a dict literal, or a list) or a comma-separated ``classes``."""
    value = _literal(metadata.get("names"))
    if isinstance(value, dict):
        try:
            return tuple(str(value[k]) for k in sorted(value))
        except TypeError:
            return ()
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    raw = metadata.get("classes")
    if raw and "," in raw:
        return tuple(c.strip() for c in raw.split(","))
    return ()


def _size(value) -> tuple[int, int] | None:
    if isinstance(value, int) and value > 0:
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
        return (int(value[0]), int(value[1]))
    return None


def _ultralytics(metadata: dict[str, str]) -> ExporterFacts:
    task = metadata.get("task", "")
    size = _size(_literal(metadata.get("imgsz")))
    stride = _literal(metadata.get("stride"))
    kpt = _literal(metadata.get("kpt_shape"))
    notes = []
    if task == "obb":
        notes.append("task=obb (rotated boxes): judged output by output, not as boxes")
    if metadata.get("end2end") == "True":
        notes.append("end2end=True: the file decodes and filters boxes itself")
    return ExporterFacts(
        exporter=f"Ultralytics {metadata.get('version', '')}".strip(),
        task=ULTRALYTICS_TASKS.get(task),
        task_claim=f"task={task} ({ULTRALYTICS_WORDS.get(task, 'unknown')})" if task else "",
        size=size,
        size_claim=f"imgsz={metadata.get('imgsz')}" if size else "",
        class_names=class_names(metadata),
        stride=stride if isinstance(stride, int) else None,
        keypoints=tuple(kpt) if isinstance(kpt, (list, tuple)) and len(kpt) == 2 else None,
        preprocessing=Preprocessing((0.0, 0.0, 0.0), (255.0, 255.0, 255.0), "rgb", "letterbox", 114,
                                    "Ultralytics export (its metadata): RGB, x/255, letterbox padded with 114"),
        notes=tuple(notes),
    )


def _stated_normalization(metadata: dict[str, str]) -> Preprocessing | None:
    """Mean and std written into the metadata (some exporters and model zoos do), in 0..1 or pixel units."""
    for mk, sk in (("mean", "std"), ("mean_values", "std_values"), ("image_mean", "image_std"), ("pixel_mean", "pixel_std")):
        mean, std = _literal(metadata.get(mk)), _literal(metadata.get(sk))
        if not (isinstance(mean, (list, tuple)) and isinstance(std, (list, tuple)) and len(mean) == len(std) in (1, 3)):
            continue
        if not all(isinstance(v, (int, float)) for v in (*mean, *std)) or any(v == 0 for v in std):
            continue
        scale = 255.0 if max(abs(v) for v in (*mean, *std)) <= 1.0 else 1.0
        return Preprocessing(tuple(float(v) * scale for v in mean), tuple(float(v) * scale for v in std), "rgb", "shorter", 0,
                             f"the file's metadata ({mk}/{sk})")
    return None


def read_exporter(producer_name: str, producer_version: str, metadata: dict[str, str],
                  dim_names: tuple[str, ...] = ()) -> ExporterFacts:
    """What the file says about itself (``dim_names``: the symbolic dims of its inputs)."""
    author = metadata.get("author", "")
    if "ultralytics" in author.lower() or ("imgsz" in metadata and "task" in metadata and "names" in metadata):
        return _ultralytics(metadata)
    name = producer_name.lower()
    if "paddle" in name or any("DynamicDimension" in d for d in dim_names):  # paddle2onnx 2 leaves the producer empty
        exporter = f"Paddle2ONNX (PaddlePaddle {producer_version})" if producer_version else "Paddle2ONNX"
    elif name == "pytorch":
        exporter = f"PyTorch {producer_version}".strip()
    elif "tf2onnx" in name or "keras2onnx" in name:
        exporter = f"{producer_name} {producer_version}".strip()
    else:
        exporter = f"{producer_name} {producer_version}".strip()
    return ExporterFacts(exporter=exporter, class_names=class_names(metadata), preprocessing=_stated_normalization(metadata))
