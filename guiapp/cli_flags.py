"""The command line's flags turned into the core's settings: a Job, a
PreprocessSpec, task and target settings (shared by quantize, evaluate and
check-norm)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .core.calibrate.calibcache import default_path
from .core.data.preprocess import PreprocessSpec, preset, with_preset
from .core.errors import JobError
from .core.job import CalibrationSettings, EvalSettings, Job, QuantSettings, TuningSettings
from .core.tasks import TaskSettings, default_resize, detect_task
from .core.targets.base import TargetSettings


def _numbers(text: str, flag: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.replace(" ", "").split(",") if v != "")
    except ValueError:
        raise JobError(flag, f"expected comma-separated numbers, got {text!r}", "e.g. --mean 123.675,116.28,103.53") from None


def _size(text: str) -> tuple[int, int]:
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


def spec_from_flags(args, channels: int, base: PreprocessSpec | None = None) -> PreprocessSpec:
    """The preprocessing the flags ask for, on top of ``base`` (a job's) or a preset."""
    if args.preset or base is None:
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
        changes["size"] = _size(args.size)
    try:
        return replace(spec, **changes)
    except JobError as exc:
        flag = "--" + exc.field.split(".")[-1].replace("_", "-")
        raise JobError(flag, exc.detail, exc.fix) from None


def _labels(args) -> dict:
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
    changes = {k: v for k, v in (("kind", args.task), ("box_format", args.box_format),
                                 ("score_threshold", args.score_threshold), ("nms_iou", args.nms_iou)) if v is not None}
    try:
        return replace(t, **changes)
    except JobError as exc:
        raise JobError("--" + exc.field.split(".")[-1].replace("_", "-"), exc.detail, exc.fix) from None


def job_from_args(args) -> Job:
    from .core.model.modelinfo import inspect_model

    base = Job.load(args.job) if args.job else None
    model = args.model or (base.model if base else None)
    if model is None:
        raise JobError("MODEL", "no model given", "Pass the .onnx file, or --job JOB.json.")
    info = inspect_model(model, layout=args.layout or (base.preprocess.layout if base else "auto"))
    channels = info.image_input.channels if info.image_input else 3
    spec = spec_from_flags(args, channels, base.preprocess if base else None)
    task = task_from_flags(args, base.task if base else None)
    if base is None and args.resize is None:
        # Detectors and dense models see the whole picture: no centre crop.
        spec = replace(spec, resize=default_resize(detect_task(info, task.kind).kind))

    c = base.calibration if base else CalibrationSettings()
    calib = replace(
        c,
        folders=tuple(args.calib) if args.calib else c.folders,
        **{
            k: v
            for k, v in (
                ("max_images", args.max_images), ("seed", args.seed), ("method", args.method),
                ("batch_size", args.batch_size), ("percentile", args.percentile),
            )
            if v is not None
        },
    )
    if not 50 <= calib.percentile <= 100:
        raise JobError("--percentile", f"{calib.percentile} is outside 50..100", "e.g. --percentile 99.99")
    if not calib.folders:
        raise JobError("--calib", "no calibration folder given", "Pass --calib DIR with a few hundred representative images.")
    for flag, value in (("--max-images", calib.max_images), ("--batch-size", calib.batch_size)):
        if value < 1:
            raise JobError(flag, "must be at least 1")

    q = base.quantization if base else QuantSettings()
    qchanges = {
        k: v
        for k, v in (
            ("per_channel", args.per_channel),
            ("activation_type", args.activation_type),
            ("format", args.format),
            ("symmetric_activations", args.symmetric_activations),
            ("reduce_range", args.reduce_range),
            ("keep_float", args.keep_float),
            ("protect_outputs", args.protect_outputs),
            ("equalize", args.equalize),
            ("bias_correction", args.bias_correction),
            ("share_concat_ranges", args.share_concat_ranges),
            ("pad_channels", args.pad_channels),
            ("batch_one", args.batch_one),
            ("ort_optimized", args.ort_optimized),
        )
        if v is not None
    }
    if args.exclude:
        qchanges["exclude_nodes"] = _split(args.exclude)
    if args.exclude_op_types:
        qchanges["exclude_op_types"] = _split([args.exclude_op_types])
    quant = replace(q, **qchanges)

    e = base.evaluation if base else EvalSettings()
    echanges = {k: v for k, v in (("class_offset", args.class_offset), ("max_images", args.eval_max_images), ("latency_runs", args.latency_runs)) if v is not None}
    if args.eval:
        echanges["folders"] = tuple(args.eval)
    echanges.update(_labels(args))
    evaluation = replace(e, **echanges)

    tuning = base.tuning if base else TuningSettings()
    if args.max_drop is not None:
        if not 0 <= args.max_drop <= 100:
            raise JobError("--max-drop", f"{args.max_drop} is outside 0..100 points", "e.g. --max-drop 1.0")
        tuning = replace(tuning, max_drop=args.max_drop)
    if args.tune_minutes is not None:
        if args.tune_minutes <= 0:
            raise JobError("--tune-minutes", "must be more than 0", "e.g. --tune-minutes 10")
        tuning = replace(tuning, minutes=args.tune_minutes)

    target = target_from_flags(args, base.target if base else None)
    out = args.out or (base.output if base else None)
    if out is None:
        raise JobError("--out", "no output path given", "Pass --out MODEL.int8.onnx (MODEL.rknn for --target rknn).")
    report = args.report or (base.report if base else None)
    inputs = {**(base.inputs if base else {}), **_input_values(args.input_value)}
    cache = _cache_path(args, Path(out), base) if target.kind != "rknn" else None  # RKNN-Toolkit2 calibrates itself
    return Job(Path(model), Path(out), spec, calib, quant, evaluation, report, cache, inputs, task, tuning, target)


def target_from_flags(args, base: TargetSettings | None = None) -> TargetSettings:
    t = base or TargetSettings()
    changes = {k: v for k, v in (("kind", args.target), ("platform", args.rknn_platform), ("rknn_python", args.rknn_python),
                                 ("tensorrt_version", args.tensorrt_version)) if v is not None}
    try:
        return replace(t, **changes)
    except JobError as exc:
        raise JobError("--" + exc.field.split(".")[-1].replace("_", "-"), exc.detail, exc.fix) from None


def _input_values(items) -> dict[str, tuple[float, ...]]:
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
