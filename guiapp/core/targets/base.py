"""What every deployment target provides, and the settings a job keeps for it.

A target (ONNX Runtime, Rockchip RKNN, OpenVINO, TensorRT) is one module with a
``TARGET``: whether its toolkit is here (and what to install when it is not),
which of the quantization settings it honours, and ``run``, its whole flow:
build the model for the runtime, run it on the evaluation images and compare
with FP32 through the same fidelity code as everything else, per-layer error
where the toolkit offers it, and the files it writes. ``run`` is None for ONNX
Runtime, whose flow is :func:`guiapp.core.pipeline.quantize` itself.

The registry (:mod:`guiapp.core.targets.registry`) lists them; this module is
light on purpose (the job document imports it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import JobError, UserError

TARGET_KINDS = ("onnxruntime", "rknn", "openvino", "tensorrt")

# RKNN-Toolkit2 2.5.0's target_platform values (its config() docstring).
RKNN_PLATFORMS = ("rk3588", "rk3576", "rk3568", "rk3566", "rk3562", "rv1106", "rv1106b", "rv1103", "rv1103b", "rv1126b", "rk2118")

# Which quantization settings a target honours; the wizard greys out the rest.
QDQ_SETTINGS = frozenset({"per_channel", "activation_type", "symmetric_activations", "format", "exclude_nodes", "keep_float",
                          "equalize", "bias_correction", "share_concat_ranges", "batch_one"})
# ONNX Runtime alone: its x86 kernels' needs (reduce range, channels padded to 4) and its own fused graph.
ORT_SETTINGS = QDQ_SETTINGS | {"reduce_range", "pad_channels", "ort_optimized"}


class TargetUnavailable(UserError):
    """The target's toolkit or extra is not installed (the message says how)."""


@dataclass(frozen=True)
class TargetSettings:
    """The deployment target, as the job stores it."""

    kind: str = "onnxruntime"
    platform: str = "rk3588"  # RKNN: the chip
    rknn_python: Path | None = None  # RKNN: a Python with rknn-toolkit2 (None: $GUIAPP_RKNN_PYTHON, then the default env)
    tensorrt_version: str = "10.3.0"  # TensorRT: written into the calibration cache's header

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise JobError("target.kind", f"unknown target {self.kind!r}", f"Choose one of {', '.join(TARGET_KINDS)}.")
        if self.platform not in RKNN_PLATFORMS:
            raise JobError("target.platform", f"unknown RKNN platform {self.platform!r}", f"Choose one of {', '.join(RKNN_PLATFORMS)}.")
        parts = self.tensorrt_version.split(".") if isinstance(self.tensorrt_version, str) else []
        if not (1 <= len(parts) <= 3 and all(p.isdigit() for p in parts)):
            raise JobError("target.tensorrt_version", f"expected a version like 10.3.0, got {self.tensorrt_version!r}")

    def to_dict(self, rel: Callable[[Path], str] = str) -> dict:
        return {
            "kind": self.kind,
            "platform": self.platform,
            "rknn_python": None if self.rknn_python is None else rel(self.rknn_python),
            "tensorrt_version": self.tensorrt_version,
        }


@dataclass(frozen=True)
class Target:
    kind: str
    title: str
    suffix: str  # the output file's suffix
    summary: str  # one line for the wizard
    availability: Callable[[TargetSettings], str]  # "" when usable, else what to install, in words
    run: Callable | None  # run(job, progress, cancel, overwrite) -> QuantResult; None: ONNX Runtime's pipeline
    settings: frozenset = QDQ_SETTINGS  # quantization settings it honours
    companions: Callable[[Path], list[Path]] = lambda output: []  # files written beside the output
    found: Callable[[TargetSettings], str] = lambda settings: ""  # the toolkit that will be used, in a few words
    refuses: Callable = lambda job: ""  # refuses(job) -> what in the job this target cannot do ('' when nothing)


def require(target: Target, settings: TargetSettings) -> None:
    """Raise TargetUnavailable when ``target`` cannot run here."""
    problem = target.availability(settings)
    if problem:
        raise TargetUnavailable(problem)
