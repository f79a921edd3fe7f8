"""TensorRT (NVIDIA): explicit quantization, a QDQ ONNX model TensorRT reads
as it is (int8 symmetric activations, per-tensor; int8 symmetric weights,
per-channel, as float weights with a QuantizeLinear/DequantizeLinear pair
each; opset >= 13), plus a calibration cache for the implicit path
(calibrators are deprecated since TensorRT 10.1).

The cache holds the app's ranges for every calibrated tensor, as TensorRT's
calibrator would have measured them (the strategy chosen, for symmetric int8):
``TRT-<version>-EntropyCalibration2`` then ``tensor: <8 hex digits>``, the
big-endian float32 bits of amax/127.
No GPU here: the model is checked in ONNX Runtime, and the report says so.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from pathlib import Path

from ..atomic import place_files
from ..calibrate.strategies import StrategySettings
from ..calibrate.strategies import RangeTarget
from ..calibrate.strategies import compute_ranges
from ..context import QuantResult, RunContext
from ..errors import JobError
from ..job import Job, QuantOption, QuantSettings
from ..notes import Note
from ..report.document import base_report
from ..report.summary import write_report
from .base import Target
from .ortflow import build_qdq, cache_files


def tensorrt_settings(q: QuantSettings) -> QuantSettings:
    """What TensorRT's explicit quantization accepts, whatever was chosen."""
    return replace(q, format="qdq", activation_type="int8", weight_type="int8", symmetric_activations=True,
                   per_channel=True, reduce_range=False, tensorrt_form=True, pad_channels=False, ort_optimized=False)


def version_code(version: str) -> int:
    """TensorRT's NV_TENSORRT_VERSION: 8.6.1 -> 8601, 10.3.0 -> 100300."""
    parts = [int(p) for p in version.split(".")] + [0, 0]
    major, minor, patch = parts[:3]
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


def tensor_scales(stats: dict, job: Job) -> dict[str, float]:
    """amax/127 per calibrated tensor, from the run's statistics and strategy."""
    settings = StrategySettings(job.calibration.method, job.calibration.percentile)
    ranges = compute_ranges(stats, settings, RangeTarget("int8", symmetric=True))
    return {name: max(abs(lo), abs(hi)) / 127.0 for name, (lo, hi) in ranges.items() if max(abs(lo), abs(hi)) > 0}


def calibration_cache(scales: dict[str, float], version: str) -> str:
    lines = [f"TRT-{version_code(version)}-EntropyCalibration2"]
    lines += [f"{name}: {struct.pack('>f', scale).hex()}" for name, scale in scales.items()]
    return "\n".join(lines) + "\n"


def parse_calibration_cache(text: str) -> tuple[str, dict[str, float]]:
    """(header, tensor -> scale): the cache read back as TensorRT reads it."""
    lines = [line for line in text.splitlines() if line.strip()]
    scales = {}
    for line in lines[1:]:
        name, _, value = line.rpartition(":")
        scales[name.strip()] = struct.unpack(">f", bytes.fromhex(value.strip()))[0]
    return lines[0], scales


def cache_path(output: Path) -> Path:
    return output.with_name(output.name.removesuffix(".onnx") + ".trt-calibration.cache")


@dataclass(frozen=True)
class TensorRTOptions:
    version: str = "10.3.0"  # written into the calibration cache's header

    def __post_init__(self) -> None:
        parts = self.version.split(".")
        if not (1 <= len(parts) <= 3 and all(p.isdigit() for p in parts)):
            raise JobError("target.tensorrt.version", f"expected a version like 10.3.0, got {self.version!r}")


CHANGED = ("format", "activation_type", "symmetric_activations", "per_channel", "reduce_range", "pad_channels", "ort_optimized")


def run(ctx: RunContext) -> QuantResult:
    job = ctx.job
    q = tensorrt_settings(job.quantization)
    options = TARGET.options_of(job.target)
    built = build_qdq(ctx, q)
    scales = tensor_scales(built.calibration.stats, job)
    trt_cache = ctx.tmp / "trt.cache"
    trt_cache.write_text(calibration_cache(scales, options.version), encoding="utf-8")
    changed = [f"{k} {getattr(job.quantization, k)} -> {getattr(q, k)}" for k in CHANGED
               if getattr(job.quantization, k) != getattr(q, k)]
    target = {
        "kind": "tensorrt", "title": TARGET.title,
        "checked_in": "ONNX Runtime (CPU), not TensorRT: no NVIDIA GPU here",
        "settings_changed_for_tensorrt": changed,
        "calibration_cache": {"path": str(cache_path(job.output)), "tensors": len(scales),
                              "header": f"TRT-{version_code(options.version)}-EntropyCalibration2"},
    }
    # ONNX Runtime's timings say nothing about TensorRT (no constant folding of the weights'
    # Q/DQ pairs, int8 activations on x86): its "slower than FP32" verdict is left out.
    evaluation = {**built.evaluation, "warnings": [n for n in built.evaluation["warnings"] if n.code != "latency.int8_slower"]}
    said = Note("target.tensorrt_checked_in_ort", "checked in ONNX Runtime on this CPU, not in TensorRT (no NVIDIA GPU here): "
                                                 "the accuracy numbers are ONNX Runtime's for the same QDQ model; latency is "
                                                 "ONNX Runtime's, not TensorRT's.")
    report = base_report(ctx.facts(built.model.stat().st_size), evaluation, {**built.sections, "target": target},
                         [*ctx.notes, *built.notes, said])
    built.cancel.check()
    place_files([(trt_cache, cache_path(job.output)), (built.model, job.output), *cache_files(ctx, built)])
    if job.report is not None:
        write_report(report, job.report)
    return QuantResult(job.output, report, built.evaluation["samples"], tuple(built.eval_files))


O = QuantOption
TARGET = Target(
    kind="tensorrt",
    title="TensorRT (NVIDIA)",
    suffix=".onnx",
    summary="A QDQ model TensorRT reads as it is (symmetric int8) and a calibration cache; checked in ONNX Runtime (no GPU here).",
    run=run,
    options=TensorRTOptions,
    honours=frozenset({O.EXCLUDE_NODES, O.KEEP_FLOAT, O.EQUALIZE, O.BIAS_CORRECTION, O.SHARE_CONCAT_RANGES, O.BATCH_ONE}),
    companions=lambda output: [cache_path(output)],
    note="TensorRT takes symmetric int8 activations and per-channel int8 weights whatever is chosen below; "
         "no GPU here, so the model is checked in ONNX Runtime.",
)
