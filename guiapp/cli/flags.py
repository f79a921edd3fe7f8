"""The command line's flags turned into the core's settings: a Job, a
PreprocessSpec, task and target settings (shared by quantize, evaluate and
check-norm)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from ..core.calibrate.calibcache import default_path
from ..core.data.preprocess import PreprocessSpec, preset, with_preset
from ..core.errors import JobError
from ..core.job import CalibrationSettings, EvalSettings, Job, QuantSettings, TargetSettings, TuningSettings
from ..core.run import load_job
from ..core.targets.registry import TARGETS
from ..core.tasks import TaskSettings, default_resize, detect_task


def _numbers(text: str, flag: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.replace(" ", "").split(",") if v != "")
    except ValueError:
        raise JobError(flag, f"expected comma-separated numbers, got {text!r}", "e.g. --mean 123.675,116.28,103.53") from None


def size_flag(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        return h, w
    except ValueError:
        raise JobError("--size", f"expected HxW, got {text!r}", "e.g. --size 224x224") from None


def _split(values) -> tuple[str, ...]:
    out: list[str] = []
    for v in values or []:
        out.extend(s.strip() for s in v.split(",") if s.strip())
    return tuple(out)


def spec_from_flags(args, channels: int, base: PreprocessSpec | None = None,
                    suggested: PreprocessSpec | None = None) -> PreprocessSpec:
    """The preprocessing the flags ask for, on top of ``base`` (a job's), else
    ``suggested`` (what the model's file states) unless a preset is asked for,
    else the imagenet preset."""
    if base is None and suggested is not None and not args.preset:
        spec = suggested
    elif args.preset or base is None:
        name = args.preset or "imagenet"
        spec = preset(name, channels) if base is None else with_preset(base, name, channels)
    else:
        spec = base
    changes: dict = {}
    if args.color:
        changes["color"] = args.color
    n = 1 if changes.get("color", spec.color) == "gray" else 3
    for key, flag in (("mean", "--mean"), ("std", "--std")):
        text = getattr(args, key)
        if text:
            values = _numbers(text, flag)
            changes[key] = values * n if len(values) == 1 else values  # one value: every channel
    if "color" in changes and "mean" not in changes and len(spec.mean) != n:
        # Switching between gray and colour: carry the preset's values over.
        changes["mean"] = (sum(spec.mean) / len(spec.mean),) * n
        changes["std"] = changes.get("std", (sum(spec.std) / len(spec.std),) * n)
    for key in ("layout", "resize", "resize_shorter", "interpolation", "pad_value"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    if args.size:
        changes["size"] = size_flag(args.size)
    try:
        return replace(spec, **changes)
    except JobError as exc:
        raise _as_flag(exc) from None


def file_preprocessing(info, args) -> PreprocessSpec | None:
    """The preprocessing the model's file states (Ultralytics: RGB, x/255,
    letterbox 114), when no flag asks for another (and the channels fit)."""
    stated = info.exporter.preprocessing if info is not None else None
    ii = info.image_input if info is not None else None
    if stated is None or ii is None or ii.channels != len(stated.mean) or args.preset or args.mean or args.std:
        return None
    return PreprocessSpec(stated.mean, stated.std, stated.color, resize=stated.resize, pad_value=stated.pad_value)


def model_from_flags(args, model):
    """For commands that take a model and preprocessing flags (evaluate,
    check-norm): (model info, task settings, task, resolved preprocessing)."""
    from ..core.context import check_model, resolve_spec
    from ..core.model.modelinfo import inspect_model

    info = inspect_model(model, layout=args.layout or "auto", size=size_flag(args.size) if args.size else None)
    check_model(info)
    settings = task_from_flags(args)
    task = detect_task(info, settings.kind)
    suggested = file_preprocessing(info, args)
    spec = spec_from_flags(args, info.image_input.channels, None, suggested)
    if args.resize is None and suggested is None:
        spec = replace(spec, resize=default_resize(task.kind))
    return info, settings, task, resolve_spec(spec, info)


def executor_from_flags(args):
    """The executor the flags ask for: --ray, else --workers (1: this process), else a local pool (auto)."""
    from ..core.parallel import ExecutorSpec

    if getattr(args, "ray", None):
        return ExecutorSpec("ray", threads=args.threads, address=None if args.ray == "local" else args.ray)
    workers = getattr(args, "workers", None)
    if workers in (None, "auto"):
        return ExecutorSpec("local", threads=args.threads)
    try:
        n = int(workers)
    except ValueError:
        raise JobError("--workers", f"expected a number or auto, got {workers!r}", "e.g. --workers 2") from None
    if n < 1:
        raise JobError("--workers", f"must be at least 1, got {n}")
    return ExecutorSpec("serial") if n == 1 else ExecutorSpec("local", workers=n, threads=args.threads)


def labels_from_flag(args) -> dict:
    if not args.labels:
        return {}
    if args.labels in ("subfolders", "yolo"):
        return {"labels_from": args.labels, "labels_csv": None}
    path = Path(args.labels)
    if path.is_dir():
        return {"labels_from": "yolo", "labels_csv": path}
    if path.suffix.lower() == ".json":
        return {"labels_from": "coco", "labels_csv": path}
    return {"labels_from": "csv", "labels_csv": path}


def task_from_flags(args, base: TaskSettings | None = None) -> TaskSettings:
    t = base or TaskSettings()
    detection = {k: v for k, v in (("box_format", args.box_format), ("score_threshold", args.score_threshold),
                                   ("nms_iou", args.nms_iou)) if v is not None}
    try:
        if args.task is not None:
            t = replace(t, kind=args.task)
        if detection:
            t = t.with_options("detection", replace(t.options_for("detection"), **detection))
        return t
    except JobError as exc:
        raise _as_flag(exc) from None


def _as_flag(exc: JobError) -> JobError:
    """A setting's error named by the command-line flag that set it."""
    return JobError("--" + exc.field.split(".")[-1].replace("_", "-"), exc.detail, exc.fix)


def job_from_args(args) -> Job:
    from ..core.model.modelinfo import inspect_model

    base = load_job(args.job) if args.job else None
    model = args.model or (base.model if base else None)
    if model is None:
        raise JobError("MODEL", "no model given", "Pass the .onnx file, or --job JOB.json.")
    size = size_flag(args.size) if args.size else (base.preprocess.size if base else None)
    info = inspect_model(model, layout=args.layout or (base.preprocess.layout if base else "auto"), size=size)
    channels = info.image_input.channels if info.image_input else 3
    stated = file_preprocessing(info, args) if base is None else None
    if stated is not None:
        print(f"preprocessing: {info.exporter.preprocessing.source} (--preset, --mean, --std override it)", file=sys.stderr)
    spec = spec_from_flags(args, channels, base.preprocess if base else None, stated)
    task = task_from_flags(args, base.task if base else None)
    if base is None and args.resize is None and file_preprocessing(info, args) is None:
        # Detectors and dense models see the whole picture: no centre crop.
        spec = replace(spec, resize=default_resize(detect_task(info, task.kind).kind))
    target = target_from_flags(args, base.target if base else None)
    out = args.out or (base.output if base else None)
    if out is None:
        raise JobError("--out", "no output path given", "Pass --out MODEL.int8.onnx (MODEL.rknn for --target rknn).")
    report = args.report or (base.report if base else None)
    inputs = {**(base.inputs if base else {}), **input_values(args.input_value)}
    cache = _cache_path(args, Path(out), base) if TARGETS[target.kind].uses_cache else None
    return Job(Path(model), Path(out), spec, calibration_from_flags(args, base), quantization_from_flags(args, base),
               evaluation_from_flags(args, base), report, cache, inputs, task, tuning_from_flags(args, base), target)


def _given(args, names: tuple[str, ...]) -> dict:
    """The flags among ``names`` that were given (argparse leaves the others None)."""
    return {k: getattr(args, k) for k in names if getattr(args, k) is not None}


def calibration_from_flags(args, base: Job | None) -> CalibrationSettings:
    c = base.calibration if base else CalibrationSettings()
    if not (args.calib or c.folders):
        raise JobError("--calib", "no calibration folder given", "Pass --calib DIR with a few hundred representative images.")
    try:
        return replace(c, folders=tuple(args.calib) if args.calib else c.folders,
                       **_given(args, ("max_images", "seed", "method", "batch_size", "percentile")))
    except JobError as exc:
        raise _as_flag(exc) from None


QUANT_FLAGS = ("per_channel", "activation_type", "format", "symmetric_activations", "reduce_range", "keep_float",
               "protect_outputs", "equalize", "bias_correction", "share_concat_ranges", "pad_channels", "batch_one",
               "ort_optimized")


def quantization_from_flags(args, base: Job | None) -> QuantSettings:
    changes = _given(args, QUANT_FLAGS)
    if args.exclude:
        changes["exclude_nodes"] = _split(args.exclude)
    if args.exclude_op_types:
        changes["exclude_op_types"] = _split([args.exclude_op_types])
    try:
        return replace(base.quantization if base else QuantSettings(), **changes)
    except JobError as exc:
        raise _as_flag(exc) from None


def evaluation_from_flags(args, base: Job | None) -> EvalSettings:
    changes = _given(args, ("class_offset", "latency_runs"))
    if args.eval_max_images is not None:
        changes["max_images"] = args.eval_max_images
    if args.eval:
        changes["folders"] = tuple(args.eval)
    changes.update(labels_from_flag(args))
    try:
        return replace(base.evaluation if base else EvalSettings(), **changes)
    except JobError as exc:
        raise JobError("--eval-max-images" if exc.field == "max_images" else _as_flag(exc).field, exc.detail, exc.fix) from None


def tuning_from_flags(args, base: Job | None) -> TuningSettings:
    tuning = base.tuning if base else TuningSettings()
    for flag, field, value, example in (("--max-drop", "max_drop", args.max_drop, "--max-drop 1.0"),
                                        ("--tune-minutes", "minutes", args.tune_minutes, "--tune-minutes 10")):
        if value is not None:
            try:
                tuning = replace(tuning, **{field: value})
            except JobError as exc:
                raise JobError(flag, exc.detail, f"e.g. {example}") from None
    return tuning


# flag -> (target kind, its option)
TARGET_FLAGS = {"rknn_platform": ("rknn", "platform"), "rknn_python": ("rknn", "python"), "tensorrt_version": ("tensorrt", "version")}


def target_from_flags(args, base: TargetSettings | None = None) -> TargetSettings:
    t = base or TargetSettings()
    if args.target is not None:
        t = replace(t, kind=args.target)
    for flag, (kind, option) in TARGET_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            try:
                t = t.with_options(kind, replace(TARGETS[kind].options_of(t), **{option: value}))
            except JobError as exc:
                raise JobError("--" + flag.replace("_", "-"), exc.detail, exc.fix) from None
    return t


def input_values(items) -> dict[str, tuple[float, ...]]:
    out = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise JobError("--input-value", f"expected NAME=VALUE, got {item!r}", "e.g. --input-value scale=0.5")
        out[name] = _numbers(text, "--input-value")
    return out


def _cache_path(args, out: Path, base: Job | None) -> Path | None:
    """Calibration statistics live beside the job file, or else beside the output."""
    if args.no_cache:
        return None
    if args.cache:
        return args.cache
    if base is not None and base.cache is not None:
        return base.cache
    return default_path(out, Path(args.job) if args.job else None)
