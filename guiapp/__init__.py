"""Quantization Studio: FP32 ONNX image models to fast, accurate INT8 models."""

__version__ = "0.1.0"
APP_NAME = "Quantization Studio"
