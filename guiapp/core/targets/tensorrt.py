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
import tempfile
from dataclasses import replace
from pathlib import Path

from ..calibrate import calibcache
from ..errors import StudioError
from ..job import Job, QuantSettings
from ..quantize.ortquant import settings_warnings
from ..pipeline import QuantResult
from ..calibrate.strategies import StrategySettings
from ..calibrate.strategies import Target as QuantTarget
from ..calibrate.strategies import compute_ranges
from ..progress import CancelToken, ProgressFn, no_progress
from .base import Target
from .onnxflow import cache_files, place, run_onnx_flow


def tensorrt_settings(q: QuantSettings) -> QuantSettings:
    """What TensorRT's explicit quantization accepts, whatever was chosen."""
    return replace(q, format="qdq", activation_type="int8", weight_type="int8", symmetric_activations=True,
                   per_channel=True, reduce_range=False, tensorrt_form=True, pad_channels=False, ort_optimized=False)


def version_code(version: str) -> int:
    """TensorRT's NV_TENSORRT_VERSION: 8.6.1 -> 8601, 10.3.0 -> 100300."""
    parts = [int(p) for p in version.split(".")] + [0, 0]
    major, minor, patch = parts[:3]
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


def tensor_scales(statistics: Path, job: Job) -> dict[str, float]:
    """amax/127 per calibrated tensor, from the run's statistics and strategy."""
    entry = calibcache.load_unchecked(statistics)
    if entry is None:
        raise StudioError("the calibration statistics of this run could not be read back for the TensorRT cache.")
    settings = StrategySettings(job.calibration.method, job.calibration.percentile)
    ranges = compute_ranges(entry.stats, settings, QuantTarget("int8", symmetric=True))
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


def run(job: Job, progress: ProgressFn = no_progress, cancel: CancelToken | None = None, overwrite: bool = False) -> QuantResult:
    cancel = cancel or CancelToken()
    q = tensorrt_settings(job.quantization)
    with tempfile.TemporaryDirectory(prefix="guiapp-tensorrt-") as tmpdir:
        tmp = Path(tmpdir)
        result, cache = run_onnx_flow(job, q, tmp, progress, cancel, overwrite)
        report = result.report
        onnx_out = tmp / Path(job.output).name
        scales = tensor_scales(cache, job)
        trt_cache = tmp / "trt.cache"
        trt_cache.write_text(calibration_cache(scales, job.target.tensorrt_version), encoding="utf-8")
        changed = [f"{k} {getattr(job.quantization, k)} -> {getattr(q, k)}" for k in
                   ("format", "activation_type", "symmetric_activations", "per_channel", "reduce_range", "pad_channels", "ort_optimized")
                   if getattr(job.quantization, k) != getattr(q, k)]
        # ONNX Runtime's speed advice and timings say nothing about TensorRT (no constant folding
        # of the weights' Q/DQ pairs, int8 activations on x86).
        noise = set(settings_warnings(q))
        report["warnings"] = [w for w in report["warnings"] if w not in noise and not w.startswith("the INT8 model ran slower")] + [
            "checked in ONNX Runtime on this CPU, not in TensorRT (no NVIDIA GPU here): the accuracy numbers are "
            "ONNX Runtime's for the same QDQ model; latency is ONNX Runtime's, not TensorRT's."
        ]
        report["target"] = {
            "kind": "tensorrt", "title": TARGET.title,
            "checked_in": "ONNX Runtime (CPU), not TensorRT: no NVIDIA GPU here",
            "settings_changed_for_tensorrt": changed,
            "calibration_cache": {"path": str(cache_path(Path(job.output))), "tensors": len(scales),
                                  "header": f"TRT-{version_code(job.target.tensorrt_version)}-EntropyCalibration2"},
        }
        cancel.check()
        place([(trt_cache, cache_path(Path(job.output))), (onnx_out, Path(job.output)), *cache_files(cache, job, result)],
              report, job)
    return QuantResult(Path(job.output), report, result.samples, result.eval_files)


TARGET = Target(
    kind="tensorrt",
    title="TensorRT (NVIDIA)",
    suffix=".onnx",
    summary="A QDQ model TensorRT reads as it is (symmetric int8) and a calibration cache; checked in ONNX Runtime (no GPU here).",
    availability=lambda settings: "",
    run=run,
    settings=frozenset({"exclude_nodes", "keep_float", "equalize", "bias_correction", "share_concat_ranges", "batch_one"}),
    companions=lambda output: [cache_path(output)],
)
