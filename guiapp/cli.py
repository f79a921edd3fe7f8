"""Command line: the same engine as the wizard, over argparse.

Exit codes: 0 success; 2 bad input or usage (one line naming the problem and
the fix); 1 internal error; 130 cancelled (Ctrl-C), with nothing written;
3 (check-norm only) a clearly better preprocessing exists.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import tempfile
import traceback
from dataclasses import replace
from pathlib import Path

from . import APP_NAME, __version__, cli_normcheck
from .core.calibrate.calibcache import default_path
from .core.errors import Cancelled, JobError, StudioError, UserError
from .core.job import ACTIVATION_TYPES, FORMATS, METHODS, CalibrationSettings, EvalSettings, Job, QuantSettings, TuningSettings
from .core.data.preprocess import COLORS, INTERPOLATIONS, LAYOUTS, PRESETS, RESIZES, PreprocessSpec, preset, with_preset
from .core.progress import CancelToken
from .core.report.summary import (
    broken_warning, format_table, headline_text, latency_line, per_layer_table, run_summary, summary_rows, write_report,
)
from .core.tasks import TASK_KINDS, TaskSettings, default_resize, detect_task
from .core.tasks.detection_layout import BOX_FORMATS
from .core.targets.base import RKNN_PLATFORMS, TARGET_KINDS, TargetSettings
from .terminal import ProgressBar

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130


# ---------------------------------------------------------------- parser


def _preprocess_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("preprocessing (mean/std in pixel units 0..255: out = (pixel - mean) / std)")
    g.add_argument("--preset", choices=list(PRESETS), help="normalization preset (default: imagenet)")
    g.add_argument("--mean", metavar="M1,M2,M3", help="per-channel mean in pixel units, overrides the preset's")
    g.add_argument("--std", metavar="S1,S2,S3", help="per-channel std in pixel units, overrides the preset's")
    g.add_argument("--color", choices=COLORS, help="channel order the model expects")
    g.add_argument("--layout", choices=LAYOUTS, help="image input layout (default: detected)")
    g.add_argument("--resize", choices=RESIZES, help="resize policy (default: shorter = resize shorter side, centre-crop)")
    g.add_argument("--resize-shorter", type=int, metavar="N", help="shorter side before the crop (default: size*256/224)")
    g.add_argument("--size", metavar="HxW", help="input size, needed when the model's height/width are dynamic")
    g.add_argument("--interpolation", choices=list(INTERPOLATIONS), help="resampling filter (default: bilinear)")
    g.add_argument("--pad-value", type=int, metavar="V", help="letterbox fill in pixel units (default: 0)")
    g.add_argument("--input-value", action="append", metavar="NAME=V[,V...]",
                   help="a constant for a model input besides the image (repeatable); one value fills it")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guiapp", description=f"{APP_NAME}: FP32 ONNX image models to fast, accurate INT8.")
    parser.add_argument("--version", action="version", version=f"{APP_NAME} {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("inspect", help="show a model's inputs, outputs, operators and blockers")
    p.add_argument("model", type=Path)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--layout", choices=LAYOUTS, default="auto")

    p = sub.add_parser("quantize", help="calibrate and quantize a model to INT8, then evaluate it")
    p.add_argument("model", type=Path, nargs="?", help="FP32 .onnx model (or give --job)")
    p.add_argument("--calib", type=Path, action="append", metavar="DIR", help="calibration image folder (repeatable)")
    p.add_argument("--out", type=Path, metavar="OUT.onnx", help="where to write the INT8 model")
    _preprocess_flags(p)
    g = p.add_argument_group("calibration and quantization")
    g.add_argument("--method", choices=METHODS, help="calibration strategy (default: minmax)")
    g.add_argument("--percentile", type=float, metavar="P", help="for --method percentile (default 99.99)")
    pc = g.add_mutually_exclusive_group()
    pc.add_argument("--per-channel", dest="per_channel", action="store_true", default=None, help="per-channel weights (default)")
    pc.add_argument("--per-tensor", dest="per_channel", action="store_false", help="one scale per weight tensor")
    g.add_argument("--activation-type", choices=ACTIVATION_TYPES, help="default uint8 (int8 is slower on x86)")
    g.add_argument("--format", choices=FORMATS, help="QDQ (default) or QOperator")
    g.add_argument("--symmetric-activations", action="store_true", default=None)
    g.add_argument("--reduce-range", action="store_true", default=None, help="7-bit weights, for x86 CPUs without VNNI")
    share = g.add_mutually_exclusive_group()
    share.add_argument("--share-concat-ranges", dest="share_concat_ranges", action="store_true", default=None,
                       help="Concat inputs read only by the Concat take its range: it copies instead of requantizing (default)")
    share.add_argument("--separate-concat-ranges", dest="share_concat_ranges", action="store_false",
                       help="every Concat input keeps its own range")
    pad = g.add_mutually_exclusive_group()
    pad.add_argument("--pad-channels", dest="pad_channels", action="store_true", default=None,
                     help="pad convolutions' input channels to a multiple of 4: same outputs, ONNX Runtime's fast x86 kernel (default)")
    pad.add_argument("--no-pad-channels", dest="pad_channels", action="store_false", help="leave channel counts as they are")
    g.add_argument("--batch-one", action="store_true", default=None, help="fix the INT8 model's batch size to 1 (you run one image at a time)")
    form = g.add_mutually_exclusive_group()
    form.add_argument("--ort-optimized", dest="ort_optimized", action="store_true", default=None,
                     help="write the graph as ONNX Runtime optimizes it (fused QLinear ops; loads in ONNX Runtime only)")
    form.add_argument("--portable", dest="ort_optimized", action="store_false", help="write the plain QDQ/QOperator graph")
    g.add_argument("--exclude", action="append", metavar="NODE[,NODE...]", help="nodes to keep in float")
    g.add_argument("--exclude-op-types", metavar="OP[,OP...]", help="operator types to keep in float")
    g.add_argument("--max-images", type=int, metavar="N", help="calibration images to use (default 200)")
    g.add_argument("--seed", type=int, metavar="S", help="seed for picking calibration images (default 0)")
    g.add_argument("--batch-size", type=int, metavar="B", help="calibration batch (default 8; 1 for fixed-batch models)")
    g.add_argument("--keep-float", type=int, metavar="N", help="re-quantize with the N worst layers (per-layer SQNR) in float")
    g.add_argument("--per-layer", action="store_true", help="print the per-layer error table, worst first")
    g.add_argument("--equalize", action="store_true", default=None,
                   help="cross-layer equalization before calibrating (helps per-tensor weights)")
    g.add_argument("--bias-correction", action="store_true", default=None,
                   help="absorb the weights' quantization shift into the biases (helps per-tensor weights)")
    g.add_argument("--max-drop", type=float, metavar="X",
                   help="accuracy target: search for the fastest INT8 model at most X points below FP32 on the task's "
                        "headline metric (top-1 with labels; agreement, detection F1 or mask IoU vs FP32 without)")
    g.add_argument("--tune-minutes", type=float, metavar="M", help="time budget of the --max-drop search (default 10)")
    g.add_argument("--no-protect-outputs", dest="protect_outputs", action="store_false", default=None,
                   help="do not keep output tails that INT8 would crush (mixed-range concats, sigmoid/softmax outputs) in float")
    _eval_flags(p)
    g = p.add_argument_group("deployment target")
    g.add_argument("--target", choices=TARGET_KINDS,
                   help="runtime to build for (default onnxruntime); rknn writes a .rknn (give --out M.rknn), openvino adds "
                        "the IR (.xml/.bin), tensorrt a symmetric QDQ model and a calibration cache")
    g.add_argument("--rknn-platform", choices=RKNN_PLATFORMS, help="rknn: the Rockchip chip (default rk3588)")
    g.add_argument("--rknn-python", type=Path, metavar="PYTHON",
                   help="rknn: a Python with rknn-toolkit2 (default: $GUIAPP_RKNN_PYTHON, then what scripts/rknn-env made)")
    g.add_argument("--tensorrt-version", metavar="X.Y.Z", help="tensorrt: version named in the calibration cache (default 10.3.0)")
    g = p.add_argument_group("files")
    g.add_argument("--report", type=Path, metavar="REPORT.json", help="write the full report as JSON")
    g.add_argument("--force", action="store_true", help="replace an existing output file")
    cache = g.add_mutually_exclusive_group()
    cache.add_argument("--cache", type=Path, metavar="FILE", help="calibration cache (default: beside the job file or the output)")
    cache.add_argument("--no-cache", action="store_true", help="neither read nor write a calibration cache")
    g.add_argument("--job", type=Path, metavar="JOB.json", help="read settings from a job file (flags override it)")
    g.add_argument("--save-job", type=Path, metavar="JOB.json", help="save the settings as a job file")

    p = sub.add_parser("evaluate", help="compare an FP32 model and its INT8 version on images")
    p.add_argument("fp32", type=Path)
    p.add_argument("int8", type=Path)
    p.add_argument("--images", type=Path, action="append", required=True, metavar="DIR")
    _preprocess_flags(p)
    _eval_flags(p, prefix=False)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report", type=Path, metavar="R.json")

    cli_normcheck.add_parser(sub, _preprocess_flags)

    p = sub.add_parser("demo", help="quantize the bundled demo model end to end")
    p.add_argument("--out-dir", type=Path, metavar="DIR", help="where to write the demo's outputs (default: a new temp folder)")
    return parser


def _eval_flags(p: argparse.ArgumentParser, prefix: bool = True) -> None:
    g = p.add_argument_group("evaluation")
    if prefix:
        g.add_argument("--eval", type=Path, action="append", metavar="DIR", help="evaluation image folder (repeatable)")
    g.add_argument("--labels", metavar="CSV|subfolders|yolo|DIR|JSON",
                   help="class labels: a CSV (file + class_index or label) or 'subfolders'; box labels: 'yolo' (.txt beside "
                        "the images or in a parallel labels/ folder), a folder of YOLO .txt files, or a COCO .json")
    g.add_argument("--task", choices=TASK_KINDS, help="what the model does (default: auto, decided from its outputs)")
    g.add_argument("--box-format", choices=BOX_FORMATS, help="detectors: how box values read (default: auto)")
    g.add_argument("--score-threshold", type=float, metavar="S", help="detectors: count boxes from this score on (default 0.25)")
    g.add_argument("--nms-iou", type=float, metavar="T", help="detectors: NMS overlap threshold (default 0.45)")
    g.add_argument("--class-offset", type=int, metavar="K", help="model index = class index + K (1 for a background class)")
    g.add_argument("--eval-max-images" if prefix else "--max-images", dest="eval_max_images", type=int, metavar="N")
    g.add_argument("--latency-runs", type=int, metavar="N", help="timed runs per model (default 50)")


# ---------------------------------------------------------------- settings from flags


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


# ---------------------------------------------------------------- commands


def cmd_inspect(args) -> int:
    from .core.model.modelinfo import inspect_model

    info = inspect_model(args.model, layout=args.layout)
    task = detect_task(info)
    if args.json:
        print(json.dumps({**info.to_dict(), "task": task.to_dict()}, indent=2, default=str))
    else:
        print("\n".join(info.summary_lines()))
        print(f"Task       {task.kind}: {task.reason}")
    return EXIT_OK


def _run_job(job: Job, overwrite: bool) -> dict:
    from .core.quantize.ortquant import settings_warnings
    from .core.pipeline import quantize

    early = settings_warnings(job.quantization) if job.target.kind == "onnxruntime" else []
    for w in early:
        print(f"warning: {w}", file=sys.stderr)
    bar = ProgressBar()
    with _sigint_cancels() as cancel:
        try:
            result = quantize(job, bar, cancel, overwrite=overwrite)
        finally:
            bar.close()
    for w in result.report["warnings"]:
        if w not in early:
            print(f"warning: {w}", file=sys.stderr)
    return result.report


def cmd_quantize(args) -> int:
    job = job_from_args(args)
    if args.save_job:
        job.save(args.save_job)
    report = _run_job(job, overwrite=args.force)
    if args.per_layer:
        print(per_layer_table(report["per_layer"]) + "\n")
    print(_headline(report) + format_table(summary_rows(report)))
    print(latency_line(report))
    print("\n" + run_summary(report))
    print(_written(job, report))
    return EXIT_OK


def _headline(report: dict) -> str:
    """The task's headline number (and the target's verdict) above the table."""
    text = headline_text(report)
    tuning = report.get("tuning")
    if tuning:
        t = tuning["target"]
        verdict = ("target met" if tuning["met"] else f"target MISSED by {tuning['missed_by_points']:.1f} points")
        text = f"{verdict} (at least {t['required'] * 100:.1f}% needed, {len(tuning['trials'])} trials); " + text
    return f"{text}\n\n" if text else ""


def _written(job: Job, report: dict) -> str:
    """Every file the run wrote: the model (and the target's files beside it),
    the calibration cache (unless the run reused it) and the report."""
    from .core.targets.registry import TARGETS

    cal = report["calibration"]
    files = [str(job.output), *(str(p) for p in TARGETS[job.target.kind].companions(job.output))]
    if cal.get("cache") and not cal.get("cache_used"):
        files.append(f"{cal['cache']} (calibration cache)")
    if job.report:
        files.append(str(job.report))
    return "Wrote " + (", ".join(files[:-1]) + " and " + files[-1] if len(files) > 1 else files[0])


def cmd_evaluate(args) -> int:
    from .core.data.dataset import list_images
    from .core.evaluate.compare import evaluate_models, resolve_labels
    from .core.model.modelinfo import inspect_model
    from .core.model.feeds import make_feeds
    from .core.pipeline import resolve_spec

    info = inspect_model(args.fp32, layout=args.layout or "auto")
    feeds = make_feeds(info, _input_values(args.input_value))  # a ModelError when there is no image input
    int8_info = inspect_model(args.int8)  # a clear error if the INT8 file is broken
    task_settings = task_from_flags(args)
    task = detect_task(info, task_settings.kind)
    spec = spec_from_flags(args, info.image_input.channels)
    if args.resize is None:
        spec = replace(spec, resize=default_resize(task.kind))
    spec = resolve_spec(spec, info)
    settings = replace(
        EvalSettings(folders=tuple(args.images)),
        **{k: v for k, v in (("class_offset", args.class_offset), ("max_images", args.eval_max_images), ("latency_runs", args.latency_runs)) if v is not None},
        **_labels(args),
    )
    files = list_images(settings.folders, "evaluation")
    labels = resolve_labels(settings, files)
    bar = ProgressBar()
    with _sigint_cancels() as cancel:
        try:
            ev = evaluate_models(args.fp32, args.int8, {t.name: t.shape for t in info.outputs}, feeds, spec, files,
                                 labels, settings, info.image_input.fixed_batch, bar, cancel, seed=args.seed,
                                 task=task, task_settings=task_settings)
        finally:
            bar.close()
    report = {
        "fp32": {"path": str(args.fp32), "size_bytes": info.size_bytes, "latency_ms": ev["latency_ms"]["fp32"]},
        "int8": {"path": str(args.int8), "size_bytes": int8_info.size_bytes, "latency_ms": ev["latency_ms"]["int8"]},
        **{k: ev[k] for k in ("task", "fidelity", "latency", "accuracy", "agreement", "outputs", "eval")},
        "warnings": ev["warnings"] + broken_warning(ev["fidelity"]["headline"]),
        "preprocess": spec.to_dict(),
    }
    for w in report["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    print(_headline(report) + format_table(summary_rows(report)))
    print(latency_line(report))
    if args.report:
        write_report(report, args.report)
    return EXIT_OK


def cmd_demo(args) -> int:
    from .core.demo import demo_job

    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="guiapp-demo-"))
    job = demo_job(out_dir)
    print(f"{APP_NAME} demo: quantizing {job.model.name} (a small RGB shape classifier) to INT8", file=sys.stderr)
    report = _run_job(job, overwrite=True)  # the demo's own folder
    print(_headline(report) + format_table(summary_rows(report)))
    print(latency_line(report))
    print(f"\nINT8 model: {job.output}\nReport:     {job.report}")
    return EXIT_OK


class _sigint_cancels:
    """First Ctrl-C: cancel at the next batch. Second: stop at once."""

    def __enter__(self) -> CancelToken:
        self.token = CancelToken()
        self.previous = None
        try:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread
            pass
        return self.token

    def _handle(self, signum, frame) -> None:
        if self.token.cancelled:
            raise KeyboardInterrupt
        self.token.cancel()
        print("\ncancelling (Ctrl-C again to stop at once)...", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


COMMANDS = {"inspect": cmd_inspect, "quantize": cmd_quantize, "evaluate": cmd_evaluate, "demo": cmd_demo,
            "check-norm": cli_normcheck.run}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    _quiet_libraries(args.debug)
    try:
        return COMMANDS[args.command](args)
    except (Cancelled, KeyboardInterrupt):
        print("cancelled; nothing was written.", file=sys.stderr)
        return EXIT_CANCELLED
    except UserError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StudioError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if args.debug:
            traceback.print_exc()
        print(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)", file=sys.stderr)
        return EXIT_INTERNAL


def _quiet_libraries(debug: bool) -> None:
    """ONNX Runtime's quantizer logs advice meant for script authors; keep it
    out of our output unless debugging."""
    logging.basicConfig(level=logging.INFO if debug else logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    try:
        import onnxruntime

        onnxruntime.set_default_logger_severity(0 if debug else 3)
    except Exception:  # noqa: BLE001
        pass
