"""Rockchip RKNN: RKNN-Toolkit2 builds the ``.rknn`` in a worker process with
its own Python (rknn_worker.py), calibrating on our preprocessed images with
its own algorithm; its PC simulator runs the evaluation images right after
the build, and the app compares them with FP32 (ONNX Runtime) through the same
fidelity code as every other target.

The toolkit never enters the app's process or environment: it pins torch,
onnx and numpy versions, and importing it changes the process (Qt variables,
LD_LIBRARY_PATH, sys.path, the main thread's name).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text, place_files
from ..context import QuantResult, RunContext
from ..data.preprocess import PreprocessSpec, normalize
from ..errors import ModelError
from ..evaluate.compare import Runners, compare_outputs, no_label_fits
from ..evaluate.comparison import noise_places
from ..evaluate.sessions import make_session
from ..fields import check_choice
from ..job import Job, QuantOption
from ..model.modelinfo import ModelInfo
from ..notes import Note
from ..progress import EVALUATE, QUANTIZE, ProgressEvent, ProgressFn
from ..report.document import base_report
from ..report.summary import write_report
from .base import Target
from .rknn_board import board_snippet
from .rknn_files import EvalPixels, Files, evaluation_pixels, worker_job, write_calibration
from .rknn_toolkit import WORKER, availability, find_python, found
from .worker import WorkerError, run_worker

# Our strategies -> the toolkit's quantized_algorithm; the others have no counterpart.
ALGORITHMS = {"minmax": "normal", "entropy": "kl_divergence", "mse": "mmse"}
# RKNN-Toolkit2 2.5.0's target_platform values (its config() docstring).
PLATFORMS = ("rk3588", "rk3576", "rk3568", "rk3566", "rk3562", "rv1106", "rv1106b", "rv1103", "rv1103b", "rv1126b", "rk2118")


@dataclass(frozen=True)
class RknnOptions:
    platform: str = "rk3588"  # the chip
    python: Path | None = None  # a Python with rknn-toolkit2 (None: $GUIAPP_RKNN_PYTHON, then the default env)

    def __post_init__(self) -> None:
        check_choice("target.rknn.platform", self.platform, PLATFORMS, "RKNN platform")


def refuses(job: Job) -> str:
    method = job.calibration.method
    if job.tuning.max_drop is not None:
        return ("the accuracy-target search tries ONNX Runtime INT8 models; RKNN-Toolkit2 quantizes on its own. "
                "Search with the onnxruntime target, or quantize for RKNN without a target (no --max-drop).")
    if job.quantization.equalize or job.quantization.bias_correction:
        return "equalization and bias correction are not passed to RKNN-Toolkit2: turn them off for the rknn target."
    if job.quantization.ort_optimized or job.quantization.batch_one:
        return ("the ONNX Runtime output form (optimized graph, batch of 1) does not apply to an .rknn file "
                "(RKNN-Toolkit2 fixes the input shape itself): turn those options off for the rknn target.")
    if method not in ALGORITHMS:
        return f"RKNN-Toolkit2 has no counterpart of the {method} strategy: choose minmax (its normal), entropy (kl_divergence) or mse (mmse)."
    return ""


def toolkit_config(job: Job, options: RknnOptions, spec: PreprocessSpec) -> dict:
    """Our settings in the toolkit's words."""
    return {
        # Mean and std in the model's channel order, pixel units: RKNN's own convention.
        "mean_values": [list(spec.mean)],
        "std_values": [list(spec.std)],
        # Calibration PNGs are RGB; the toolkit swaps them for a BGR model.
        "quant_img_RGB2BGR": spec.color == "bgr",
        "target_platform": options.platform,
        "quantized_algorithm": ALGORITHMS[job.calibration.method],
        "quantized_method": "channel" if job.quantization.per_channel else "layer",
    }


def check(job: Job, info: ModelInfo) -> None:
    if info.extra_inputs:
        raise ModelError("the RKNN target takes models whose only input is the image.", "Use the ONNX Runtime target for this model.")


