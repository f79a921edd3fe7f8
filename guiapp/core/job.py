"""The job document: everything a quantization run needs, as one versioned JSON.

The CLI reads and writes it (``--job``, ``--save-job``) and so does the GUI.
Relative paths in a job file are relative to the file's own folder. The
JSON's shape follows the dataclasses below (:mod:`guiapp.core.fields`); each
one checks its own values. A task's options live under the task's kind and a
target's under the target's kind (``"task": {"kind": "auto", "detection":
{...}}``), read by the task or target that owns them.

Version 1 files (task and target options flat) are read and migrated.
"""

from __future__ import annotations

import enum
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .atomic import atomic_write_text
from .calibrate.strategies import METHODS
from .data.preprocess import PreprocessSpec
from .errors import JobError
from .fields import Reader, check_at_least, check_between, check_choice, from_json, kind_of, to_json
from .tasks import TaskSettings

JOB_VERSION = 2

FORMATS = ("qdq", "qoperator")
ACTIVATION_TYPES = ("uint8", "int8")
WEIGHT_TYPES = ("int8", "uint8")
# Class labels (subfolders, csv) for classifiers; box labels (yolo, coco) for detectors.
LABEL_SOURCES = ("none", "subfolders", "csv", "yolo", "coco")
JOB_SUFFIXES = (".qsjob", ".json")


def is_job_file(arg: str) -> bool:
    """Whether a command-line argument names an existing job file (as a file
    manager passes it when a job is opened with the app)."""
    return arg.lower().endswith(JOB_SUFFIXES) and os.path.isfile(arg)


@dataclass(frozen=True)
class CalibrationSettings:
    folders: tuple[Path, ...] = ()
    max_images: int = 200
    seed: int = 0
    method: str = "minmax"
    batch_size: int = 8
    percentile: float = 99.99
    ema_constant: float = 0.01

    def __post_init__(self) -> None:
        check_choice("method", self.method, METHODS, "strategy")
        check_at_least("max_images", self.max_images, 1)
        check_at_least("batch_size", self.batch_size, 1)
        check_between("percentile", self.percentile, 50.0, 100.0)
        check_between("ema_constant", self.ema_constant, 0.0, 1.0)


@dataclass(frozen=True)
class QuantSettings:
    format: str = "qdq"
    per_channel: bool = True
    activation_type: str = "uint8"  # int8 activations run slower than FP32 on x86 (NOTES.md)
    weight_type: str = "int8"
    symmetric_activations: bool = False
    reduce_range: bool = False
    exclude_nodes: tuple[str, ...] = ()
    exclude_op_types: tuple[str, ...] = ()
    keep_float: int = 0  # re-quantize with the N worst layers (per-layer SQNR) in float
    protect_outputs: bool = True  # keep output tails that INT8 would crush in float (guiapp.core.quantize.protect)
    equalize: bool = False  # cross-layer equalization before calibrating (for per-tensor weights)
    bias_correction: bool = False  # absorb the weights' quantization shift into the biases
    share_concat_ranges: bool = True  # Concat inputs read only by it take its range: a copy instead of a requantization
    pad_channels: bool = True  # pad conv input channels to a multiple of 4 (same outputs; ORT's fast x86 kernels)
    batch_one: bool = False  # fix the input's batch dimension to 1 (the user runs one image at a time)
    ort_optimized: bool = False  # write the graph as ONNX Runtime optimizes it (loads in ONNX Runtime only)
    # The form TensorRT's explicit quantization reads: float weights with a QuantizeLinear/
    # DequantizeLinear pair each (not int8 initializers) and float biases (not int32). Set by the
    # TensorRT target, never saved.
    tensorrt_form: bool = field(default=False, metadata={"json": False})

    def __post_init__(self) -> None:
        check_choice("format", self.format, FORMATS, "format")
        check_choice("activation_type", self.activation_type, ACTIVATION_TYPES, "activation type")
        check_choice("weight_type", self.weight_type, WEIGHT_TYPES, "weight type")
        check_at_least("keep_float", self.keep_float, 0)


class QuantOption(str, enum.Enum):
    """The quantization settings a target may honour (the wizard greys out the rest)."""

    PER_CHANNEL = "per_channel"
    ACTIVATION_TYPE = "activation_type"
    SYMMETRIC_ACTIVATIONS = "symmetric_activations"
    FORMAT = "format"
    REDUCE_RANGE = "reduce_range"
    EXCLUDE_NODES = "exclude_nodes"
    KEEP_FLOAT = "keep_float"
    EQUALIZE = "equalize"
    BIAS_CORRECTION = "bias_correction"
    SHARE_CONCAT_RANGES = "share_concat_ranges"
    PAD_CHANNELS = "pad_channels"
    BATCH_ONE = "batch_one"
    ORT_OPTIMIZED = "ort_optimized"


