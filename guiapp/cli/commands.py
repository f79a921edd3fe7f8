"""Command line: the same engine as the wizard, over argparse (exit codes
in cli_exits.py)."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import tempfile
import traceback
from dataclasses import replace
from pathlib import Path

from .. import APP_NAME
from . import normcheck
from .exits import EXIT_CANCELLED, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, SigintCancels
from .flags import executor_from_flags, input_values, job_from_args, labels_from_flag, model_from_flags, size_flag
from .parser import build_parser
from ..core.errors import Cancelled, StudioError, UserError
from ..core.job import EvalSettings, Job
from ..core.notes import texts
from ..core.report.summary import (
    broken_warning, format_table, headline_text, latency_line, per_layer_table, run_summary, summary_rows, write_report,
)
from ..core.tasks import detect_task
from .terminal import ProgressBar




# ---------------------------------------------------------------- commands


def cmd_inspect(args) -> int:
    from ..core.model.modelinfo import inspect_model

    info = inspect_model(args.model, layout=args.layout, size=size_flag(args.size) if args.size else None)
    task = detect_task(info)
    if args.json:
        print(json.dumps({**info.to_dict(), "task": task.to_dict()}, indent=2, default=str))
    else:
        print("\n".join(info.summary_lines()))
        print(f"Task       {task.kind}: {task.reason}")
    return EXIT_OK


def _run_job(job: Job, overwrite: bool, executor=None) -> dict:
    from ..core.run import quantize
    from ..core.targets.registry import TARGETS

    early = texts(TARGETS[job.target.kind].advice(job.quantization))
    for w in early:
        print(f"warning: {w}", file=sys.stderr)
    bar = ProgressBar()
    with SigintCancels() as cancel:
        try:
            result = quantize(job, bar, cancel, overwrite=overwrite, executor=executor)
        finally:
            bar.close()
    for w in texts(result.report["warnings"]):
        if w not in early:
            print(f"warning: {w}", file=sys.stderr)
    return result.report


def cmd_quantize(args) -> int:
    job = job_from_args(args)
    if args.save_job:
        job.save(args.save_job)
    report = _run_job(job, overwrite=args.force, executor=executor_from_flags(args))
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
    from ..core.targets.registry import TARGETS

    cal = report["calibration"]
    files = [str(job.output), *(str(p) for p in TARGETS[job.target.kind].companions(job.output))]
    if cal.get("cache") and not cal.get("cache_used"):
        files.append(f"{cal['cache']} (calibration cache)")
    if job.report:
        files.append(str(job.report))
    return "Wrote " + (", ".join(files[:-1]) + " and " + files[-1] if len(files) > 1 else files[0])


def cmd_evaluate(args) -> int:
    from ..core.data.dataset import list_images
    from ..core.evaluate.compare import EvalPlan, evaluate_models, resolve_labels
    from ..core.model.feeds import make_feeds
    from ..core.model.modelinfo import inspect_model
    from ..core.parallel import make_executor
    from ..core.tasks import EvalContext

    info, task_settings, task, spec = model_from_flags(args, args.fp32)
    feeds = make_feeds(info, input_values(args.input_value))
    int8_info = inspect_model(args.int8)  # a clear error if the INT8 file is broken
    settings = replace(
        EvalSettings(folders=tuple(args.images)),
        **{k: v for k, v in (("class_offset", args.class_offset), ("max_images", args.eval_max_images), ("latency_runs", args.latency_runs)) if v is not None},
        **labels_from_flag(args),
    )
    files = list_images(settings.folders, "evaluation")
    labels = resolve_labels(settings, files)
    context = EvalContext(task_settings.options_for(task.kind), labels, settings.class_offset, spec)
    plan = EvalPlan(files, task, context, feeds, {t.name: t.shape for t in info.outputs}, info.image_input.fixed_batch,
                    settings.max_images, settings.latency_runs, args.seed, noise_images=settings.noise_images)
    bar = ProgressBar()
    with SigintCancels() as cancel, contextlib.closing(make_executor(executor_from_flags(args))) as pool:
        try:
            ev = evaluate_models(args.fp32, args.int8, plan, bar, cancel, pool)
        finally:
            bar.close()
    latency = ev["latency_ms"] or {}  # --latency-runs 0: not timed
    report = {
        "fp32": {"path": str(args.fp32), "size_bytes": info.size_bytes, "latency_ms": latency.get("fp32")},
        "int8": {"path": str(args.int8), "size_bytes": int8_info.size_bytes, "latency_ms": latency.get("int8")},
        **{k: ev[k] for k in ("task", "fidelity", "latency", "accuracy", "agreement", "outputs", "eval")},
        "warnings": [n.to_dict() for n in ev["warnings"] + broken_warning(ev["fidelity"]["headline"])],
        "preprocess": spec.to_dict(),
    }
    for w in texts(report["warnings"]):
        print(f"warning: {w}", file=sys.stderr)
    print(_headline(report) + format_table(summary_rows(report)))
    print(latency_line(report))
    if args.report:
        write_report(report, args.report)
    return EXIT_OK


def cmd_batch(args) -> int:
    from ..core.batch import collect_jobs, run_batch, write_index
    from ..core.parallel import make_executor

    items = collect_jobs(args.jobs)
    if not items:
        raise UserError("no job files found.", "Give job files (.json, .qsjob) or folders that hold them.")
    index = args.index or items[0].source.parent / "batch-index.json"
    executor = make_executor(executor_from_flags(args))
    try:
        with SigintCancels() as cancel:
            rows = run_batch(items, executor, cancel, args.force, on_line=lambda line: print(line, flush=True))
    finally:
        executor.close()
    written = write_index(rows, index)
    ok = sum(r["status"] == "ok" for r in rows)
    print(f"{ok} of {len(rows)} jobs succeeded. Index: {written[0]} and {written[1]}")
    return EXIT_OK if ok == len(rows) else EXIT_INTERNAL


def cmd_demo(args) -> int:
    from ..core.demo import demo_job

    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="guiapp-demo-"))
    job = demo_job(out_dir)
    print(f"{APP_NAME} demo: quantizing {job.model.name} (a small RGB shape classifier) to INT8", file=sys.stderr)
    report = _run_job(job, overwrite=True)  # the demo's own folder
    print(_headline(report) + format_table(summary_rows(report)))
    print(latency_line(report))
    print(f"\nINT8 model: {job.output}\nReport:     {job.report}")
    return EXIT_OK


COMMANDS = {"inspect": cmd_inspect, "quantize": cmd_quantize, "evaluate": cmd_evaluate, "demo": cmd_demo, "batch": cmd_batch,
            "check-norm": normcheck.run}


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
