"""Getting a real exporter's graph ready for ONNX Runtime's quantizer.

Three things real models need that ONNX Runtime's examples never show:
weights stored as ``Constant`` nodes become initializers (otherwise they stay
float and the "INT8" model is no smaller); old opsets are upgraded (per-channel
QDQ needs opset 13); and ``quant_pre_process`` falls back to lighter passes when
symbolic shape inference gives up.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import ModelError

MIN_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear (axis) need 13


def with_outputs(model: onnx.ModelProto, outputs) -> onnx.ModelProto:
    """A copy of ``model`` whose graph outputs are the value infos ``outputs``."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.output[:]
    m.graph.output.extend(outputs)
    return m


def constants_to_initializers(model: onnx.ModelProto) -> int:
    """Move top-level ``Constant`` nodes into initializers. Returns how many."""
    g = model.graph
    keep = []
    moved = 0
    for node in g.node:
        tensor = _constant_value(node) if node.op_type == "Constant" and node.domain in ("", "ai.onnx") else None
        if tensor is None:
            keep.append(node)
            continue
        tensor.name = node.output[0]
        g.initializer.append(tensor)
        moved += 1
    if moved:
        del g.node[:]
        g.node.extend(keep)
    return moved


def _constant_value(node: onnx.NodeProto) -> onnx.TensorProto | None:
    for a in node.attribute:
        if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
            t = onnx.TensorProto()
            t.CopyFrom(a.t)
            return t
        if a.name == "value_float":
            return numpy_helper.from_array(np.array(a.f, dtype=np.float32))
        if a.name == "value_floats":
            return numpy_helper.from_array(np.array(list(a.floats), dtype=np.float32))
        if a.name == "value_int":
            return numpy_helper.from_array(np.array(a.i, dtype=np.int64))
        if a.name == "value_ints":
            return numpy_helper.from_array(np.array(list(a.ints), dtype=np.int64))
    return None  # sparse_value, strings: leave as they are


def upgrade_opset(model: onnx.ModelProto, opset: int, target: int = MIN_OPSET) -> tuple[onnx.ModelProto, str | None]:
    """Convert to ``target`` when older. Returns the model and a note, or raises
    ModelError when the converter cannot do it."""
    if opset >= target:
        return model, None
    try:
        converted = onnx.version_converter.convert_version(model, target)
    except Exception as exc:  # the converter raises bare RuntimeErrors and others
        raise ModelError(
            f"the model uses opset {opset}, older than the {target} that per-channel INT8 needs, and onnx's "
            f"version converter could not upgrade it ({str(exc).splitlines()[0][:120]}).",
            f"Re-export the model with opset {target} or newer.",
        ) from None
    # IR version must be new enough for the opset (opset 13 needs IR 7).
    converted.ir_version = max(converted.ir_version, 7)
    drop_initializer_inputs(converted)
    return converted, f"upgraded opset {opset} -> {target} with onnx's version converter"


def drop_initializer_inputs(model: onnx.ModelProto) -> int:
    """Old (IR < 4) models list every initializer among the graph inputs, which
    makes them overridable: ONNX Runtime then neither folds nor treats them as
    constant weights. From IR 4 on they need not be inputs; drop them."""
    if model.ir_version < 4:
        return 0
    inits = {t.name for t in model.graph.initializer}
    keep = [vi for vi in model.graph.input if vi.name not in inits]
    dropped = len(model.graph.input) - len(keep)
    if dropped:
        del model.graph.input[:]
        model.graph.input.extend(keep)
    return dropped


_CWD_LOCK = threading.Lock()


@contextlib.contextmanager
def working_directory(path: Path):
    """Run a library that writes into the current directory inside ``path``.
    The working directory is the process's: one such block at a time, and
    callers pass absolute paths only."""
    with _CWD_LOCK:
        before = os.getcwd()
        os.chdir(path)
        try:
            yield
        finally:
            os.chdir(before)


def name_nodes(model: onnx.ModelProto) -> int:
    """Give every unnamed node a unique name: ONNX Runtime's quantizer excludes
    nodes by name (an empty name would match every unnamed node), and the
    per-layer table names them. Returns how many were named."""
    names = {n.name for n in model.graph.node if n.name}
    named = 0
    for i, node in enumerate(model.graph.node):
        if node.name:
            continue
        name = f"{node.op_type}_{i}"
        while name in names:
            name += "_"
        node.name = name
        names.add(name)
        named += 1
    return named


def pre_process(src: Path, dst: Path) -> str:
    """ONNX Runtime's ``quant_pre_process`` with fallbacks. Returns what ran.

    Symbolic shape inference fails on some real models ("Incomplete symbolic
    shape inference"); then we retry without it, then without optimization,
    and last with plain ONNX shape inference, saying which in the report.
    It runs with the working directory set to ``src``'s folder (a temporary
    one): when symbolic shape inference fails, ONNX Runtime leaves
    ``sym_shape_infer_temp.onnx`` and a model-sized data file in the working
    directory.
    """
    src, dst = Path(src).absolute(), Path(dst).absolute()
    with working_directory(src.parent):
        return _pre_process(src, dst)


def _pre_process(src: Path, dst: Path) -> str:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    attempts = [
        ("full (symbolic shape inference, optimization, ONNX shape inference)", {}),
        ("without symbolic shape inference", {"skip_symbolic_shape": True}),
        ("without symbolic shape inference and optimization", {"skip_symbolic_shape": True, "skip_optimization": True}),
    ]
    errors = []
    for desc, kwargs in attempts:
        try:
            quant_pre_process(str(src), str(dst), **kwargs)
            if dst.is_file():
                return desc if not errors else f"{desc} (full pre-processing failed: {errors[0]})"
        except Exception as exc:  # noqa: BLE001 - any failure moves to a lighter pass
            errors.append(str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__)
    # Last resort: plain ONNX shape inference, which ORT's quantizer needs anyway.
    model = onnx.load(str(src))
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001
        pass
    onnx.save(model, str(dst))
    return f"ONNX shape inference only (quant_pre_process failed: {errors[0]})"


def flatten_gemm_biases(model: onnx.ModelProto) -> int:
    """Reshape Gemm biases of shape [1, N] to [N] (identical under broadcasting).

    Exporters (CNTK, and ONNX Runtime's own MatMul+Add fusion) produce them, and
    ONNX Runtime's per-channel QDQ quantizer assumes 1-D biases: it fails with
    "truth value of an array ... is ambiguous" when adjusting int32 bias scales.
    """
    inits = {t.name: t for t in model.graph.initializer}
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    changed = 0
    for node in model.graph.node:
        if node.op_type != "Gemm" or len(node.input) < 3:
            continue
        t = inits.get(node.input[2])
        if t is None or uses.get(t.name) != 1 or len(t.dims) != 2 or t.dims[0] != 1:
            continue
        n = t.dims[1]
        del t.dims[:]
        t.dims.append(n)
        changed += 1
    return changed
