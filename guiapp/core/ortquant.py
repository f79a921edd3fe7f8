"""The one place that speaks ONNX Runtime's quantizer dialect: our typed
settings and computed ranges in, ``quantize_static`` arguments out.

We compute the ranges; ONNX Runtime writes the graph. Ranges reach it as a
calibration cache (``TensorsData`` saved to JSON), which makes
``quantize_static`` skip its own calibration.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from .job import QuantSettings
from .quantizable import QUANTIZABLE_OP_TYPES


def _quant_type(name: str):
    from onnxruntime.quantization import QuantType

    return {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}[name]


def quantize_with_ranges(
    prepared: Path,
    output: Path,
    ranges: dict[str, tuple[float, float]],
    settings: QuantSettings,
    workdir: Path,
) -> None:
    """Write the quantized model of ``prepared`` to ``output`` using ``ranges``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    data = {n: (np.array(lo, dtype=np.float32), np.array(hi, dtype=np.float32)) for n, (lo, hi) in ranges.items()}
    cache = workdir / f"{output.stem}.ranges.json"
    cache.unlink(missing_ok=True)  # a stale cache would be used as it is
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), cache)
    op_types = sorted(QUANTIZABLE_OP_TYPES - set(settings.exclude_op_types))
    quantize_static(
        str(prepared),
        str(output),
        calibration_data_reader=None,
        quant_format=QuantFormat.QDQ if settings.format == "qdq" else QuantFormat.QOperator,
        op_types_to_quantize=op_types,
        per_channel=settings.per_channel,
        reduce_range=settings.reduce_range,
        activation_type=_quant_type(settings.activation_type),
        weight_type=_quant_type(settings.weight_type),
        nodes_to_exclude=sorted(set(settings.exclude_nodes)),
        calibrate_method=CalibrationMethod.MinMax,
        calibration_cache_path=str(cache),
        extra_options={
            "ActivationSymmetric": settings.symmetric_activations,
            "WeightSymmetric": settings.weight_type == "int8",
            "AddQDQPairToWeight": settings.tensorrt_form,
            "QuantizeBias": not settings.tensorrt_form,
        },
    )


def is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def settings_warnings(settings: QuantSettings) -> list[str]:
    """Warnings about choices that hurt on this machine."""
    out = []
    if settings.activation_type == "int8" and is_x86():
        out.append(
            "int8 activations make the model slower on x86 CPUs with ONNX Runtime (measured: squeezenet1.1 "
            "2.3x slower than FP32); uint8 activations are the fast choice here. Keep int8 only if your "
            "target (an NPU, GPU/TensorRT) requires it."
        )
    if settings.activation_type == "uint8" and settings.weight_type == "uint8":
        out.append("uint8 weights with uint8 activations (U8U8) have no fast kernel on most CPUs; int8 weights are usual.")
    return out
