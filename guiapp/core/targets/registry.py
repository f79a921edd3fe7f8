"""The registry of deployment targets: adding one is a module and a line here."""

from __future__ import annotations

from . import onnxruntime, openvino, rknn, tensorrt
from .base import Target

TARGETS: dict[str, Target] = {t.kind: t for t in (onnxruntime.TARGET, rknn.TARGET, openvino.TARGET, tensorrt.TARGET)}
TARGET_KINDS = tuple(TARGETS)


def option_types() -> dict[str, type | None]:
    """Target kind -> its options class (what a job file may hold under the kind)."""
    return {kind: t.options for kind, t in TARGETS.items()}
