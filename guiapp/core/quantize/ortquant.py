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

from ..evaluate.cpu import CpuInfo, current_cpu
from ..job import QuantSettings
from ..model.quantizable import QUANTIZABLE_OP_TYPES
from ..notes import Note


def _quant_type(name: str):
    from onnxruntime.quantization import QuantType

    return {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}[name]


def quantizer_arguments(settings: QuantSettings) -> dict:
    """``quantize_static``'s keyword arguments for ``settings``: everything
    but the model, the output and the ranges (also read by patching.py, which
    rewrites activation scales the way the quantizer computes them)."""
    from onnxruntime.quantization import QuantFormat

    return {
        "quant_format": QuantFormat.QDQ if settings.format == "qdq" else QuantFormat.QOperator,
        "op_types_to_quantize": sorted(QUANTIZABLE_OP_TYPES - set(settings.exclude_op_types)),
        "per_channel": settings.per_channel,
        "reduce_range": settings.reduce_range,
        "activation_type": _quant_type(settings.activation_type),
        "weight_type": _quant_type(settings.weight_type),
        "nodes_to_exclude": sorted(set(settings.exclude_nodes)),
        "extra_options": {
            "ActivationSymmetric": settings.symmetric_activations,
            "WeightSymmetric": settings.weight_type == "int8",
            "AddQDQPairToWeight": settings.tensorrt_form,
            "QuantizeBias": not settings.tensorrt_form,
        },
    }


def quantize_with_ranges(
    prepared: Path,
    output: Path,
    ranges: dict[str, tuple[float, float]],
    settings: QuantSettings,
    workdir: Path,
) -> None:
    """Write the quantized model of ``prepared`` to ``output`` using ``ranges``."""
    from onnxruntime.quantization import CalibrationMethod, quantize_static
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    from .weightmemo import install

    install()  # weights quantized in an earlier run with the same settings are not quantized again
    data = {n: (np.array(lo, dtype=np.float32), np.array(hi, dtype=np.float32)) for n, (lo, hi) in ranges.items()}
    cache = workdir / f"{output.stem}.ranges.json"
    cache.unlink(missing_ok=True)  # a stale cache would be used as it is
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), cache)
    quantize_static(
        str(prepared),
        str(output),
        calibration_data_reader=None,
        calibrate_method=CalibrationMethod.MinMax,
        calibration_cache_path=str(cache),
        **quantizer_arguments(settings),
    )


def is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def settings_warnings(settings: QuantSettings, cpu: CpuInfo | None = None) -> list[Note]:
    """Warnings about choices that hurt ONNX Runtime on this machine (``cpu``: this one by default)."""
    out = []
    cpu = cpu or current_cpu()
    if settings.activation_type == "int8" and is_x86():
        out.append(Note(
            "quantize.int8_activations",
            "int8 activations make the model slower on x86 CPUs with ONNX Runtime (measured: squeezenet1.1 "
            "2.3x slower than FP32); uint8 activations are the fast choice here. Keep int8 only if your "
            "target (an NPU, GPU/TensorRT) requires it.",
        ))
    if settings.activation_type == "uint8" and settings.weight_type == "uint8":
        out.append(Note("quantize.u8u8", "uint8 weights with uint8 activations (U8U8) have no fast kernel on most CPUs; "
                                         "int8 weights are usual."))
    out.extend(_vnni_warnings(settings, cpu))
    return out


def _vnni_warnings(settings: QuantSettings, cpu: CpuInfo) -> list[Note]:
    """ONNX Runtime's guidance: x86 CPUs without VNNI multiply uint8 by int8
    with AVX2's vpmaddubsw, whose 16-bit pair sums can saturate with full
    8-bit weights; 7-bit weights (reduce_range) avoid that but cost accuracy
    of their own (measured on a VNNI CPU: MobileNetV2 -12 points top-1,
    squeezenet1.1 -0.8). With VNNI or AMX nothing saturates."""
    if not is_x86() or cpu.has_int8_dot_product is None or settings.activation_type != "uint8" or settings.weight_type != "int8":
        return []
    if not cpu.has_int8_dot_product and not settings.reduce_range:
        return [Note("quantize.no_vnni",
                     f"this CPU ({cpu.model}: {cpu.features_text()}) has no VNNI: ONNX Runtime's uint8 x int8 kernels can "
                     "saturate here, and the accuracy measured on this CPU includes that. If INT8 loses more than you "
                     "expect, compare with reduce range (7-bit weights), which costs accuracy of its own (MobileNetV2: "
                     "-12 points top-1 on a VNNI CPU).")]
    if cpu.has_int8_dot_product and settings.reduce_range:
        return [Note("quantize.reduce_range",
                     f"reduce range (7-bit weights) is for x86 CPUs without VNNI; this CPU ({cpu.model}) has "
                     f"{cpu.features_text()}, where it is no faster and costs accuracy (MobileNetV2: -12 points top-1). "
                     "Keep it only if you deploy on CPUs without VNNI.")]
    return []
