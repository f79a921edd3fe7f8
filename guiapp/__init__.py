"""Quantization Studio: FP32 ONNX image models to fast, accurate INT8 models."""

import os

__version__ = "0.1.0"
APP_NAME = "Quantization Studio"

# ONNX Runtime 1.31 on Linux and macOS sends usage telemetry (1DS) by default,
# including session and model events. People quantize their own, often
# proprietary, models here: opt out unless the user set the variable. Read by
# ONNX Runtime at initialization, so this must run before it is imported
# (every entry point imports this package first).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
