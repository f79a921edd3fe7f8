"""A whole quantization job: prepare, calibrate, quantize, evaluate, write.

Nothing is written until everything succeeded: the model is built and
evaluated in a temporary folder, then moved into place atomically, then the
calibration cache and the report are written. A failure or a cancel at any
stage leaves no file behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import onnx

from .atomic import atomic_path, check_output_path
from .calibration import Calibration, calibrate
from .dataset import ReadLog, batches, iter_tensors, list_images, nothing_readable, seeded_order
from .errors import DatasetError, JobError, ModelError, OutputError
from .evaluate import evaluate_models, resolve_labels
from .feeds import make_feeds
from .graphprep import constants_to_initializers, flatten_gemm_biases, pre_process, upgrade_opset
from .job import Job, QuantSettings
from .modelinfo import ModelInfo, inspect_model, load_proto
from .ortquant import quantize_with_ranges, settings_warnings
from .outputform import apply_output_form, check_batch_one, shared_ranges
from .perlayer import per_layer_error, worst_nodes
from .preprocess import PreprocessSpec
from .progress import PREPARE, QUANTIZE, CancelToken, ProgressEvent, ProgressFn, no_progress
from .report import environment, now_iso, write_report
from .sessions import default_threads
from .strategies import StrategySettings, Target, compute_ranges


@dataclass(frozen=True)
class QuantResult:
    output: Path
    report: dict


@dataclass(frozen=True)
class Prepared:
    """The FP32 graph, ready for the quantizer, in the work folder."""

    path: Path
    model: onnx.ModelProto
    steps: tuple[str, ...]
    header: onnx.ModelProto  # the input's metadata, producer and doc strings (no graph)


def resolve_spec(spec: PreprocessSpec, info: ModelInfo) -> PreprocessSpec:
    """A job's preprocessing made concrete for this model, or a JobError."""
    ii = info.image_input
    assert ii is not None
    spec = spec.resolved(ii.layout, ii.size)
    if spec.channels != ii.channels:
        want = "gray" if ii.channels == 1 else "rgb or bgr"
        raise JobError(
            "preprocess.color",
            f"{spec.color.upper()} gives {spec.channels} channel(s) but the model's input {ii.name!r} takes {ii.channels}",
            f"Use {want} with {ii.channels} mean/std value(s).",
        )
    return spec


def check_model(info: ModelInfo) -> None:
    if info.blockers:
        raise ModelError(info.blockers[0])


def prepare(job: Job, info: ModelInfo, tmp: Path, progress: ProgressFn, cancel: CancelToken) -> Prepared:
    """Load, fix what real exporters get wrong, and run quant_pre_process.
    (Models over 2 GB were refused by inspection: everything fits in memory.)"""
    model = load_proto(job.model, load_external=True)
    header = _header(model)
    steps = []
    moved = constants_to_initializers(model)
    if moved:
        steps.append(f"moved {moved} Constant node(s) into initializers so their weights can be quantized")
    model, note = upgrade_opset(model, info.opset)
    if note:
        steps.append(note)
    source = tmp / "source.onnx"
    onnx.save(model, str(source))
    del model
    progress(ProgressEvent(PREPARE, 1, 3, "pre-processing (shape inference, optimization)"))
    cancel.check()
    path = tmp / "prepared.onnx"
    steps.append("quant_pre_process: " + pre_process(source, path))
    prepared = onnx.load(str(path))
    flattened = flatten_gemm_biases(prepared)
    if flattened:
        steps.append(f"reshaped {flattened} Gemm bias(es) from [1, N] to [N]")
        onnx.save(prepared, str(path))
    progress(ProgressEvent(PREPARE, 3, 3, "ready"))
    return Prepared(path, prepared, tuple(steps), header)


def build(prepared: Prepared, ranges: dict, settings: QuantSettings, out: Path) -> None:
    """ONNX Runtime writes the INT8 graph from our ranges."""
    try:
        quantize_with_ranges(prepared.path, out, ranges, settings, out.parent)
    except Exception as exc:  # noqa: BLE001 - ORT's quantizer raises anything
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"ONNX Runtime's quantizer failed: {text}",
            "Try keeping the failing node in float (exclude it), or the per-tensor or QOperator options.",
        ) from None


