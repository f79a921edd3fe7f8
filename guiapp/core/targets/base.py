"""What every deployment target provides.

A target (ONNX Runtime, Rockchip RKNN, OpenVINO, TensorRT) is one module
with a ``TARGET``: its options (a frozen dataclass the job keeps under the
target's kind), whether its toolkit is here (and what to install when it is
not), which quantization settings it honours, and ``run``, its whole flow
from the run's context: build the model for the runtime, check it against
FP32 through the same fidelity code as everything else, and place its files.
The registry (:mod:`guiapp.core.targets.registry`) lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..context import QuantResult, RunContext
from ..errors import UserError
from ..job import Job, QuantOption, QuantSettings, TargetSettings
from ..model.modelinfo import ModelInfo
from ..notes import Note

O = QuantOption
# What a QDQ model for any runtime can carry; ONNX Runtime alone adds its x86 kernels' needs.
QDQ_OPTIONS = frozenset({O.PER_CHANNEL, O.ACTIVATION_TYPE, O.SYMMETRIC_ACTIVATIONS, O.FORMAT, O.EXCLUDE_NODES, O.KEEP_FLOAT,
                         O.EQUALIZE, O.BIAS_CORRECTION, O.SHARE_CONCAT_RANGES, O.BATCH_ONE})
ORT_OPTIONS = QDQ_OPTIONS | {O.REDUCE_RANGE, O.PAD_CHANNELS, O.ORT_OPTIMIZED}


class TargetUnavailable(UserError):
    """The target's toolkit or extra is not installed (the message says how)."""


def _nothing(*args) -> str:
    return ""


@dataclass(frozen=True)
class Target:
    kind: str
    title: str
    suffix: str  # the output file's suffix
    summary: str  # one line for the wizard
    run: Callable[[RunContext], QuantResult]
    options: type | None = None  # its options dataclass (RKNN's chip, TensorRT's version), kept in the job under ``kind``
    honours: frozenset[QuantOption] = QDQ_OPTIONS  # the quantization settings it honours
    availability: Callable[[Any], str] = _nothing  # availability(options): "" when usable, else what to install
    found: Callable[[Any], str] = _nothing  # found(options): the toolkit that will be used, in a few words
    refuses: Callable[[Job], str] = _nothing  # refuses(job): what in the job it cannot do ("" when nothing)
    check: Callable[[Job, ModelInfo], None] = lambda job, info: None  # raises a UserError before any work
    companions: Callable[[Path], list[Path]] = lambda output: []  # files written beside the output
    advice: Callable[[QuantSettings], list[Note]] = lambda q: []  # warnings about settings that hurt on this runtime
    uses_cache: bool = True  # whether the app's calibration statistics are kept (a toolkit may calibrate itself)
    note: str = ""  # what the wizard says under the choice, when the summary is not enough

    def options_of(self, settings: TargetSettings) -> Any:
        """This target's options in ``settings`` (its defaults when the job has none)."""
        return settings.options_for(self.kind, self.options) if self.options is not None else None

    def unavailable(self, settings: TargetSettings) -> str:
        return self.availability(self.options_of(settings))

    def require(self, settings: TargetSettings) -> None:
        """Raise TargetUnavailable when this target cannot run here."""
        problem = self.unavailable(settings)
        if problem:
            raise TargetUnavailable(problem)