@dataclass(frozen=True)
class TuningSettings:
    """The accuracy target: at most ``max_drop`` points of the task's headline
    metric below FP32 (None: no search, quantize as set), within ``minutes``."""

    max_drop: float | None = None
    minutes: float = 10.0

    def __post_init__(self) -> None:
        if self.max_drop is not None:
            check_between("max_drop", self.max_drop, 0.0, 100.0)
        check_between("minutes", self.minutes, 0.1, 10000.0)


@dataclass(frozen=True)
class EvalSettings:
    folders: tuple[Path, ...] = ()
    # Labels are never guessed: a folder tree by camera or by date would give
    # meaningless "accuracy". "subfolders" takes class-named sub-folders.
    labels_from: str = "none"
    labels_csv: Path | None = None  # the labels file: CSV, COCO JSON, or a folder of YOLO .txt files (optional for yolo)
    class_offset: int = 0
    max_images: int = 500
    latency_runs: int = 50
    per_layer_images: int = 8
    noise_images: int = 100  # images the noise floor is measured on (detection, maps); 0: not measured

    def __post_init__(self) -> None:
        check_choice("labels_from", self.labels_from, LABEL_SOURCES, "label source")
        check_at_least("max_images", self.max_images, 1)
        check_at_least("latency_runs", self.latency_runs, 0)  # 0: not timed here (a batch times its models afterwards, alone)
        check_at_least("per_layer_images", self.per_layer_images, 0)
        check_at_least("noise_images", self.noise_images, 0)


@dataclass(frozen=True)
class TargetSettings:
    """The deployment target, and the options of the targets that have some
    (kind -> that target's options dataclass, read by the target itself)."""

    kind: str = "onnxruntime"
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Defaults are not kept: two settings that mean the same compare equal.
        object.__setattr__(self, "options", {k: v for k, v in self.options.items() if v != type(v)()})

    def options_for(self, kind: str, cls: type) -> Any:
        """``kind``'s options, or its defaults when the job has none."""
        value = self.options.get(kind)
        return value if value is not None else cls()

    def with_options(self, kind: str, options: Any) -> "TargetSettings":
        return replace(self, options={**self.options, kind: options})

    def to_json(self, rel=str) -> dict:
        return {"kind": self.kind, **{k: to_json(v, rel) for k, v in self.options.items()}}

    @classmethod
    def from_json(cls, data: Any, reader: Reader, option_types: Mapping[str, type]) -> "TargetSettings":
        if not isinstance(data, dict):
            raise reader.error(f"expected an object, got {kind_of(data)}")
        kind = data.get("kind", "onnxruntime")
        if not isinstance(kind, str) or kind not in option_types:
            raise reader.at("kind").error(f"unknown target {kind!r}", f"Choose one of {', '.join(option_types)}.")
        options = {}
        for key, value in data.items():
            if key == "kind":
                continue
            if option_types.get(key) is None:
                raise reader.at(key).error("unknown setting", "Remove it or check its spelling.")
            if value is not None:
                options[key] = from_json(option_types[key], value, reader.at(key))
        return cls(kind, options)


@dataclass(frozen=True)
class Recipe:
    """How a model is quantized, as far as a search varies it: the strategy,
    per-channel weights, equalization, bias correction and the layers sent
    back to float. A job has one; each trial of a search is one."""

    method: str
    per_channel: bool
    equalize: bool = False
    bias_correction: bool = False
    float_nodes: tuple[str, ...] = ()

    @classmethod
    def of(cls, job: "Job") -> "Recipe":
        q = job.quantization
        return cls(job.calibration.method, q.per_channel, q.equalize, q.bias_correction)

    def applied_to(self, job: "Job") -> "Job":
        """``job`` made to quantize this way, without a search."""
        q = job.quantization
        q = replace(q, per_channel=self.per_channel, equalize=self.equalize, bias_correction=self.bias_correction,
                    exclude_nodes=tuple(dict.fromkeys((*q.exclude_nodes, *self.float_nodes))), keep_float=0)
        return replace(job, quantization=q, calibration=replace(job.calibration, method=self.method),
                       tuning=TuningSettings(None, job.tuning.minutes))

    def describe(self) -> str:
        parts = [self.method, "per-channel" if self.per_channel else "per-tensor"]
        if self.equalize:
            parts.append("equalized")
        if self.bias_correction:
            parts.append("bias-corrected")
        if self.float_nodes:
            parts.append(f"{len(self.float_nodes)} layer(s) in float")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return {"method": self.method, "per_channel": self.per_channel, "equalize": self.equalize,
                "bias_correction": self.bias_correction, "float_nodes": list(self.float_nodes)}

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        return cls(str(d["method"]), bool(d["per_channel"]), bool(d.get("equalize", False)),
                   bool(d.get("bias_correction", False)), tuple(d.get("float_nodes", ())))


