"""A whole quantization job: prepare, calibrate, quantize, evaluate, write.

Nothing is written until everything succeeded: the model is built and
evaluated in a temporary folder, then moved into place atomically, then the
report is written. A failure or a cancel at any stage leaves no output.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from .atomic import atomic_path, check_output_path
from .calibration import collect
from .dataset import ReadLog, batches, iter_tensors, list_images, seeded_order
from .errors import DatasetError, JobError, ModelError, OutputError
from .evaluate import evaluate_models, resolve_labels
from .graphprep import TWO_GB, constants_to_initializers, flatten_gemm_biases, pre_process, upgrade_opset
from .job import Job
from .modelinfo import ModelInfo, inspect_model, load_proto
from .ortquant import quantize_with_ranges, settings_warnings
from .preprocess import PreprocessSpec
from .progress import CALIBRATE, PREPARE, QUANTIZE, CancelToken, ProgressEvent, ProgressFn, no_progress
from .report import environment, now_iso, write_report
from .sessions import default_threads


@dataclass(frozen=True)
class QuantResult:
    output: Path
    report: dict


def resolve_spec(job: Job, info: ModelInfo) -> PreprocessSpec:
    """The job's preprocessing made concrete for this model, or a JobError."""
    ii = info.image_input
    assert ii is not None
    spec = job.preprocess.resolved(ii.layout, ii.size)
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
    if job.report is not None and os.path.abspath(job.report) == os.path.abspath(job.model):
        raise OutputError("the report path is the input model.", "Choose another report path.")
    info = inspect_model(job.model, layout=job.preprocess.layout)
    check_model(info)
    spec = resolve_spec(job, info)
    ii = info.image_input
    calib_files = list_images(job.calibration.folders, "calibration")
    warnings = settings_warnings(job.quantization)
    threads = None  # ONNX Runtime's default

    with tempfile.TemporaryDirectory(prefix="guiapp-") as tmpdir:
        tmp = Path(tmpdir)
        large = info.size_bytes >= TWO_GB
        model = load_proto(job.model, load_external=True)
        steps = []
        moved = constants_to_initializers(model)
        if moved:
            steps.append(f"moved {moved} Constant node(s) into initializers so their weights can be quantized")
        model, note = upgrade_opset(model, info.opset)
        if note:
            steps.append(note)
        source = tmp / "source.onnx"
        onnx.save(model, str(source), save_as_external_data=large, all_tensors_to_one_file=True, location="source.data")
        del model
        progress(ProgressEvent(PREPARE, 1, 3, "pre-processing (shape inference, optimization)"))
        cancel.check()
        prepared_path = tmp / "prepared.onnx"
        steps.append("quant_pre_process: " + pre_process(source, prepared_path, large))
        prepared = onnx.load(str(prepared_path), load_external_data=not large)
        if flatten_gemm_biases(prepared):
            onnx.save(prepared, str(prepared_path), save_as_external_data=large, all_tensors_to_one_file=True, location="prepared.data")
        progress(ProgressEvent(PREPARE, 3, 3, "ready"))
        timings["prepare"] = time.perf_counter() - t

        # ---- calibrate
        cancel.check()
        t = time.perf_counter()
        batch_size = ii.fixed_batch or job.calibration.batch_size
        log = ReadLog()
        total = min(job.calibration.max_images, len(calib_files))
        order = seeded_order(calib_files, job.calibration.seed)
        stream = iter_tensors(order, spec, job.calibration.max_images, log, cancel)
        collected = collect(prepared, ii.name, batches(stream, batch_size), total, progress, cancel, threads)
        del prepared
        if collected.images == 0:
            first = log.skipped[0] if log.skipped else None
            raise DatasetError(
                f"no readable image in the calibration folder(s): {len(log.skipped)} file(s) failed to decode"
                + (f" (first: {first[0].name}: {first[1]})" if first else "")
                + ".",
                "Add readable JPEG or PNG images.",
            )
        if collected.images < total:
            warnings.append(f"only {collected.images} of {total} calibration images were readable.")
        timings["calibrate"] = time.perf_counter() - t

        # ---- quantize
        cancel.check()
        t = time.perf_counter()
        progress(ProgressEvent(QUANTIZE, 0, 2, "writing the INT8 graph (ONNX Runtime)"))
        quantized = tmp / "quantized.onnx"
        try:
            quantize_with_ranges(prepared_path, quantized, collected.ranges(), job.quantization, tmp)
        except Exception as exc:  # noqa: BLE001 - ORT's quantizer raises anything
            raise ModelError(
                f"ONNX Runtime's quantizer failed: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__}",
                "Try keeping the failing node in float (exclude it), or the per-tensor or QOperator options.",
            ) from None
        cancel.check()
        final = tmp / "final.onnx"
        data_name = job.output.name + ".data" if large else None
        _carry_over_metadata(job.model, quantized, final, data_name)
        progress(ProgressEvent(QUANTIZE, 2, 2, "done"))
        timings["quantize"] = time.perf_counter() - t

        # ---- evaluate (on the temporary file: a cancel here still writes nothing)
        cancel.check()
        t = time.perf_counter()
        eval_files, eval_source, excluded = _evaluation_files(job, calib_files, log)
        labels = resolve_labels(job.evaluation, eval_files)
        ev = evaluate_models(
            job.model, final, ii.name, spec, eval_files, labels, job.evaluation, ii.fixed_batch, progress, cancel, threads,
            seed=job.calibration.seed,
        )
        ev["eval"].update({"source": eval_source, "excluded_calibration_overlap": excluded})
        timings["evaluate"] = time.perf_counter() - t

        report = {
            "created": now_iso(),
            "model": info.to_dict(),
            "output": str(job.output),
            "fp32": {"path": str(job.model), "size_bytes": info.size_bytes, "latency_ms": ev["latency_ms"]["fp32"]},
            "int8": {"path": str(job.output), "size_bytes": _size_with_data(final, data_name), "latency_ms": ev["latency_ms"]["int8"]},
            "accuracy": ev["accuracy"],
            "agreement": ev["agreement"],
            "outputs": ev["outputs"],
            "eval": ev["eval"],
            "calibration": {
                "method": job.calibration.method,
                "images_used": collected.images,
                "images_skipped": len(log.skipped),
                "skipped_files": [{"file": str(p), "reason": r} for p, r in log.skipped],
                "seconds": collected.seconds,
                "tensors": len(collected.stats),
                "batch_size": batch_size,
            },
            "preparation": steps,
            "preprocess": spec.to_dict(),
            "warnings": warnings + ev["warnings"],
            "timings_s": timings,
            "environment": environment(default_threads()),
            "job": job.to_dict(),
        }
        cancel.check()
        _place(final, job.output, data_name)
    if job.report is not None:
        write_report(report, job.report)
    return QuantResult(job.output, report)