def quantize(
    job: Job, progress: ProgressFn = no_progress, cancel: CancelToken | None = None, overwrite: bool = False
) -> QuantResult:
    """Run ``job`` end to end. Raises UserError subclasses or Cancelled.

    An existing output is replaced only with ``overwrite``."""
    cancel = cancel or CancelToken()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    progress(ProgressEvent(PREPARE, 0, 3, "checking the model and settings"))
    if job.output is None:
        raise JobError("output", "no output path given", "Choose where to write the INT8 model.")
    check_output_path(job.model, job.output, overwrite)
    for extra in (job.report, job.cache):
        if extra is not None and os.path.abspath(extra) in (os.path.abspath(job.model), os.path.abspath(job.output)):
            raise OutputError(f"{extra} would overwrite the model or the output.", "Choose another file name.")
    info = inspect_model(job.model, layout=job.preprocess.layout)
    check_model(info)
    feeds = make_feeds(info, job.inputs)
    spec = resolve_spec(job.preprocess, info)
    ii = info.image_input
    check_batch_one(ii.fixed_batch, job.quantization.batch_one)
    calib_files = list_images(job.calibration.folders, "calibration")
    q = job.quantization
    warnings = settings_warnings(q)

    with tempfile.TemporaryDirectory(prefix="guiapp-") as tmpdir:
        tmp = Path(tmpdir)
        prepared = prepare(job, info, tmp, progress, cancel)
        present = {n.name for n in prepared.model.graph.node}
        missing = [n for n in q.exclude_nodes if n not in present]
        if missing:
            warnings.append(
                "nodes to keep in float not found after pre-processing (fused or renamed): " + ", ".join(missing[:10])
                + ". See per_layer in the report for the names ONNX Runtime quantizes."
            )
        timings["prepare"] = time.perf_counter() - t

        cancel.check()
        t = time.perf_counter()
        batch_size = ii.fixed_batch or job.calibration.batch_size
        cal = calibrate(
            prepared.model, job.model, feeds, spec, job.calibration, calib_files, batch_size, job.cache, progress, cancel
        )
        if cal.images == 0:
            raise nothing_readable(cal.skipped, "the calibration folder(s)", "Add readable JPEG or PNG images.")
        total = min(job.calibration.max_images, len(calib_files))
        if cal.images < total:
            warnings.append(f"only {cal.images} of {total} calibration images were readable.")
        timings["calibrate"] = time.perf_counter() - t

        # ---- quantize: ranges by strategy, ONNX Runtime writes the graph
        cancel.check()
        t = time.perf_counter()
        progress(ProgressEvent(QUANTIZE, 0, 3, "computing ranges and writing the INT8 graph"))
        target = Target(q.activation_type, q.symmetric_activations)
        ranges = compute_ranges(cal.stats, StrategySettings(job.calibration.method, job.calibration.percentile), target)
        ranges, form_notes = shared_ranges(prepared.model, ranges, q.share_concat_ranges)
        eval_files, eval_source, excluded = _evaluation_files(job, calib_files, cal)
        quantized = tmp / "quantized.onnx"
        build(prepared, ranges, q, quantized)
        progress(ProgressEvent(QUANTIZE, 1, 3, "per-layer error"))
        per_layer = _per_layer(job, q, prepared, quantized, ranges, spec, ii, feeds, eval_files, tmp, cancel)
        kept_float: list[str] = []
        if q.keep_float and per_layer:
            cancel.check()
            kept_float = worst_nodes(per_layer, q.keep_float)
            progress(ProgressEvent(QUANTIZE, 2, 3, f"re-quantizing with {len(kept_float)} layer(s) in float"))
            q = replace(q, exclude_nodes=(*q.exclude_nodes, *kept_float))
            build(prepared, ranges, q, quantized)
            per_layer = _per_layer(job, q, prepared, quantized, ranges, spec, ii, feeds, eval_files, tmp, cancel)
        cancel.check()
        final, formed = tmp / "final.onnx", tmp / "formed.onnx"
        form_notes += apply_output_form(quantized, formed, q.pad_channels, q.batch_one, q.ort_optimized)
        _carry_over_metadata(prepared.header, formed, final)
        progress(ProgressEvent(QUANTIZE, 3, 3, "done"))
        timings["quantize"] = time.perf_counter() - t

        # ---- evaluate (on the temporary file: a cancel here still writes nothing)
        cancel.check()
        t = time.perf_counter()
        labels = resolve_labels(job.evaluation, eval_files)
        ev = evaluate_models(
            job.model, final, {t.name: t.shape for t in info.outputs}, feeds, spec, eval_files, labels, job.evaluation, ii.fixed_batch or (1 if q.batch_one else None), progress, cancel,
            seed=job.calibration.seed,
        )
        ev["eval"].update({"source": eval_source, "excluded_calibration_overlap": excluded})
        timings["evaluate"] = time.perf_counter() - t

        report = {
            "created": now_iso(),
            "model": info.to_dict(),
            "output": str(job.output),
            "fp32": {"path": str(job.model), "size_bytes": info.size_bytes, "latency_ms": ev["latency_ms"]["fp32"]},
            "int8": {"path": str(job.output), "size_bytes": final.stat().st_size, "latency_ms": ev["latency_ms"]["int8"]},
            "accuracy": ev["accuracy"],
            "latency": ev["latency"],
            "agreement": ev["agreement"],
            "outputs": ev["outputs"],
            "per_layer": per_layer,
            "kept_float": kept_float,
            "eval": ev["eval"],
            "calibration": {
                "method": job.calibration.method,
                "images_used": cal.images,
                "images_skipped": len(cal.skipped),
                "skipped_files": [{"file": str(p), "reason": r} for p, r in cal.skipped],
                "seconds": cal.seconds,
                "tensors": len(cal.stats),
                "batch_size": batch_size,
                "cache_used": cal.cache_used,
                "cache": str(job.cache) if job.cache else None,
            },
            "preparation": [*prepared.steps, *form_notes],
            "preprocess": spec.to_dict(),
            "warnings": warnings + ev["warnings"],
            "timings_s": timings,
            "environment": environment(default_threads()),
            "job": job.to_dict(),
        }
        cancel.check()
        _place(final, job.output)
    if job.cache is not None:
        cal.save_cache(job.cache)
    if job.report is not None:
        write_report(report, job.report)
    return QuantResult(job.output, report)


