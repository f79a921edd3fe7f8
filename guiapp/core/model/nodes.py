"""Reading an ONNX node's attributes."""

from __future__ import annotations

from typing import Any

import onnx


def attribute(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    """The value of ``node``'s attribute ``name`` (an int, a float, a list of
    ints, ...), or ``default`` when the node does not set it."""
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default
