"""The FP32 graph made ready for ONNX Runtime's quantizer, and the INT8
graph made ready to hand over.

Before: Constant weights moved into initializers, old opsets upgraded,
``quant_pre_process`` (shape inference, optimization), Gemm biases
flattened, nodes named. After: the output keeps the input's metadata
(OCR models keep their character table there, for one). Models over 2 GB
were refused by inspection: everything fits in memory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx

from ..errors import ModelError
from ..model.graphprep import constants_to_initializers, flatten_gemm_biases, name_nodes, pre_process, upgrade_opset
from ..model.loading import load_proto
from ..progress import PREPARE, CancelToken, ProgressEvent, ProgressFn
from .ortquant import quantize_with_ranges
from .outputform import shared_ranges

_HEADER_FIELDS = ("producer_name", "producer_version", "doc_string", "domain", "model_version")


@dataclass(frozen=True)
class Prepared:
    """The FP32 graph, ready for the quantizer, saved in the work folder."""

    path: Path
    model: onnx.ModelProto
    steps: tuple[str, ...]
    header: onnx.ModelProto  # the input's metadata, producer and doc strings (no graph)

    def with_graph(self, model: onnx.ModelProto, path: Path, note: str = "") -> "Prepared":
        """Another graph of the same model (equalized, bias-corrected), saved to ``path``."""
        onnx.save(model, str(path))
        return Prepared(path, model, (*self.steps, note) if note else self.steps, self.header)


def prepare(model_path: Path, opset: int, tmp: Path, progress: ProgressFn, cancel: CancelToken) -> Prepared:
    """Load ``model_path``, fix what real exporters get wrong, and run
    quant_pre_process; the result lives in ``tmp``."""
    model = load_proto(model_path, load_external=True)
    header = _header(model)
    steps = []
    moved = constants_to_initializers(model)
    if moved:
        steps.append(f"moved {moved} Constant node(s) into initializers so their weights can be quantized")
    model, note = upgrade_opset(model, opset)
    if note:
        steps.append(note)
    source = tmp / "source.onnx"
    onnx.save(model, str(source))
    del model
    progress(ProgressEvent(PREPARE, 1, 3, "pre-processing (shape inference, optimization)"))
    cancel.check()
    path = tmp / "prepared.onnx"
    steps.append("quant_pre_process: " + pre_process(source, path))
    prepared = onnx.load(str(path))
    flattened = flatten_gemm_biases(prepared)
    if flattened:
        steps.append(f"reshaped {flattened} Gemm bias(es) from [1, N] to [N]")
    named = name_nodes(prepared)
    if named:
        steps.append(f"named {named} unnamed node(s) (Op_index) so that they can be kept in float and reported")
    if flattened or named:
        onnx.save(prepared, str(path))
    progress(ProgressEvent(PREPARE, 3, 3, "ready"))
    return Prepared(path, prepared, tuple(steps), header)


def build(prepared: Prepared, ranges: dict, settings, out: Path) -> None:
    """ONNX Runtime writes the INT8 graph from our ranges (Concat inputs tied
    to their Concat's range when the settings say so)."""
    quantize_file(prepared.path, shared_ranges(prepared.model, ranges, settings), settings, out)


def quantize_file(model: Path, ranges: dict, settings, out: Path) -> None:
    """ONNX Runtime's quantizer on ``model`` with these final ranges; its
    failures become a ModelError in words.

    The quantizer writes ``<model>-inferred.onnx`` beside its input and
    deletes it: two workers quantizing the same graph at once would delete
    each other's. Each run reads its own link to ``model``, in a folder of
    its own."""
    try:
        with tempfile.TemporaryDirectory(prefix="quantize-", dir=out.parent) as own:
            link = Path(own) / model.name
            try:
                os.link(model, link)
            except OSError:  # another file system, or no hard links there
                shutil.copyfile(model, link)
            quantize_with_ranges(link, out, ranges, settings, Path(own))
    except Exception as exc:  # noqa: BLE001 - ORT's quantizer raises anything
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"ONNX Runtime's quantizer failed: {text}",
            "Try keeping the failing node in float (exclude it), or the per-tensor or QOperator options.",
        ) from None


def _header(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model's metadata_props, producer and doc strings, without its graph."""
    h = onnx.ModelProto()
    h.metadata_props.extend(model.metadata_props)
    for f in _HEADER_FIELDS:
        setattr(h, f, getattr(model, f))
    h.graph.doc_string = model.graph.doc_string
    return h


def carry_over_metadata(header: onnx.ModelProto, quantized: Path, final: Path) -> None:
    """Write ``quantized`` to ``final`` with the input's metadata_props,
    producer and doc strings."""
    out = onnx.load(str(quantized))
    del out.metadata_props[:]
    out.metadata_props.extend(header.metadata_props)
    for f in _HEADER_FIELDS:
        setattr(out, f, getattr(header, f))
    out.graph.doc_string = header.graph.doc_string
    onnx.save(out, str(final))
