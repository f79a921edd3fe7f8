"""The form the INT8 model is written in, after ONNX Runtime's quantizer
wrote its QDQ (or QOperator) graph: convolution input channels padded for
the fast kernels (chanpad.py), wide pointwise convolutions sent to AMX on
CPUs that have it (fastform.py), a fixed batch size, and the graph as ONNX
Runtime optimizes it; and the Concat ranges tied before (rangeshare.py).

Each is a choice of the user (job fields ``quantization.pad_channels``,
``share_concat_ranges``, ``batch_one`` and ``ort_optimized``) because each
changes what the file is:
- a batch of one fixes the input's first dimension to 1 (the model then
  takes exactly one image per run), so every shape is known when ONNX
  Runtime loads it;
- the ONNX Runtime-optimized graph is what ONNX Runtime builds from a QDQ
  model when it loads it (QuantizeLinear/DequantizeLinear pairs fused into
  QLinearConv, QLinearAdd, ... of its ``com.microsoft`` domain). Saved, it
  loads only in ONNX Runtime: other runtimes (OpenVINO, TensorRT, NPU
  toolkits) need the QDQ graph. It is saved at the "extended" level, which
  is the same on every CPU; the level above ("all") adds layout changes
  ONNX Runtime's documentation calls hardware specific (NCHWc blocks sized
  for the CPU's vector width), which ONNX Runtime still applies when the
  saved model is loaded.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx

from .chanpad import ALIGN, pad_conv_channels
from ..errors import JobError, ModelError
from .fastform import AMX_MIN_INPUT_CHANNELS, gemm_pointwise
from .rangeshare import share_concat_ranges


def fix_batch(model: onnx.ModelProto, batch: int) -> str | None:
    """Set the first dimension of every graph input that leaves it open to
    ``batch``, and the same named dimension wherever it appears (outputs,
    intermediate shapes). Returns a note for the report, or None when there
    was nothing to fix (the batch was fixed already)."""
    names: set[str] = set()
    changed = []
    for vi in model.graph.input:
        dims = vi.type.tensor_type.shape.dim
        if not dims or dims[0].HasField("dim_value"):
            continue
        if dims[0].dim_param:
            names.add(dims[0].dim_param)
        dims[0].dim_value = batch  # clears dim_param
        changed.append(vi.name)
    if not changed:
        return None
    for vi in [*model.graph.output, *model.graph.value_info]:
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param in names:
                d.dim_value = batch
    return f"batch fixed to {batch} on input(s) {', '.join(changed)}"


def check_batch_one(fixed_batch: int | None, batch_one: bool) -> None:
    """A JobError when the model already fixes another batch size."""
    if batch_one and fixed_batch and fixed_batch != 1:
        raise JobError("quantization.batch_one", f"the model's batch is fixed to {fixed_batch}",
                       "Turn off the batch of 1: the model takes that many images per run.")


def shared_ranges(model: onnx.ModelProto, ranges: dict, q) -> dict:
    """``ranges`` with Concat inputs tied to their Concat, when the settings
    ``q`` (QuantSettings) ask for it; Concats kept in float are left alone."""
    if not q.share_concat_ranges or "Concat" in q.exclude_op_types:
        return ranges
    return share_concat_ranges(model, ranges, set(q.exclude_nodes))[0]


def concat_note(model: onnx.ModelProto, ranges: dict, q) -> list[str]:
    """The report's note on the Concat inputs :func:`shared_ranges` tied in
    ``ranges`` (the ranges the final model was built from)."""
    if not q.share_concat_ranges or "Concat" in q.exclude_op_types:
        return []
    _, n = share_concat_ranges(model, ranges, set(q.exclude_nodes))
    return [f"{n} Concat input(s) quantized with their Concat's range (the Concat copies instead of requantizing)"] if n else []


def ort_optimize(src: Path, dst: Path) -> None:
    """Write the graph ONNX Runtime builds from ``src`` at the extended
    optimization level (CPU) to ``dst``, and check that plain ONNX Runtime
    loads it. ONNX Runtime writes nothing else (its profile and session files
    stay off); it runs in a temporary folder anyway."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(dst)
    try:
        ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
        check = ort.SessionOptions()
        check.log_severity_level = 3
        ort.InferenceSession(str(dst), check, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises several private types
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"ONNX Runtime could not save its optimized graph: {text}",
                         "Turn off 'optimized for ONNX Runtime' to write the QDQ model.") from None


def apply_output_form(quantized: Path, out: Path, pad_channels: bool, batch_one: bool, ort_optimized: bool,
                      amx_pointwise: bool = False) -> list[str]:
    """``quantized`` in the chosen form at ``out`` (both in the work folder);
    notes for the report's ``preparation``. ``amx_pointwise``: give wide
    pointwise convolutions the weight form that runs on AMX (fastform.py)."""
    notes = []
    model = onnx.load(str(quantized))
    if pad_channels:
        padded = pad_conv_channels(model)
        if padded:
            notes.append(f"input channels padded to a multiple of {ALIGN} (a zero channel, same outputs) for the fast INT8 "
                         f"convolution: {_names(padded)}")
    if amx_pointwise:
        sent = gemm_pointwise(model)
        if sent:
            notes.append(f"{len(sent)} pointwise convolution(s) with at least {AMX_MIN_INPUT_CHANNELS} input channels given "
                         f"weight zero point -1 (the same weights, the same outputs) so that ONNX Runtime runs them on this "
                         f"CPU's AMX: {_names(sent)}")
    if batch_one:
        note = fix_batch(model, 1)
        if note:
            notes.append(note)
    if not ort_optimized:
        onnx.save(model, str(out))
        return notes
    with tempfile.TemporaryDirectory(prefix="guiapp-ortopt-") as tmp:
        src = Path(tmp) / "in.onnx"
        onnx.save(model, str(src))
        ort_optimize(src, out)
    fused = onnx.load(str(out), load_external_data=False)
    ops = sorted({n.op_type for n in fused.graph.node if n.op_type.startswith("QLinear")})
    notes.append("saved as ONNX Runtime optimizes it (extended level): " + (", ".join(ops) or "no fused ops")
                 + "; loads in ONNX Runtime only")
    return notes


def _names(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
