"""Cross-layer equalization (Nagel et al., "Data-Free Quantization Through
Weight Equalization and Bias Correction", 2019).

For two consecutive convolutions with a ReLU between them, scaling output
channel i of the first by 1/s_i and input channel i of the second by s_i
leaves the function unchanged (ReLU(x / s) = ReLU(x) / s for s > 0). With
s_i = sqrt(r1_i / r2_i), where r1_i and r2_i are the weight ranges of that
channel in each layer, both layers' channels end up with equal ranges: one
per-tensor INT8 scale then fits every channel, which is what per-tensor
targets (many NPUs) need. Depthwise-separable nets (MobileNet) are the case
where channels differ by orders of magnitude.

ReLU6 (Clip 0..hi) between the layers is not scale-invariant. The paper
replaces it by ReLU; on a MobileNetV2 trained with ReLU6 that changed the
FP32 model's top-1 on 19 % of images here. Instead a channel is rescaled only
where the Clip stays exact on the calibration images: a channel whose
pre-activation reaches ``hi`` keeps its scale (s = 1), and a channel that
never does is scaled by at least max/hi, so it still never reaches ``hi``
(then clip(x / s) = clip(x) / s). Per-channel maxima come from a few
calibration images (``channel_max``); without them Clip pairs are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from ..model.nodes import attribute

ITERATIONS = 20


@dataclass(frozen=True)
class Pair:
    first: str  # Conv node names
    second: str
    activation: str | None  # the Relu/Clip node between them
    clip_hi: float | None = None  # a Clip's upper bound (None: ReLU or nothing, scale-invariant)
    pre_activation: str = ""  # the first conv's output tensor


def _consumers(g: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def _group(n: onnx.NodeProto) -> int:
    return attribute(n, "group", 1)


def _relu_like(n: onnx.NodeProto, inits: dict) -> bool:
    if n.op_type == "Relu":
        return True
    if n.op_type != "Clip" or len(n.input) < 2 or n.input[1] not in inits:
        return False
    return float(numpy_helper.to_array(inits[n.input[1]])) == 0.0


def find_pairs(model: onnx.ModelProto) -> list[Pair]:
    """Conv -> (Relu | Clip(0, x))? -> Conv chains where each tensor between
    them has one consumer and the weights are initializers."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consumers = _consumers(g)
    outputs = {o.name for o in g.output}
    shared = {name for name, users in consumers.items() if len(users) > 1}  # weights used twice stay as they are
    pairs = []
    for n in g.node:
        if n.op_type != "Conv" or n.input[1] not in inits or n.input[1] in shared:
            continue
        t = n.output[0]
        nxt = consumers.get(t, [])
        if len(nxt) != 1 or t in outputs:
            continue
        act, hi = None, None
        if nxt[0].op_type in ("Relu", "Clip"):
            if not _relu_like(nxt[0], inits):
                continue
            act = nxt[0]
            if act.op_type == "Clip" and len(act.input) > 2 and act.input[2]:
                if act.input[2] not in inits:
                    continue
                hi = float(numpy_helper.to_array(inits[act.input[2]]))
            nxt = consumers.get(act.output[0], [])
            if len(nxt) != 1 or act.output[0] in outputs:
                continue
        second = nxt[0]
        if (second.op_type != "Conv" or second.input[0] != (act.output[0] if act else t)
                or second.input[1] not in inits or second.input[1] in shared):
            continue
        pairs.append(Pair(n.name, second.name, act.name if act else None, hi, t))
    return pairs


def _in_channel_ranges(w2: np.ndarray, group: int, channels: int) -> np.ndarray:
    """|W2| max per input channel of the second conv (grouped convs too)."""
    o, cin = w2.shape[:2]
    per_out = np.abs(w2).reshape(o, cin, -1).max(axis=2)  # [O, cin per group]
    if group == 1:
        return per_out.max(axis=0)
    outs = o // group
    r = np.empty(channels)
    for c in range(channels):
        g, k = divmod(c, cin)
        r[c] = per_out[g * outs:(g + 1) * outs, k].max()
    return r


def _scale_in_channels(w2: np.ndarray, s: np.ndarray, group: int) -> np.ndarray:
    o, cin = w2.shape[:2]
    if group == 1:
        return w2 * s.reshape(1, -1, *([1] * (w2.ndim - 2)))
    outs = o // group
    w2 = w2.copy()
    for c, sc in enumerate(s):
        g, k = divmod(c, cin)
        w2[g * outs:(g + 1) * outs, k] *= sc
    return w2


def clip_tensors(model: onnx.ModelProto) -> list[str]:
    """The pre-activation tensors whose per-channel maxima equalization needs."""
    return [p.pre_activation for p in find_pairs(model) if p.clip_hi is not None]


RARE = 1e-3  # a channel past its Clip bound this seldom (share of its values) may still grow its scale
MARGIN = 2.0  # room above the calibration maximum of a channel that never reached the bound