def _task_codec():
    return {"codec": (lambda v, rel: v.to_json(), lambda raw, reader: TaskSettings.from_json(raw, reader))}


@dataclass(frozen=True)
class Job:
    model: Path
    output: Path | None = None
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)
    quantization: QuantSettings = field(default_factory=QuantSettings)
    evaluation: EvalSettings = field(default_factory=EvalSettings)
    report: Path | None = None
    cache: Path | None = None  # calibration statistics, reused when the images and model are unchanged
    inputs: dict[str, tuple[float, ...]] = field(default_factory=dict)  # constants for inputs besides the image
    task: TaskSettings = field(default_factory=TaskSettings, metadata=_task_codec())
    tuning: TuningSettings = field(default_factory=TuningSettings)
    target: TargetSettings = field(default_factory=TargetSettings, metadata={"codec": (lambda v, rel: v.to_json(rel), None)})

    def to_dict(self, base_dir: Path | None = None) -> dict:
        """The JSON-ready document; paths inside ``base_dir`` are written relative to it."""
        return {"version": JOB_VERSION, **to_json(self, lambda p: _rel(p, base_dir))}

    @classmethod
    def from_dict(cls, data: Any, base_dir: Path | None, target_options: Mapping[str, type]) -> "Job":
        """Validate and build; a JobError names the first bad field.
        ``target_options``: target kind -> its options class (the targets'
        registry gives it: :func:`guiapp.core.run.load_job`)."""
        reader = Reader("job", base_dir)
        if not isinstance(data, dict):
            raise reader.error(f"expected an object, got {kind_of(data)}")
        data = dict(data)
        version = data.pop("version", None)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise reader.at("version").error("is missing" if version is None else f"expected a version number, got {kind_of(version)}",
                                             "Add it to the job." if version is None else "")
        if version > JOB_VERSION:
            raise reader.at("version").error(f"{version} is newer than this Quantization Studio understands ({JOB_VERSION})",
                                             "Update the app, or save the job again from this version.")
        if version == 1:
            data = _from_version_1(data)
        if data.get("model") is None:
            raise reader.at("model").error("is missing", "Add it to the job.")
        target = data.pop("target", None)
        job = from_json(cls, data, reader)
        if target is not None:
            job = replace(job, target=TargetSettings.from_json(target, reader.at("target"), target_options))
        e = job.evaluation
        if e.labels_from in ("csv", "coco") and e.labels_csv is None:
            raise reader.at("evaluation.labels_csv").error("is missing", "Add it to the job.")
        return job

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        text = json.dumps(self.to_dict(base_dir=path.resolve().parent), indent=2) + "\n"
        atomic_write_text(path, text)


def read_job_file(path: str | os.PathLike) -> tuple[Any, Path]:
    """A job file's JSON and its folder (relative paths resolve against it)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JobError("job", f"the job file {path} does not exist", "Check the path.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobError("job", f"cannot read {path}: {exc}") from None
    try:
        return json.loads(text), path.resolve().parent
    except json.JSONDecodeError as exc:
        raise JobError("job", f"{path.name} is not valid JSON (line {exc.lineno}: {exc.msg})") from None


_V1_TASK = ("box_format", "score_threshold", "nms_iou", "match_iou")
_V1_TARGET = {"platform": ("rknn", "platform"), "rknn_python": ("rknn", "python"), "tensorrt_version": ("tensorrt", "version")}


def _from_version_1(data: dict) -> dict:
    """Version 1 kept the detection and dense options flat in "task" and the
    RKNN and TensorRT options flat in "target"."""
    data = dict(data)
    task = data.get("task")
    if isinstance(task, dict):
        task = dict(task)
        detection = {k: task.pop(k) for k in _V1_TASK if k in task}
        dense = {"mask_threshold": task.pop("mask_threshold")} if "mask_threshold" in task else {}
        data["task"] = {**task, **({"detection": detection} if detection else {}), **({"dense": dense} if dense else {})}
    target = data.get("target")
    if isinstance(target, dict):
        out: dict = {k: v for k, v in target.items() if k not in _V1_TARGET}
        for old, (kind, key) in _V1_TARGET.items():
            if old in target:
                out.setdefault(kind, {})[key] = target[old]
        data["target"] = out
    return data


def _rel(path: Path, base_dir: Path | None) -> str:
    if base_dir is not None:
        try:
            return Path(os.path.abspath(path)).relative_to(Path(os.path.abspath(base_dir))).as_posix()
        except ValueError:
            pass
    return str(Path(os.path.abspath(path)))
