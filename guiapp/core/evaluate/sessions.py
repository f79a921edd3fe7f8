"""Creating ONNX Runtime sessions the same way everywhere."""

from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort

from ..parallel.base import WORKER_THREADS_ENV
from ..errors import ModelError


def default_threads() -> int:
    """The cores this process may use (what ONNX Runtime's default thread
    count is drawn from); reported with every latency."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def make_session(model: Path | bytes, threads: int | None = None, optimize: bool = True) -> ort.InferenceSession:
    """A CPU session; ModelError with ONNX Runtime's reason when it cannot load.

    ``threads`` None keeps ONNX Runtime's own choice (one per physical core,
    with thread affinity), which measured faster here than any explicit count.
    """
    so = ort.SessionOptions()
    threads = threads or int(os.environ.get(WORKER_THREADS_ENV, 0))  # a pool's worker: its share of the cores
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises several private exception types
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"ONNX Runtime cannot load the model: {text[:300]}", "Check that it runs in ONNX Runtime as it is.") from None
