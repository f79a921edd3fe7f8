"""The registry of deployment targets: adding one is a module and a line here."""

from __future__ import annotations

from . import onnxruntime, openvino, rknn, tensorrt
from .base import Target

TARGETS: dict[str, Target] = {t.kind: t for t in (onnxruntime.TARGET, rknn.TARGET, openvino.TARGET, tensorrt.TARGET)}
