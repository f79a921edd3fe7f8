"""For targets that start from ONNX Runtime's QDQ model (OpenVINO, TensorRT):
run the pipeline into a temporary folder, add the target's own files and
checks, then place everything. A failure or a cancel in the target's part
still writes nothing, the calibration cache included.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, check_output_path
from ..data.dataset import ReadLog, batches, iter_tensors, nothing_readable
from ..errors import OutputError
from ..evaluate.compare import FirstTensor, Runner, compare_outputs, evaluation_order, resolve_labels
from ..job import Job, QuantSettings
from ..pipeline import QuantResult, quantize
from ..progress import CancelToken, ProgressFn
from ..report.summary import write_report
from ..tasks import EvalContext
from .base import TargetSettings


def run_onnx_flow(job: Job, quant: QuantSettings, tmp: Path, progress: ProgressFn, cancel: CancelToken,
                  overwrite: bool) -> tuple[QuantResult, Path]:
    """ONNX Runtime's pipeline with ``quant``, writing its model and the
    calibration statistics into ``tmp`` (always: a target may read them).
    Returns its result and the statistics' file."""
    assert job.output is not None
    check_output_path(job.model, job.output, overwrite)
    cache = tmp / "calibration.npz"
    if job.cache is not None and Path(job.cache).is_file():
        shutil.copyfile(job.cache, cache)  # reused when it matches
    inner = replace(job, output=tmp / Path(job.output).name, report=None, cache=cache, quantization=quant, target=TargetSettings())
    result = quantize(inner, progress, cancel, overwrite=True)
    report = result.report
    report["output"] = report["int8"]["path"] = str(job.output)
    report["calibration"]["cache"] = str(job.cache) if job.cache else None
    report["job"] = job.to_dict()
    return result, cache


def compare_on_files(job: Job, info, feeds, spec, task, files: list[Path], names: list[str], run_fp32: Runner,
                     run_int8: Runner, progress: ProgressFn, cancel: CancelToken) -> tuple[dict, np.ndarray]:
    """FP32 vs INT8 through the app's fidelity code on up to the job's
    evaluation count of ``files``, in evaluate_models' order (seeded, labeled
    first). Returns the comparison and the first input tensor."""
    labels = resolve_labels(job.evaluation, files)
    order = evaluation_order(files, labels, job.calibration.seed)
    total = min(job.evaluation.max_images, len(order))
    log = ReadLog()
    first = FirstTensor()
    stream = first.watch(iter_tensors(order, spec, total, log, cancel))
    ctx = EvalContext(job.task, labels, job.evaluation.class_offset, spec)
    ev = compare_outputs(run_fp32, run_int8, names, {t.name: t.shape for t in info.outputs}, feeds,
                         batches(stream, info.image_input.fixed_batch or 16), total, task, ctx, progress, cancel)
    if first.tensor is None:
        raise nothing_readable(log.skipped, "the evaluation images", "Add readable JPEG or PNG images.")
    ev.pop("shape_warnings", None)
    ev.pop("samples", None)
    return ev, first.tensor


def place(files: list[tuple[Path, Path]], report: dict, job: Job) -> None:
    """Move the finished files into place (each atomically), then the report."""
    for src, dst in files:
        try:
            with atomic_path(dst) as part:
                shutil.copyfile(src, part)
        except OSError as exc:
            raise OutputError(f"cannot write {dst}: {exc.strerror or exc}.", "Check free space and permissions.") from None
    if job.report is not None:
        write_report(report, job.report)


def cache_files(cache: Path, job: Job, result: QuantResult) -> list[tuple[Path, Path]]:
    """The calibration cache to place, when the job keeps one and the run made a new one."""
    if job.cache is None or result.report["calibration"]["cache_used"] or not cache.is_file():
        return []
    return [(cache, Path(job.cache))]
