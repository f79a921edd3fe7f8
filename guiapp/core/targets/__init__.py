"""Deployment targets: ONNX Runtime, Rockchip RKNN, OpenVINO, TensorRT.

One module per target behind the interface in :mod:`.base`; the registry is
:data:`guiapp.core.targets.registry.TARGETS` (kept out of this package's
import so that the job document can import :mod:`.base` without the flows).
"""
