"""Reading an ONNX file safely: every way a file can be broken (missing,
empty, truncated, not ONNX, damaged text fields, dangling references,
external data that escapes its folder) becomes a ModelError that says what
to do. The file is never modified.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from ..errors import ModelError


def load_proto(path: str | os.PathLike, load_external: bool = False) -> onnx.ModelProto:
    """Parse an ONNX file, turning every way it can be broken into ModelError."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file {path} does not exist.", "Check the path.")
    if not path.is_file():
        raise ModelError(f"{path} is not a file.", "Give the path of an .onnx model file.")
    size = path.stat().st_size
    if size == 0:
        raise ModelError(f"{path} is empty (0 bytes).", "Export the model again or pick another file.")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}.", "Check the file's permissions.") from None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelError(
            f"{path.name} is not a valid ONNX model ({_short(exc)}); it may be truncated or another kind of file.",
            "Export it again from your training framework.",
        ) from None
    del data
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise ModelError(
            f"{path.name} does not contain an ONNX graph; it may be truncated or another kind of file.",
            "Export it again from your training framework.",
        )
    _check_text(model, path)
    _check_references(model, path)
    from .external import check_external_data, external_files

    if external_files(model):
        check_external_data(model, path.parent)
        if load_external:
            onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
    return model


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]


def _check_text(model: onnx.ModelProto, path: Path) -> None:
    """Every string field must be text: a damaged file can leave bytes that
    are not UTF-8, which the protobuf parser hands back as bytes."""
    if not _all_text(model):
        raise ModelError(
            f"{path.name} is damaged: some names in it are not valid text (a corrupted or truncated file?).",
            "Export the model again.",
        )


def _all_text(message) -> bool:
    for desc, value in message.ListFields():
        if desc.type == desc.TYPE_STRING:
            values = (value,) if isinstance(value, (str, bytes)) else value  # else: a repeated field
            if not all(isinstance(v, str) for v in values):
                return False
        elif desc.type == desc.TYPE_MESSAGE:
            values = (value,) if hasattr(value, "ListFields") else value
            if not all(_all_text(v) for v in values):
                return False
    return True


def _check_references(model: onnx.ModelProto, path: Path) -> None:
    """Every tensor a node reads must come from somewhere: a truncated file often
    parses, but loses the initializers or nodes at its end."""
    g = model.graph
    # Order-free: some exporters write nodes out of topological order, and
    # ONNX Runtime accepts that.
    known = {i.name for i in g.input} | {i.name for i in g.initializer} | {i.name for i in g.sparse_initializer} | {""}
    for node in g.node:
        known.update(node.output)
    for node in g.node:
        for name in node.input:
            if name not in known:
                raise ModelError(
                    f"{path.name} is incomplete: node {node.name or node.op_type!r} reads {name!r}, which nothing defines "
                    "(is the file truncated?).",
                    "Export the model again.",
                )
    for out in g.output:
        if out.name not in known:
            raise ModelError(f"{path.name} is incomplete: output {out.name!r} is never computed (is the file truncated?).", "Export the model again.")
