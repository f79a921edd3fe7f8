"""ONNX Runtime: the default target, whose flow is the pipeline itself."""

from __future__ import annotations

from .base import ORT_SETTINGS, Target

TARGET = Target(
    kind="onnxruntime",
    title="ONNX Runtime",
    suffix=".onnx",
    summary="A QDQ ONNX model for ONNX Runtime (CPU, and the NPUs and GPUs it drives); latency measured here.",
    availability=lambda settings: "",
    run=None,
    settings=ORT_SETTINGS,
)
