"""Output protection: find the graph outputs that INT8 would crush, and keep
their tails in float.

Two patterns break detectors and mask models under plain INT8 (see
../shared/NOTES.md): a Concat that joins tensors of very different ranges
into one output (YOLO's box coordinates in pixels beside 0..1 scores: one
scale for both turns every score below half a step into 0), and sigmoid or
softmax values that reach an output only through reshapes and concats (each
re-quantization of a probability costs resolution where the threshold lies).

The tail of an output is what runs after the last heavy layer (Conv, Gemm,
MatMul, ...): reshapes, concats, element-wise arithmetic, sigmoid, softmax.
Keeping the crushing part of it in float costs little (those ops are cheap)
and leaves every branch quantized with its own scale up to the join.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

SHAPE_OPS = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Slice", "Split",
                       "Gather", "Expand", "Tile", "Concat", "Cast"})
ARITHMETIC_OPS = frozenset({"Mul", "Add", "Sub", "Div", "Exp", "Neg", "Pow", "Sqrt", "Clip", "Max", "Min"})
BOUNDED_OPS = frozenset({"Sigmoid", "Softmax", "HardSigmoid", "LogSoftmax"})
TAIL_OPS = SHAPE_OPS | ARITHMETIC_OPS | BOUNDED_OPS
SPREAD_LIMIT = 10.0  # inputs of a Concat whose magnitudes differ more than this crush the smaller one


@dataclass(frozen=True)
class Protection:
    output: str  # the graph output it protects
    nodes: tuple[str, ...]  # kept in float
    reason: str

    def to_dict(self) -> dict:
        return {"output": self.output, "nodes": list(self.nodes), "reason": self.reason}


def find_protections(model: onnx.ModelProto, ranges: dict[str, tuple[float, float]]) -> list[Protection]:
    """What to keep in float, per graph output. ``ranges`` holds observed
    (min, max) of calibrated tensors. Nodes must be named (graphprep names them)."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out: list[Protection] = []
    taken: set[str] = set()
    for o in g.output:
        tail = _tail(o.name, producer)
        if not tail:
            continue
        tail_names = {n.name for n in tail}
        keep: dict[str, None] = {}
        reasons: list[str] = []
        for n in tail:
            if n.op_type == "Concat":
                spread = _spread(n, ranges)
                if spread is not None and spread > SPREAD_LIMIT:
                    keep.update(dict.fromkeys(_downstream(n, tail_names, consumers, o.name)))
                    reasons.append(f"{n.name} joins tensors whose ranges differ {spread:.0f}x: one INT8 scale would "
                                   "crush the smaller values")
            elif n.op_type in BOUNDED_OPS and _reaches_through_shapes(n, o.name, tail_names, consumers):
                keep.update(dict.fromkeys(_downstream(n, tail_names, consumers, o.name)))
                reasons.append(f"{n.op_type} values ({n.name}) go to the output through reshapes and concats only")
        nodes = tuple(k for k in keep if k not in taken)
        if nodes:
            taken.update(nodes)
            out.append(Protection(o.name, nodes, "; ".join(reasons)))
    return out


def _tail(output: str, producer: dict) -> list[onnx.NodeProto]:
    """Nodes between the last heavy layers and ``output``, in graph order of discovery."""
    seen: dict[str, onnx.NodeProto] = {}
    stack = [output]
    while stack:
        n = producer.get(stack.pop())
        if n is None or n.name in seen or n.op_type not in TAIL_OPS:
            continue
        seen[n.name] = n
        stack.extend(i for i in n.input if i)
    return list(seen.values())


def _downstream(start: onnx.NodeProto, tail: set[str], consumers: dict, output: str) -> list[str]:
    """``start`` and the tail nodes after it on the way to the output."""
    found: dict[str, None] = {start.name: None}
    stack = list(start.output)
    while stack:
        for c in consumers.get(stack.pop(), []):
            if c.name in tail and c.name not in found:
                found[c.name] = None
                stack.extend(c.output)
    return list(found)


def _reaches_through_shapes(n: onnx.NodeProto, output: str, tail: set[str], consumers: dict) -> bool:
    stack = list(n.output)
    seen = set()
    while stack:
        t = stack.pop()
        if t == output:
            return True
        if t in seen:
            continue
        seen.add(t)
        for c in consumers.get(t, []):
            if c.name in tail and c.op_type in SHAPE_OPS:
                stack.extend(c.output)
    return False


def _spread(concat: onnx.NodeProto, ranges: dict) -> float | None:
    """Largest over smallest magnitude (max |x|) among the Concat's inputs."""
    mags = []
    for i in concat.input:
        r = ranges.get(i)
        if r is None:
            continue
        m = max(abs(float(r[0])), abs(float(r[1])))
        if m > 1e-6:
            mags.append(m)
    if len(mags) < 2:
        return None
    return max(mags) / min(mags)
