"""Empirical bias correction (Nagel et al. 2019, section 4.2).

Quantizing a layer's weights shifts the mean of its output: E[W_q x] -
E[W x] = (W_q - W) E[x]. Per-tensor weights make that shift large. With the
mean of each input channel measured on a few calibration images, the shift is
subtracted from the layer's bias before quantizing, so INT8 outputs are
centred where FP32's are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import onnx
from onnx import numpy_helper

from ..model.feeds import Feeds
from ..model.graphprep import with_outputs
from ..evaluate.perlayer import dequantized_weights
from ..progress import CancelToken
from ..evaluate.sessions import make_session


def channel_means(model: onnx.ModelProto, tensors: list[str], feeds: Feeds,
                  batches: Iterator[tuple[list[Path], np.ndarray]], cancel: CancelToken) -> dict[str, np.ndarray]:
    """Mean of every channel (axis 1) of ``tensors`` over the images."""
    return {t: mean for t, (mean, _) in channel_stats(model, tensors, feeds, batches, cancel).items()}


def channel_stats(model: onnx.ModelProto, tensors: list[str], feeds: Feeds,
                  batches: Iterator[tuple[list[Path], np.ndarray]], cancel: CancelToken) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(mean, max) of every channel (axis 1) of ``tensors`` over the images."""
    g = model.graph
    typed = {vi.name: vi for vi in list(g.value_info) + list(g.output)}
    graph_inputs = {i.name for i in g.input}
    exposed = [t for t in tensors if t in typed and t not in graph_inputs]
    session = make_session(with_outputs(model, [typed[t] for t in exposed]).SerializeToString())
    sums: dict[str, np.ndarray] = {}
    tops: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for _, batch in batches:
        cancel.check()
        feed = feeds(batch)
        values = dict(zip(exposed, session.run(exposed, feed)))
        values.update({t: feed[t] for t in tensors if t in graph_inputs and t in feed})
        for t, v in values.items():
            v = np.asarray(v, dtype=np.float64)
            if v.ndim < 2:
                continue
            axes = (0, *range(2, v.ndim))
            sums[t] = sums.get(t, 0) + v.sum(axis=axes)
            top = v.max(axis=axes)
            tops[t] = top if t not in tops else np.maximum(tops[t], top)
            counts[t] = counts.get(t, 0) + int(np.prod([v.shape[a] for a in axes]))
    return {t: (sums[t] / counts[t], tops[t]) for t in sums}


def _weight_shift(node: onnx.NodeProto, w: np.ndarray, wq: np.ndarray, mean_in: np.ndarray) -> np.ndarray | None:
    """(W_q - W) E[x] per output channel, for Conv (grouped too) and Gemm."""
    d = wq - w
    if node.op_type == "Conv":
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        o, cin = d.shape[:2]
        ds = d.reshape(o, cin, -1).sum(axis=2)  # [O, cin per group]
        if mean_in.shape[0] != cin * group:
            return None
        outs = o // group
        shift = np.empty(o)
        for gi in range(group):
            shift[gi * outs:(gi + 1) * outs] = ds[gi * outs:(gi + 1) * outs] @ mean_in[gi * cin:(gi + 1) * cin]
        return shift
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        d = d if trans_b else d.T  # [N out, K in]
        return d @ mean_in if mean_in.shape[0] == d.shape[1] else None
    return None


def bias_shifts(fmodel: onnx.ModelProto, qdq: onnx.ModelProto, feeds: Feeds,
                batches: Iterator[tuple[list[Path], np.ndarray]], cancel: CancelToken) -> dict[str, np.ndarray]:
    """Per Conv/Gemm node of the FP32 graph ``fmodel``: the mean shift of its
    output that its weights' quantization in ``qdq`` causes."""
    g = fmodel.graph
    inits = {t.name: t for t in g.initializer}
    deq = {name.removesuffix("_DequantizeLinear_Output"): v for name, v in dequantized_weights(qdq).items()}
    layers = [n for n in g.node if n.op_type in ("Conv", "Gemm") and len(n.input) > 1 and n.input[1] in inits
              and n.input[1] in deq]
    means = channel_means(fmodel, [n.input[0] for n in layers], feeds, batches, cancel)
    out = {}
    for n in layers:
        mean_in = means.get(n.input[0])
        if mean_in is None:
            continue
        w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float64)
        wq = deq[n.input[1]]
        if wq.shape != w.shape:
            continue
        shift = _weight_shift(n, w, wq, mean_in)
        if shift is not None:
            out[n.name] = shift
    return out


def apply_shifts(fmodel: onnx.ModelProto, shifts: dict[str, np.ndarray], skip: set[str] = frozenset()) -> tuple[onnx.ModelProto, int]:
    """A copy of ``fmodel`` whose layers absorb their ``shifts`` in their biases
    (a layer without a bias gets one); layers in ``skip`` (kept in float, so
    not shifted) keep theirs. Returns it and how many layers changed."""
    m = onnx.ModelProto()
    m.CopyFrom(fmodel)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    corrected = 0
    for n in g.node:
        shift = shifts.get(n.name)
        if shift is None or n.name in skip:
            continue
        if len(n.input) > 2 and n.input[2] in inits:
            b = numpy_helper.to_array(inits[n.input[2]]).astype(np.float64)
            inits[n.input[2]].CopyFrom(numpy_helper.from_array((b - shift).astype(np.float32), n.input[2]))
        else:
            name = f"{n.name}_corrected_bias"
            g.initializer.append(numpy_helper.from_array((-shift).astype(np.float32), name))
            while len(n.input) < 2:
                n.input.append("")
            if len(n.input) == 2:
                n.input.append(name)
            else:
                n.input[2] = name
        corrected += 1
    return m, corrected