def _progress_relay(progress: ProgressFn, log: list[str]):
    phases = {"load": (QUANTIZE, "loading the model"), "build": (QUANTIZE, "RKNN build"),
              "analyse": (QUANTIZE, "per-layer accuracy analysis"), "simulate": (EVALUATE, "INT8 on the PC simulator")}

    def relay(message: dict) -> None:
        if "log" in message:
            log.append(str(message["log"]))
            p = phases["build"]
            progress(ProgressEvent(p[0], 0, 0, p[1], log=str(message["log"])))
            return
        p = message.get("progress") or {}
        stage, text = phases.get(p.get("phase"), phases["build"])
        detail = f": {p['message']}" if p.get("message") else ""
        progress(ProgressEvent(stage, int(p.get("done", 0)), int(p.get("total", 0)), f"{text}{detail}"))

    return relay


def _per_layer_rows(rows: list[dict]) -> list[dict]:
    """accuracy_analysis's rows in the report's per-layer shape, worst first."""
    out = [{"name": r["name"], "kind": "activation", "node": r["name"], "op_type": r["op_type"], "sqnr_db": r.get("sqnr_db"),
            "cosine": r.get("cosine"), "cosine_single": r.get("cosine_single")}
           for r in rows if r.get("cosine") is not None or r.get("sqnr_db") is not None]
    out.sort(key=lambda r: (r["sqnr_db"] is None, r["sqnr_db"] if r["sqnr_db"] is not None else 0.0))
    return out


def run(ctx: RunContext) -> QuantResult:
    """Build the job's model for an RKNN NPU, check it on the PC simulator,
    write the .rknn and the board snippet. Nothing is written on failure."""
    job = ctx.job
    options = TARGET.options_of(job.target)
    notes = []
    if job.quantization.exclude_nodes:
        notes.append(Note("target.rknn_exclusions", "nodes to keep in float are not passed to RKNN-Toolkit2 (its hybrid "
                                                    "quantization is not driven by this app); they were quantized."))
    config = toolkit_config(job, options, ctx.spec)
    with ctx.timed("calibrate"):
        files = write_calibration(ctx)
        eval_files, source, excluded = ctx.evaluation_files(files.calib_used, files.calib_skipped)
        pixels = evaluation_pixels(ctx, eval_files)
    with ctx.timed("quantize"):  # the build, the analysis and the simulator runs
        result = _build(ctx, find_python(options), worker_job(ctx, config, files, pixels))
    with ctx.timed("evaluate"):
        ev = _compare(ctx, pixels, result)
    built = ctx.tmp / "model.rknn"
    ev["eval"] = {
        "images_used": len(pixels.used), "images_skipped": len(pixels.log.skipped),
        "skipped_files": [{"file": str(p), "reason": r} for p, r in pixels.log.skipped],
        "labels": None if ctx.labels is None else ctx.labels.source, "source": source,
        "excluded_calibration_overlap": excluded,
    }
    board = board_path(job.output)
    sections = {
        "per_layer": _per_layer_rows(result.get("per_layer") or []),
        "calibration": _calibration_section(job, files, result),
        "target": {
            "kind": "rknn", "title": TARGET.title, "python": str(find_python(options)),
            "rknn_toolkit2": result.get("rknn_toolkit2"), **config,
            "checked_in": "RKNN-Toolkit2's PC simulator (INT8 outputs), against FP32 in ONNX Runtime",
            "simulator_ms_per_image": result.get("ms_per_image"),
            "per_layer_images": len(pixels.analysis),
            "board_snippet": str(board),
            "log": result["log"][-200:],
        },
    }
    said = Note("target.rknn_latency", "latency is not measurable without a board: the PC simulator is a functional model "
                                       "of the NPU, not a timing one. Run the board snippet with rknn_lite's perf tools on "
                                       "the device.")
    report = base_report(ctx.facts(built.stat().st_size), ev, sections, [*ctx.notes, *notes, said])
    ctx.cancel.check()
    place_files([(built, job.output)])
    atomic_write_text(board, board_snippet(job, options.platform, ctx.spec, ctx.task, job.output.name))
    if job.report is not None:
        write_report(report, job.report)
    return QuantResult(job.output, report, ev["samples"])


