"""Our own streaming calibration: run the FP32 model batch by batch with the
tensors to calibrate exposed as outputs, fold each batch into fixed-size
per-tensor statistics, and drop it. Memory does not grow with the number of
images (ONNX Runtime's histogram calibrators keep every activation; NOTES.md).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx

from .errors import ModelError
from .progress import CALIBRATE, CancelToken, ProgressEvent, ProgressFn
from .quantizable import QUANTIZABLE_OP_TYPES
from .sessions import make_session

_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}


def tensors_to_calibrate(model: onnx.ModelProto, op_types=QUANTIZABLE_OP_TYPES) -> list[str]:
    """The float activations ONNX Runtime's quantizer asks ranges for: inputs and
    outputs of quantizable nodes whose type shape inference knows (the same
    rule as ORT's ``select_tensors_to_calibrate``), in graph order."""
    g = model.graph
    typed = {vi.name: vi for vi in itertools.chain(g.value_info, g.output, g.input)}
    inits = {t.name for t in g.initializer}
    out: dict[str, None] = {}
    for node in g.node:
        if node.op_type not in op_types:
            continue
        for name in itertools.chain(node.input, node.output):
            vi = typed.get(name)
            if vi is None or name in inits or name in out:
                continue
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type in _FLOAT_TYPES:
                out[name] = None
    return list(out)


def augmented(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose outputs are ``names`` (graph inputs excluded:
    those are read from the feed)."""
    g = model.graph
    graph_inputs = {i.name for i in g.input}
    typed = {vi.name: vi for vi in itertools.chain(g.value_info, g.output)}
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.output[:]
    for name in names:
        if name in graph_inputs:
            continue
        m.graph.output.append(typed[name])
    return m


@dataclass
class MinMax:
    """Running minimum and maximum of one tensor."""

    lo: float = np.inf
    hi: float = -np.inf

    def fold(self, x: np.ndarray) -> None:
        if x.size:
            self.lo = min(self.lo, float(x.min()))
            self.hi = max(self.hi, float(x.max()))


@dataclass(frozen=True)
class Collected:
    """What one pass over the calibration images gathered."""

    stats: dict[str, MinMax]
    images: int
    seconds: float

    def ranges(self) -> dict[str, tuple[float, float]]:
        return {n: (s.lo, s.hi) for n, s in self.stats.items() if np.isfinite(s.lo) and np.isfinite(s.hi)}


def collect(
    model: onnx.ModelProto,
    input_name: str,
    batches: Iterator[tuple[list[Path], np.ndarray]],
    total_images: int,
    progress: ProgressFn,
    cancel: CancelToken,
    threads: int | None = None,
) -> Collected:
    """Run ``batches`` through ``model`` and fold every calibrated tensor."""
    t0 = time.perf_counter()
    names = tensors_to_calibrate(model)
    aug = augmented(model, names)
    session = make_session(aug.SerializeToString(), threads=threads)
    out_names = [o.name for o in session.get_outputs()]
    stats = {n: MinMax() for n in names}
    images = 0
    progress(ProgressEvent(CALIBRATE, 0, total_images, "running the FP32 model on calibration images"))
    for paths, batch in batches:
        cancel.check()
        try:
            results = session.run(out_names, {input_name: batch})
        except Exception as exc:  # noqa: BLE001 - ORT's own exception types
            raise ModelError(
                f"the model failed on calibration image {paths[0].name}: {str(exc).splitlines()[0][:200]}",
                "Check the input size and preprocessing settings.",
            ) from None
        if input_name in stats:
            stats[input_name].fold(batch)
        for name, value in zip(out_names, results):
            if name in stats and isinstance(value, np.ndarray) and value.dtype.kind == "f":
                stats[name].fold(value)
        del results
        images += len(paths)
        progress(ProgressEvent(CALIBRATE, images, total_images, f"{images}/{total_images} images"))
    return Collected(stats, images, time.perf_counter() - t0)
