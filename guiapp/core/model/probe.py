"""One run of the FP32 model at a concrete input size: the output shapes
it really computes.

Exporters with dynamic axes declare outputs like ``[batch, 8, anchors]`` or
an expression hundreds of characters long (Ultralytics through onnxslim,
torch's dynamo exporter); some declare a wrong size. Layouts and tasks are
decided from this run instead. A size the model refuses is reported with
the model's words, not used.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tensors import ImageInput, TensorInfo

MAX_PROBE_BYTES = 1 << 30  # models over 1 GB are not run just to read shapes
STEP = 32  # the second run's input is this much larger on each side (a multiple of every usual stride)
_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 16


@dataclass(frozen=True)
class RunShapes:
    size: tuple[int, int]  # (height, width) of the run
    source: str  # where the size came from, in words
    outputs: tuple[TensorInfo, ...] = ()  # as computed at batch 1 (the batch axis as declared)
    error: str = ""  # the model's words when it refused the size
    follows: tuple[tuple[int, ...], ...] = ()  # per output, the axes whose size changed with the input's

    @property
    def ok(self) -> bool:
        return not self.error

    def to_dict(self) -> dict:
        return {"size": list(self.size), "source": self.source, "error": self.error or None,
                "outputs": [{"name": t.name, "shape": list(t.shape) if t.shape else None} for t in self.outputs]}


def _zeros(t: TensorInfo, fill: dict[int, int]) -> np.ndarray:
    dims = [fill.get(i, d if isinstance(d, int) else 1) for i, d in enumerate(t.shape or ())]
    dtype = np.dtype(t.dtype) if t.dtype in ("float32", "float64", "int64", "int32", "uint8", "bool") else np.float32
    return np.zeros(dims, dtype)


def probe(path: Path, image: ImageInput, inputs: tuple[TensorInfo, ...], outputs: tuple[TensorInfo, ...],
          size: tuple[int, int], source: str) -> RunShapes:
    """Run the model once on zeros at ``size`` (batch 1, or its fixed batch)."""
    stat = os.stat(path)
    key = (str(path), stat.st_mtime_ns, stat.st_size, image, size)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        cached = _CACHE[key]
        return RunShapes(size, source, cached.outputs, cached.error, cached.follows)
    result = _run(path, image, inputs, outputs, size, source)
    if result.ok:  # a second run, a little larger, tells which axes follow the input
        other = _run(path, image, inputs, outputs, (size[0] + STEP, size[1] + STEP), source)
        if other.ok and len(other.outputs) == len(result.outputs):
            follows = tuple(tuple(i for i, (a, b) in enumerate(zip(x.shape[1:], y.shape[1:]), start=1) if a != b)
                            for x, y in zip(result.outputs, other.outputs))
            result = RunShapes(size, source, result.outputs, "", follows)
    _CACHE[key] = result
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return result


def _run(path: Path, image: ImageInput, inputs: tuple[TensorInfo, ...], outputs: tuple[TensorInfo, ...],
         size: tuple[int, int], source: str) -> RunShapes:
    import onnxruntime as ort

    h, w = size
    axes = {0: image.fixed_batch or 1, **({1: image.channels, 2: h, 3: w} if image.layout == "nchw" else {1: h, 2: w, 3: image.channels})}
    feed = {t.name: _zeros(t, axes if t.name == image.name else {}) for t in inputs}
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        got = session.run(None, feed)
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own exception types
        text = str(exc).strip().splitlines()[0][:240] if str(exc).strip() else type(exc).__name__
        return RunShapes(size, source, (), text)
    names = [o.name for o in session.get_outputs()]
    declared = {t.name: t for t in outputs}
    out = []
    for name, value in zip(names, got):
        value = np.asarray(value)
        d = declared.get(name)
        batch = d.shape[0] if d is not None and d.shape else None
        shape = tuple(value.shape) if value.ndim == 0 else (batch if batch is not None else value.shape[0], *value.shape[1:])
        out.append(TensorInfo(name, tuple(int(v) if isinstance(v, (int, np.integer)) else v for v in shape),
                              d.dtype if d is not None else value.dtype.name))
    return RunShapes(size, source, tuple(out))