def _evaluation_files(job: Job, calib_files: list[Path], log: ReadLog) -> tuple[list[Path], str, int]:
    """Evaluation images never include images used for calibration."""
    used = {os.path.realpath(p) for p in log.used}
    unreadable = {os.path.realpath(p) for p, _ in log.skipped}
    if job.evaluation.folders:
        files = list_images(job.evaluation.folders, "evaluation")
        held = [p for p in files if os.path.realpath(p) not in used]
        if not held:
            raise DatasetError(
                "every evaluation image was used for calibration.", "Give an evaluation folder with other images."
            )
        return held, "evaluation folders", len(files) - len(held)
    held = [p for p in calib_files if os.path.realpath(p) not in used | unreadable]
    if held:
        return held, "calibration folders, images not used for calibration", len(calib_files) - len(held)
    # Every image went into calibration: compare on them, and say so.
    return list(log.used), "calibration images (no held-out images: numbers are optimistic)", 0


def _carry_over_metadata(original: Path, quantized: Path, final: Path, data_name: str | None) -> None:
    """The output keeps the input's metadata_props, producer and doc strings
    (OCR models keep their character table there, for one)."""
    src = onnx.load(str(original), load_external_data=False)
    out = onnx.load(str(quantized))
    del out.metadata_props[:]
    out.metadata_props.extend(src.metadata_props)
    out.producer_name = src.producer_name
    out.producer_version = src.producer_version
    out.doc_string = src.doc_string
    out.graph.doc_string = src.graph.doc_string
    out.domain = src.domain
    out.model_version = src.model_version
    if data_name:
        onnx.save(out, str(final), save_as_external_data=True, all_tensors_to_one_file=True, location=data_name)
    else:
        onnx.save(out, str(final))


def _size_with_data(path: Path, data_name: str | None) -> int:
    return path.stat().st_size + ((path.parent / data_name).stat().st_size if data_name else 0)


def _place(final: Path, output: Path, data_name: str | None) -> None:
    """Move the finished model into place; the external data file first, so the
    model never points at a missing file."""
    try:
        if data_name:
            with atomic_path(output.parent / data_name) as part:
                shutil.copyfile(final.parent / data_name, part)
        with atomic_path(output) as part:
            shutil.copyfile(final, part)
    except OSError as exc:
        raise OutputError(f"cannot write {output}: {exc.strerror or exc}.", "Check free space and permissions.") from None
