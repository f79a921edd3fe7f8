"""ONNX Runtime: the default target. Its flow is ortflow.py's; this module
places the result (the model, then the calibration cache and the report)."""

from __future__ import annotations

from ..atomic import place_files
from ..context import QuantResult, RunContext
from ..job import Job
from ..model.modelinfo import ModelInfo
from ..quantize.ortquant import settings_warnings
from ..quantize.outputform import check_batch_one
from ..report.document import base_report
from ..report.summary import write_report
from .base import ORT_OPTIONS, Target
from .ortflow import build_qdq, cache_files


def run(ctx: RunContext) -> QuantResult:
    built = build_qdq(ctx)
    report = base_report(ctx.facts(built.model.stat().st_size), built.evaluation, built.sections,
                         [*settings_warnings(ctx.job.quantization), *ctx.notes, *built.notes])
    built.cancel.check()
    place_files([(built.model, ctx.job.output), *cache_files(ctx, built)])
    if ctx.job.report is not None:
        write_report(report, ctx.job.report)
    return QuantResult(ctx.job.output, report, built.evaluation["samples"], tuple(built.eval_files))


def check(job: Job, info: ModelInfo) -> None:
    check_batch_one(info.image_input.fixed_batch, job.quantization.batch_one)


TARGET = Target(
    kind="onnxruntime",
    title="ONNX Runtime",
    suffix=".onnx",
    summary="A QDQ ONNX model for ONNX Runtime (CPU, and the NPUs and GPUs it drives); latency measured here.",
    run=run,
    honours=ORT_OPTIONS,
    check=check,
    advice=settings_warnings,
)
