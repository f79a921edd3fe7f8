"""External weight files: found, checked to stay inside the model's folder.

A model's external-data ``location`` is a path written by whoever made the
file. We refuse any that would read outside the model's folder (``..``,
absolute paths, symlinks leading out), before anything is read.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx

from ..errors import ModelError


def _tensors(model: onnx.ModelProto):
    yield from model.graph.initializer
    for node in model.graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                yield a.t


def external_locations(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """(tensor name, location) for every tensor stored outside the file."""
    out = []
    for t in _tensors(model):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            loc = next((e.value for e in t.external_data if e.key == "location"), "")
            out.append((t.name, loc))
    return out


def external_files(model: onnx.ModelProto) -> list[str]:
    return sorted({loc for _, loc in external_locations(model)})


def check_external_data(model: onnx.ModelProto, folder: Path) -> None:
    """Raise ModelError unless every external file lies inside ``folder``."""
    root = Path(os.path.realpath(folder))
    for name, loc in external_locations(model):
        if not loc:
            raise ModelError(f"weight {name!r} is stored externally but names no file.", "Export the model again.")
        if "\0" in loc or len(loc) > 4096:
            raise ModelError(f"weight {name!r} names an impossible file ({loc[:40]!r}); refused.", "Export the model again.")
        p = Path(loc)
        if p.is_absolute() or p.drive or ".." in p.parts:
            raise ModelError(
                f"weight {name!r} points to {loc!r}, outside the model's folder; refused for safety.",
                "Keep external weight files next to the .onnx file and reference them by file name.",
            )
        try:
            real = Path(os.path.realpath(root / p))
        except (OSError, ValueError):
            raise ModelError(f"weight {name!r} names a file that cannot be resolved ({loc[:60]!r}).", "Export the model again.") from None
        if root != real and root not in real.parents:
            raise ModelError(
                f"weight {name!r} is in {loc!r}, a link leading outside the model's folder; refused for safety.",
                "Copy the weight file next to the .onnx file instead of linking to it.",
            )
        if not real.is_file():
            raise ModelError(f"the external weight file {loc!r} is missing next to the model.", "Copy it beside the .onnx file.")