def _calibration_section(job: Job, files: Files, result: dict) -> dict:
    return {
        "method": job.calibration.method, "images_used": len(files.calib_used),
        "images_skipped": len(files.calib_skipped),
        "skipped_files": [{"file": str(p), "reason": r} for p, r in files.calib_skipped],
        "seconds": result.get("build_seconds", 0.0), "tensors": None, "batch_size": 1, "cache_used": False, "cache": None,
    }


def _build(ctx: RunContext, python: Path, job: dict) -> dict:
    """The worker's result (its log under "log"), or a ModelError in words."""
    log: list[str] = []
    try:
        result = run_worker([str(python), str(WORKER)], job, ctx.tmp, _progress_relay(ctx.progress, log), ctx.cancel,
                            "RKNN-Toolkit2's worker")
    except WorkerError as exc:
        crashed = "without a result" in str(exc)  # no error of its own: its log says more
        said = " ".join(line.strip().splitlines()[-1] for line in log if line.startswith("E "))[-400:] if crashed else ""
        raise ModelError(
            f"RKNN-Toolkit2 could not build the model: {exc}" + (f" (it said: {said})" if said else ""),
            "A model the toolkit cannot convert usually needs a re-export (static shapes, operators it supports).",
        ) from None
    return {**result, "log": log}


def _compare(ctx: RunContext, pixels: EvalPixels, result: dict) -> dict:
    """FP32 in ONNX Runtime vs the simulator's outputs, image by image."""
    stored = np.load(pixels.path, mmap_mode="r")
    outputs = [np.load(p, mmap_mode="r") for p in result.get("outputs") or []]
    session = make_session(ctx.job.model)
    names = [o.name for o in session.get_outputs()]
    if len(outputs) != len(names):
        raise ModelError(f"the simulator gave {len(outputs)} output(s) where the model has {len(names)}.")
    used, n = pixels.used, len(pixels.used)
    batch = ctx.fixed_batch or 16
    cursor = [0]
    shapes: list[tuple] = []

    def run_fp32(feed):
        out = session.run(names, feed)
        shapes[:] = [o.shape for o in out]
        return out

    def batches():
        for s in range(0, n, batch):
            chunk = np.stack([normalize(np.asarray(stored[i]), ctx.spec) for i in range(s, min(n, s + batch))])
            yield used[s : s + len(chunk)], chunk

    def run_int8(feed):
        k = len(feed[ctx.feeds.image])
        s, cursor[0] = cursor[0], cursor[0] + k
        # Stored per image as the simulator gave them ([N, 1, ...]); its layout of an
        # output may differ from ONNX Runtime's by unit axes: shaped as FP32's when the sizes agree.
        got = [np.asarray(o[s : s + k]) for o in outputs]
        return [g.reshape(want) if g.size == int(np.prod(want)) else g for g, want in zip(got, shapes)]

    plan = ctx.eval_plan(used)
    ev = compare_outputs(Runners(run_fp32, run_int8, names), plan, batches(), n, ctx.progress, ctx.cancel,
                         noisy=noise_places(used, plan))
    ev["warnings"] = list(ev.pop("shape_warnings")) + no_label_fits(plan, ev)
    return ev


def board_path(output: Path) -> Path:
    return output.with_name(output.name.removesuffix(".rknn") + "_board.py")


TARGET = Target(
    kind="rknn",
    title="Rockchip RKNN (NPU)",
    suffix=".rknn",
    summary="A .rknn model for Rockchip NPUs, built by RKNN-Toolkit2 in its own Python and checked on its PC simulator.",
    run=run,
    options=RknnOptions,
    honours=frozenset({QuantOption.PER_CHANNEL}),
    availability=availability,
    found=found,
    refuses=refuses,
    check=check,
    companions=lambda output: [board_path(output)],
    uses_cache=False,  # RKNN-Toolkit2 calibrates on its own
    note="RKNN-Toolkit2 calibrates on the same preprocessed images with its own algorithm (minmax → normal, "
         "entropy → kl_divergence, mse → mmse, about 6 minutes); its PC simulator gives the accuracy. "
         "Activation type, format and nodes in float do not apply.",
)
