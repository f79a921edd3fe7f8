"""Independent work on every core, or on a Ray cluster, behind one interface.

Work items travel as plain picklable data (paths, settings, small arrays):
an ONNX Runtime session cannot be pickled, so each worker builds its own.
``EXECUTORS`` is the registry of backends: serial (the tests' reference),
local (a process pool on this machine, the default), ray (an extra).
"""

from __future__ import annotations

from .base import Executor, ExecutorSpec, Failed, WORKER_THREADS_ENV
from .local import LocalExecutor
from .serial import SerialExecutor

__all__ = ["EXECUTORS", "Executor", "ExecutorSpec", "Failed", "WORKER_THREADS_ENV", "make_executor"]


def _ray(spec: ExecutorSpec) -> Executor:
    from .ray_backend import RayExecutor  # only with the extra installed

    return RayExecutor(spec)


EXECUTORS = {"serial": lambda spec: SerialExecutor(), "local": LocalExecutor, "ray": _ray}


def make_executor(spec: ExecutorSpec | None = None) -> Executor:
    spec = spec or ExecutorSpec()
    return EXECUTORS[spec.kind](spec)
