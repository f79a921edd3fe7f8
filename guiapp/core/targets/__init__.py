"""Deployment targets: ONNX Runtime, Rockchip RKNN, OpenVINO, TensorRT.

One module per target behind the interface in :mod:`.base`; the registry is
:data:`guiapp.core.targets.registry.TARGETS`.
"""
