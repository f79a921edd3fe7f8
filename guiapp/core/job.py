"""The job document: everything a quantization run needs, as one versioned JSON.

The CLI reads and writes it (``--job``, ``--save-job``) and so does the GUI.
Relative paths in a job file are relative to the file's own folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import atomic_write_text
from .errors import JobError
from .jobfields import Fields
from .data.preprocess import COLORS, INTERPOLATIONS, LAYOUTS, RESIZES, PreprocessSpec
from .calibrate.strategies import METHODS
from .targets.base import RKNN_PLATFORMS, TARGET_KINDS, TargetSettings
from .tasks.base import TASK_KINDS, TaskSettings
from .tasks.detection_layout import BOX_FORMATS

JOB_VERSION = 1

FORMATS = ("qdq", "qoperator")
ACTIVATION_TYPES = ("uint8", "int8")
WEIGHT_TYPES = ("int8", "uint8")


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
    # The form TensorRT's explicit quantization reads: float weights with a QuantizeLinear/
    # DequantizeLinear pair each (not int8 initializers) and float biases (not int32). Set by the
    # TensorRT target, not saved.
    tensorrt_form: bool = False
    share_concat_ranges: bool = True  # Concat inputs read only by it take its range: a copy instead of a requantization
    pad_channels: bool = True  # pad conv input channels to a multiple of 4 (same outputs; ORT's fast x86 kernels)
    batch_one: bool = False  # fix the input's batch dimension to 1 (the user runs one image at a time)
    ort_optimized: bool = False  # write the graph as ONNX Runtime optimizes it (loads in ONNX Runtime only)


@dataclass(frozen=True)
class TuningSettings:
    """The accuracy target: at most ``max_drop`` points of the task's headline
    metric below FP32 (None: no search, quantize as set), within ``minutes``."""

    max_drop: float | None = None
    minutes: float = 10.0


# Class labels (subfolders, csv) for classifiers; box labels (yolo, coco) for detectors.
LABEL_SOURCES = ("none", "subfolders", "csv", "yolo", "coco")


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
    task: TaskSettings = field(default_factory=TaskSettings)
    tuning: TuningSettings = field(default_factory=TuningSettings)
    target: TargetSettings = field(default_factory=TargetSettings)

    # ------------------------------------------------------------ to / from dict

    def to_dict(self, base_dir: Path | None = None) -> dict:
        """The JSON-ready document; paths inside ``base_dir`` are written relative to it."""

        def p(path: Path | None):
            return None if path is None else _rel(path, base_dir)

        c, q, e = self.calibration, self.quantization, self.evaluation
        return {
            "version": JOB_VERSION,
            "model": p(self.model),
            "output": p(self.output),
            "report": p(self.report),
            "cache": p(self.cache),
            "inputs": {k: list(v) for k, v in self.inputs.items()},
            "task": self.task.to_dict(),
            "target": self.target.to_dict(p),
            "preprocess": self.preprocess.to_dict(),
            "calibration": {
                "folders": [p(f) for f in c.folders],
                "max_images": c.max_images,
                "seed": c.seed,
                "method": c.method,
                "batch_size": c.batch_size,
                "percentile": c.percentile,
                "ema_constant": c.ema_constant,
            },
            "quantization": {
                "format": q.format,
                "per_channel": q.per_channel,
                "activation_type": q.activation_type,
                "weight_type": q.weight_type,
                "symmetric_activations": q.symmetric_activations,
                "reduce_range": q.reduce_range,
                "exclude_nodes": list(q.exclude_nodes),
                "exclude_op_types": list(q.exclude_op_types),
                "keep_float": q.keep_float,
                "protect_outputs": q.protect_outputs,
                "equalize": q.equalize,
                "bias_correction": q.bias_correction,
                "share_concat_ranges": q.share_concat_ranges,
                "pad_channels": q.pad_channels,
                "batch_one": q.batch_one,
                "ort_optimized": q.ort_optimized,
            },
            "tuning": {"max_drop": self.tuning.max_drop, "minutes": self.tuning.minutes},
            "evaluation": {
                "folders": [p(f) for f in e.folders],
                "labels_from": e.labels_from,
                "labels_csv": p(e.labels_csv),
                "class_offset": e.class_offset,
                "max_images": e.max_images,
                "latency_runs": e.latency_runs,
                "per_layer_images": e.per_layer_images,
            },
        }

    @classmethod
    def from_dict(cls, data: dict, base_dir: Path | None = None) -> "Job":
        """Validate and build; a JobError names the first bad field."""
        f = Fields(data, "job", base_dir)
        version = f.int("version", required=True, minimum=1)
        if version > JOB_VERSION:
            raise JobError(
                "job.version",
                f"{version} is newer than this Quantization Studio understands ({JOB_VERSION})",
                "Update the app, or save the job again from this version.",
            )
        model = f.path("model", required=True)
        output = f.path("output")
        report = f.path("report")
        cache = f.path("cache")
        inputs_raw = f.raw("inputs", {})
        if not isinstance(inputs_raw, dict):
            raise JobError("job.inputs", f"expected an object of input name -> values, got {type(inputs_raw).__name__}")
        inputs = {name: Fields(inputs_raw, "job.inputs").numbers(name, ()) for name in inputs_raw}

        tf = f.sub("task")
        td = TaskSettings()
        mask = tf.raw("mask_threshold")
        try:
            task = TaskSettings(
                kind=tf.choice("kind", td.kind, TASK_KINDS),
                box_format=tf.choice("box_format", td.box_format, BOX_FORMATS),
                score_threshold=tf.float("score_threshold", td.score_threshold, lo=0.0, hi=1.0),
                nms_iou=tf.float("nms_iou", td.nms_iou, lo=0.0, hi=1.0),
                match_iou=tf.float("match_iou", td.match_iou, lo=0.0, hi=1.0),
                mask_threshold=None if mask is None else tf.float("mask_threshold", None),
            )
        except JobError as exc:
            raise JobError(exc.field if exc.field.startswith("job.") else "job." + exc.field, exc.detail, exc.fix) from None
        tf.finish()

        gf = f.sub("target")
        gd = TargetSettings()
        try:
            target = TargetSettings(
                kind=gf.choice("kind", gd.kind, TARGET_KINDS),
                platform=gf.choice("platform", gd.platform, RKNN_PLATFORMS),
                rknn_python=gf.path("rknn_python"),
                tensorrt_version=gf.raw("tensorrt_version", gd.tensorrt_version),
            )
        except JobError as exc:
            raise JobError(exc.field if exc.field.startswith("job.") else "job." + exc.field, exc.detail, exc.fix) from None
        gf.finish()

        pp = f.sub("preprocess")
        default = PreprocessSpec()
        size = pp.raw("size")
        if size is not None and (
            not isinstance(size, list) or len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
        ):
            raise JobError("job.preprocess.size", f"expected [height, width], got {size!r}")
        try:
            spec = PreprocessSpec(
                mean=pp.numbers("mean", default.mean),
                std=pp.numbers("std", default.std),
                color=pp.choice("color", default.color, COLORS),
                layout=pp.choice("layout", default.layout, LAYOUTS),
                size=tuple(size) if size else None,
                resize=pp.choice("resize", default.resize, RESIZES),
                resize_shorter=pp.int("resize_shorter", None, minimum=1),
                pad_value=pp.int("pad_value", 0, minimum=0),
                interpolation=pp.choice("interpolation", default.interpolation, tuple(INTERPOLATIONS)),
            )
        except JobError as exc:
            if exc.field.startswith("job."):
                raise
            raise JobError("job." + exc.field, exc.detail, exc.fix) from None
        pp.finish()

        cf = f.sub("calibration")
        cd = CalibrationSettings()
        calibration = CalibrationSettings(
            folders=cf.paths("folders"),
            max_images=cf.int("max_images", cd.max_images, minimum=1),
            seed=cf.int("seed", cd.seed),
            method=cf.choice("method", cd.method, METHODS),
            batch_size=cf.int("batch_size", cd.batch_size, minimum=1),
            percentile=cf.float("percentile", cd.percentile, lo=50.0, hi=100.0),
            ema_constant=cf.float("ema_constant", cd.ema_constant, lo=0.0, hi=1.0),
        )
        cf.finish()

        qf = f.sub("quantization")
        qd = QuantSettings()
        quantization = QuantSettings(
            format=qf.choice("format", qd.format, FORMATS),
            per_channel=qf.bool("per_channel", qd.per_channel),
            activation_type=qf.choice("activation_type", qd.activation_type, ACTIVATION_TYPES),
            weight_type=qf.choice("weight_type", qd.weight_type, WEIGHT_TYPES),
            symmetric_activations=qf.bool("symmetric_activations", qd.symmetric_activations),
            reduce_range=qf.bool("reduce_range", qd.reduce_range),
            exclude_nodes=qf.strings("exclude_nodes"),
            exclude_op_types=qf.strings("exclude_op_types"),
            keep_float=qf.int("keep_float", qd.keep_float, minimum=0),
            protect_outputs=qf.bool("protect_outputs", qd.protect_outputs),
            equalize=qf.bool("equalize", qd.equalize),
            bias_correction=qf.bool("bias_correction", qd.bias_correction),
            share_concat_ranges=qf.bool("share_concat_ranges", qd.share_concat_ranges),
            pad_channels=qf.bool("pad_channels", qd.pad_channels),
            batch_one=qf.bool("batch_one", qd.batch_one),
            ort_optimized=qf.bool("ort_optimized", qd.ort_optimized),
        )
        qf.finish()

        uf = f.sub("tuning")
        ud = TuningSettings()
        drop = uf.raw("max_drop")
        tuning = TuningSettings(
            max_drop=None if drop is None else uf.float("max_drop", None, lo=0.0, hi=100.0),
            minutes=uf.float("minutes", ud.minutes, lo=0.1, hi=10000.0),
        )
        uf.finish()

        ef = f.sub("evaluation")
        ed = EvalSettings()
        labels_from = ef.choice("labels_from", ed.labels_from, LABEL_SOURCES)
        labels_csv = ef.path("labels_csv", required=labels_from in ("csv", "coco"))
        evaluation = EvalSettings(
            folders=ef.paths("folders"),
            labels_from=labels_from,
            labels_csv=labels_csv,
            class_offset=ef.int("class_offset", ed.class_offset),
            max_images=ef.int("max_images", ed.max_images, minimum=1),
            latency_runs=ef.int("latency_runs", ed.latency_runs, minimum=1),
            per_layer_images=ef.int("per_layer_images", ed.per_layer_images, minimum=0),
        )
        ef.finish()
        f.finish()
        return cls(model, output, spec, calibration, quantization, evaluation, report, cache, inputs, task, tuning, target)

    # ------------------------------------------------------------ files

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        text = json.dumps(self.to_dict(base_dir=path.resolve().parent), indent=2) + "\n"
        atomic_write_text(path, text)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Job":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise JobError("job", f"the job file {path} does not exist", "Check the path.") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise JobError("job", f"cannot read {path}: {exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise JobError("job", f"{path.name} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
        return cls.from_dict(data, base_dir=path.resolve().parent)


def _rel(path: Path, base_dir: Path | None) -> str:
    if base_dir is not None:
        try:
            return Path(os.path.abspath(path)).relative_to(Path(os.path.abspath(base_dir))).as_posix()
        except ValueError:
            pass
    return str(Path(os.path.abspath(path)))
