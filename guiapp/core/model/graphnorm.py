"""Normalization a model does itself: the arithmetic with constants that its
first nodes apply to the image (Sub/Div/Mul/Add, BatchNormalization), with
the values, folded into the app's own terms ``(x - mean) / std`` when every
constant is one number or one number per channel.

A model that normalizes its input must get the image as its graph expects
it (0..255 pixels: the ``raw`` preset; or 0..1: the ``unit`` preset), never a
second normalization on top.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from .nodes import attribute

ARITHMETIC = ("Sub", "Div", "Mul", "Add", "BatchNormalization")
PASS_THROUGH = ("Transpose", "Cast", "Identity", "Reshape", "Unsqueeze")
MAX_STEPS = 6  # the first few nodes only: later arithmetic is the network itself


@dataclass(frozen=True)
class GraphNormalization:
    """What the model's first nodes do to the image."""

    steps: tuple[tuple[str, str], ...]  # (op type, its constant in words), in graph order
    mean: tuple[float, ...] | None  # the same as (x - mean) / std per channel, when it folds
    std: tuple[float, ...] | None

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(op for op, _ in self.steps)

    @property
    def expects(self) -> str:
        """``"pixels"`` (0..255 in) or ``"unit"`` (0..1 in): what the graph's
        constants are made for; ``"pixels"`` when they do not fold."""
        if self.mean is None or self.std is None:
            return "pixels"
        small = max(abs(v) for v in self.mean) <= 1.5 and max(abs(v) for v in self.std) <= 1.5
        return "unit" if small else "pixels"

    @property
    def preset(self) -> str:
        """The app preset that feeds the graph what it expects."""
        return "unit" if self.expects == "unit" else "raw"

    def describe(self) -> str:
        """One sentence: the ops with their values, and what they amount to."""
        text = ", then ".join(f"{op} {values}" for op, values in self.steps)
        if self.mean is not None and self.std is not None:
            text += f" (the same as (x − mean) / std with mean {_fmt(self.mean)}, std {_fmt(self.std)})"
        return text

    def advice(self) -> str:
        if self.preset == "unit":
            return ("Its constants are in 0..1 units: use the unit preset (x / 255) so that it gets 0..1 images, "
                    "and no other normalization.")
        return "Use the raw preset (0..255 pixels unchanged): a second normalization here would do it twice."

    def to_dict(self) -> dict:
        return {
            "ops": list(self.ops),
            "steps": [{"op": op, "values": v} for op, v in self.steps],
            "mean": list(self.mean) if self.mean is not None else None,
            "std": list(self.std) if self.std is not None else None,
            "expects": self.expects,
            "preset": self.preset,
        }


def _fmt(values) -> str:
    vals = [f"{v:.4g}" for v in values]
    return vals[0] if len(set(vals)) == 1 else "(" + ", ".join(vals) + ")"


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    out = {t.name: t for t in model.graph.initializer}
    arrays: dict[str, np.ndarray] = {}
    for name, t in out.items():
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.dims) > 4 or np.prod(t.dims, dtype=np.int64) > 4096:
            continue  # only small constants can be a normalization
        try:
            with np.errstate(all="ignore"):  # a damaged file can hold anything
                arrays[name] = numpy_helper.to_array(t).astype(np.float64)
        except (ValueError, TypeError):
            continue
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output:
            for a in n.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    try:
                        with np.errstate(all="ignore"):
                            arrays[n.output[0]] = numpy_helper.to_array(a.t).astype(np.float64)
                    except (ValueError, TypeError):
                        pass
                elif a.name == "value_float":
                    arrays[n.output[0]] = np.array(a.f, np.float64)
    return arrays


def _per_channel(c: np.ndarray, axis: int | None, channels: int) -> np.ndarray | None:
    """A constant as one value per channel (length ``channels``), or None
    when it varies over anything but the channel axis (a mean image)."""
    if c.size == 1:
        return np.full(channels, float(c.reshape(-1)[0]))
    if axis is None or c.ndim > 4:
        return None
    shape = (1,) * (4 - c.ndim) + c.shape  # numpy broadcasting aligns from the right
    if shape[axis] == channels and c.size == channels:
        return c.reshape(-1).astype(np.float64)
    return None


def _words(c: np.ndarray) -> str:
    flat = c.reshape(-1)
    if flat.size <= 4:
        return _fmt(flat)
    return f"a constant of shape {list(c.shape)}"


def graph_normalization(model: onnx.ModelProto, name: str, layout: str, channels: int) -> GraphNormalization | None:
    """The normalization ``model`` applies to its input ``name`` itself, or
    None. ``layout`` ("nchw"/"nhwc") and ``channels`` say where the channel
    axis is, so that per-channel constants are read along it."""
    consts = _constants(model)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    axis: int | None = 1 if layout == "nchw" else 3
    scale, shift = np.ones(channels), np.zeros(channels)  # y = scale * x + shift, per channel
    folds = True
    steps: list[tuple[str, str]] = []
    current = name
    for _ in range(MAX_STEPS):
        users = consumers.get(current, [])
        if len(users) != 1:
            break
        n = users[0]
        if n.op_type in PASS_THROUGH:
            if n.op_type == "Transpose" and axis is not None:
                perm = attribute(n, "perm")
                axis = perm.index(axis) if perm and axis in perm else None
            elif n.op_type in ("Reshape", "Unsqueeze"):
                axis = None  # the channel axis is no longer known
            current = n.output[0]
            continue
        if n.op_type not in ARITHMETIC:
            break
        others = [i for i in n.input if i and i != current]
        if not others or not all(i in consts for i in others):
            break
        if n.op_type == "BatchNormalization":  # per channel along axis 1, always
            gamma, beta, mu, var = (consts[i] for i in n.input[1:5])
            eps = attribute(n, "epsilon", 1e-5)
            k = gamma / np.sqrt(var + eps)
            vals = [v.reshape(-1) if v.size == channels else None for v in (k, beta - mu * k)]
            steps.append(("BatchNormalization", f"mean {_words(mu)}, variance {_words(var)}"))
            if axis != 1 or any(v is None for v in vals):
                folds = False
            else:
                scale, shift = scale * vals[0], shift * vals[0] + vals[1]
        else:
            c = consts[others[0]]
            steps.append((n.op_type, _words(c)))
            v = _per_channel(c, axis, channels)
            first = n.input[0] != current  # the constant comes first: c - x, c / x
            if v is None or (first and n.op_type == "Div") or (n.op_type == "Div" and np.any(v == 0)):
                folds = False
            elif n.op_type == "Sub":
                scale, shift = (-scale, v - shift) if first else (scale, shift - v)
            elif n.op_type == "Add":
                shift = shift + v
            elif n.op_type == "Mul":
                scale, shift = scale * v, shift * v
            else:  # Div
                scale, shift = scale / v, shift / v
        current = n.output[0]
    if not steps:
        return None
    if not folds or np.any(scale == 0):
        return GraphNormalization(tuple(steps), None, None)
    std = 1.0 / scale
    mean = -shift * std
    return GraphNormalization(tuple(steps), tuple(float(round(m, 6)) for m in mean), tuple(float(round(s, 6)) for s in std))