def _per_layer(job, q, prepared, quantized, ranges, spec, ii, feeds, eval_files, tmp, cancel) -> list[dict]:
    """Per-layer error on a few held-out images; QOperator models are analysed
    through a QDQ twin with the same ranges and settings ``q``."""
    n = job.evaluation.per_layer_images
    if n <= 0:
        return []
    qdq = quantized
    if q.format != "qdq":
        qdq = tmp / "twin.qdq.onnx"
        build(prepared, ranges, replace(q, format="qdq"), qdq)
    stream = iter_tensors(seeded_order(eval_files, job.calibration.seed + 1), spec, n, ReadLog(), cancel)
    return per_layer_error(prepared.model, qdq, feeds, batches(stream, ii.fixed_batch or n), cancel)


def _evaluation_files(job: Job, calib_files: list[Path], cal: Calibration) -> tuple[list[Path], str, int]:
    """Evaluation images never include images used for calibration."""
    used = {os.path.realpath(p) for p in cal.used}
    unreadable = {os.path.realpath(p) for p, _ in cal.skipped}
    if job.evaluation.folders:
        files = list_images(job.evaluation.folders, "evaluation")
        held = [p for p in files if os.path.realpath(p) not in used]
        if not held:
            raise DatasetError("every evaluation image was used for calibration.", "Give an evaluation folder with other images.")
        return held, "evaluation folders", len(files) - len(held)
    excluded = used | unreadable
    held = [p for p in calib_files if os.path.realpath(p) not in excluded]
    if held:
        return held, "calibration folders, images not used for calibration", len(calib_files) - len(held)
    # Every image went into calibration: compare on them, and say so.
    return list(cal.used), "calibration images (no held-out images: numbers are optimistic)", 0


_HEADER_FIELDS = ("producer_name", "producer_version", "doc_string", "domain", "model_version")


def _header(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model's metadata_props, producer and doc strings, without its graph."""
    h = onnx.ModelProto()
    h.metadata_props.extend(model.metadata_props)
    for f in _HEADER_FIELDS:
        setattr(h, f, getattr(model, f))
    h.graph.doc_string = model.graph.doc_string
    return h


def _carry_over_metadata(header: onnx.ModelProto, quantized: Path, final: Path) -> None:
    """The output keeps the input's metadata_props, producer and doc strings
    (OCR models keep their character table there, for one)."""
    out = onnx.load(str(quantized))
    del out.metadata_props[:]
    out.metadata_props.extend(header.metadata_props)
    for f in _HEADER_FIELDS:
        setattr(out, f, getattr(header, f))
    out.graph.doc_string = header.graph.doc_string
    onnx.save(out, str(final))


def _place(final: Path, output: Path) -> None:
    """Move the finished model into place atomically."""
    try:
        with atomic_path(output) as part:
            shutil.copyfile(final, part)
    except OSError as exc:
        raise OutputError(f"cannot write {output}: {exc.strerror or exc}.", "Check free space and permissions.") from None