def equalize(model: onnx.ModelProto, channel_max: dict[str, np.ndarray] | None = None,
             channel_over: dict[str, np.ndarray] | None = None) -> tuple[onnx.ModelProto, int, int]:
    """A copy of ``model`` with every equalizable pair equalized. Returns it,
    the number of pairs, and how many channels a Clip kept from rescaling."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    channel_max = channel_max or {}
    pairs = [p for p in find_pairs(m) if p.clip_hi is None or p.pre_activation in channel_max]
    if not pairs:
        return m, 0, 0
    nodes = {n.name: n for n in g.node}
    inits = {t.name: t for t in g.initializer}
    weights = {name: numpy_helper.to_array(inits[name]).astype(np.float64) for p in pairs
               for name in (nodes[p.first].input[1], nodes[p.second].input[1])}
    biases = {}
    for p in pairs:
        n1 = nodes[p.first]
        if len(n1.input) > 2 and n1.input[2] in inits:
            biases[n1.input[2]] = numpy_helper.to_array(inits[n1.input[2]]).astype(np.float64)
    _zero_dead_inputs(pairs, nodes, weights, biases)  # in place; the count is for tests
    total = {p.first: np.ones(weights[nodes[p.first].input[1]].shape[0]) for p in pairs}
    floor, frozen = {}, {}
    channel_over = channel_over or {}
    for p in pairs:
        if p.clip_hi is not None:
            top = np.asarray(channel_max[p.pre_activation], np.float64)
            over = np.asarray(channel_over.get(p.pre_activation, (top >= p.clip_hi).astype(float)), np.float64)
            rare = (top >= p.clip_hi) & (over < RARE)
            frozen[p.first] = (top >= p.clip_hi) & ~rare  # the Clip bites: rescaling would change it
            # Cumulative scale that keeps x / s below hi; a channel that passes hi only rarely may
            # only grow its scale (s >= 1: then only those rare values come out different).
            floor[p.first] = np.where(rare, 1.0, np.minimum(MARGIN * np.maximum(top, 0.0) / p.clip_hi, 1.0))
    for _ in range(ITERATIONS):
        for p in pairs:
            n1, n2 = nodes[p.first], nodes[p.second]
            w1, w2 = weights[n1.input[1]], weights[n2.input[1]]
            c = w1.shape[0]
            r1 = np.abs(w1).reshape(c, -1).max(axis=1)
            r2 = _in_channel_ranges(w2, _group(n2), c)
            ok = (r1 > 0) & (r2 > 0)
            s = np.ones(c)
            s[ok] = np.sqrt(r1[ok] / r2[ok])
            if p.first in frozen:
                want = total[p.first] * s
                want = np.where(frozen[p.first], 1.0, np.maximum(want, floor[p.first]))
                s = want / total[p.first]
            total[p.first] = total[p.first] * s
            weights[n1.input[1]] = w1 / s.reshape(-1, *([1] * (w1.ndim - 1)))
            if len(n1.input) > 2 and n1.input[2] in biases:
                biases[n1.input[2]] = biases[n1.input[2]] / s
            weights[n2.input[1]] = _scale_in_channels(w2, s, _group(n2))
    for name, w in {**weights, **biases}.items():
        old = inits[name]
        new = numpy_helper.from_array(w.astype(numpy_helper.to_array(old).dtype), name)
        old.CopyFrom(new)
    kept = int(sum(int(f.sum()) for f in frozen.values()))
    return m, len(pairs), kept


def _zero_dead_inputs(pairs: list[Pair], nodes: dict, weights: dict, biases: dict) -> int:
    """Zero the second conv's weights that read a channel which is always 0:
    the first conv's weights and bias for it are 0 or below and a ReLU/Clip(0, .)
    follows. Exact, and it matters: a dead channel's (meaningless, often large)
    weights otherwise set the second layer's per-tensor range."""
    count = 0
    for p in pairs:
        if p.activation is None:
            continue
        n1, n2 = nodes[p.first], nodes[p.second]
        w1 = weights[n1.input[1]]
        c = w1.shape[0]
        b1 = biases.get(n1.input[2]) if len(n1.input) > 2 else None
        dead = ~np.abs(w1).reshape(c, -1).any(axis=1)
        if b1 is not None:
            dead &= b1 <= 0
        if not dead.any():
            continue
        keep = np.where(dead, 0.0, 1.0)
        weights[n2.input[1]] = _scale_in_channels(weights[n2.input[1]], keep, _group(n2))
        count += int(dead.sum())
    return count


def equalized(model: onnx.ModelProto, feeds, batches, cancel) -> tuple[onnx.ModelProto, str]:
    """Equalize ``model``, measuring the per-channel maxima its Clip pairs need
    on ``batches``; returns it and a note for the report."""
    from .biascorr import channel_stats

    tensors = clip_tensors(model)
    maxima = {t: top for t, (_, top) in channel_stats(model, tensors, feeds, batches, cancel).items()} if tensors else {}
    out, pairs, kept = equalize(model, maxima)
    note = f"cross-layer equalization: {pairs} conv pair(s) rescaled"
    if kept:
        note += f" ({kept} channel(s) left as they were: their ReLU6/Clip bound is reached, rescaling would change the model)"
    return out, note
