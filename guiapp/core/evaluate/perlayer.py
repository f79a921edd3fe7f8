"""Per-layer error: where in the network INT8 departs from FP32.

For a few images, every quantized activation of the QDQ model (the output of
its DequantizeLinear, which the next layer reads) is compared with the same
tensor of the FP32 model; every quantized weight is dequantized and compared
with its FP32 values. Errors accumulate with depth, so the activations show
where accuracy is lost; the weights show what per-channel or per-tensor costs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import onnx
from onnx import numpy_helper

from ..tasks.errorstats import ChannelErrorStats, ErrorStats, channel_axis
from ..model.feeds import Feeds
from ..model.graphprep import with_outputs
from ..progress import CancelToken
from .sessions import make_session
from ..model.nodes import attribute

DQ_SUFFIX = "_DequantizeLinear_Output"


def _qdq_activations(qdq: onnx.ModelProto) -> dict[str, str]:
    """FP32 tensor name -> the QDQ model's dequantized tensor for it. A graph
    output keeps its name on the DequantizeLinear that ends it (ONNX Runtime
    renames the producer's tensor), so it is found under its own name: the
    per-layer table must see outputs, where detectors lose their scores."""
    inits = {t.name for t in qdq.graph.initializer}
    outputs = {o.name for o in qdq.graph.output}
    producers = {o: n for n in qdq.graph.node for o in n.output}
    out = {}
    for node in qdq.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] in inits:
            continue
        q = producers.get(node.input[0])
        if q is not None and q.op_type == "QuantizeLinear" and q.input[0] not in inits:
            fp32 = node.output[0] if node.output[0] in outputs else q.input[0]
            out[fp32] = node.output[0]
    return out


def dequantized_weights(qdq: onnx.ModelProto) -> dict[str, tuple[np.ndarray, str]]:
    """DQ output name -> (dequantized weight values, DQ output name) for
    DequantizeLinear nodes fed by initializers (weights and biases)."""
    inits = {t.name: t for t in qdq.graph.initializer}
    out = {}
    for node in qdq.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        q = numpy_helper.to_array(inits[node.input[0]]).astype(np.float64)
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        zp = numpy_helper.to_array(inits[node.input[2]]).astype(np.float64) if len(node.input) > 2 and node.input[2] else 0.0
        axis = attribute(node, "axis", 1)
        if np.ndim(scale) == 1 and q.ndim > 1:
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zp = scale.reshape(shape), np.reshape(zp, shape) if np.ndim(zp) == 1 else zp
        out[node.output[0]] = (q - zp) * scale
    return out


def per_layer_error(
    fmodel: onnx.ModelProto,
    qdq: Path,
    feeds: Feeds,
    batches: Iterator[tuple[list[Path], np.ndarray]],
    cancel: CancelToken,
    threads: int | None = None,
) -> list[dict]:
    """``{name, kind, node, op_type, sqnr_db, cosine}`` for every quantized
    activation and weight, worst SQNR first. ``fmodel`` is the pre-processed
    FP32 graph the QDQ model was made from (same tensor names)."""
    input_name = feeds.image
    qmodel = onnx.load(str(qdq))
    producers = {o: n for n in fmodel.graph.node for o in n.output}
    consumers: dict[str, onnx.NodeProto] = {}
    for n in fmodel.graph.node:
        for i in n.input:
            consumers.setdefault(i, n)
    typed = {vi.name: vi for vi in list(fmodel.graph.value_info) + list(fmodel.graph.output)}

    pairs = {k: v for k, v in _qdq_activations(qmodel).items() if k in typed or k == input_name}
    rows = []
    if pairs:
        names = [n for n in pairs if n != input_name]
        f_aug = with_outputs(fmodel, [typed[n] for n in names])
        q_aug = with_outputs(qmodel, [onnx.helper.make_empty_tensor_value_info(pairs[n]) for n in pairs])
        fs, qs = make_session(f_aug.SerializeToString(), threads), make_session(q_aug.SerializeToString(), threads)
        q_names = [pairs[n] for n in pairs]
        stats = {n: ErrorStats() for n in pairs}
        per_channel: dict[str, ChannelErrorStats | None] = {}
        for _, batch in batches:
            cancel.check()
            feed = feeds(batch)
            f_out = dict(zip(names, fs.run(names, feed)))
            if input_name in pairs:
                f_out[input_name] = batch
            q_out = dict(zip(q_names, qs.run(q_names, feed)))
            for n in pairs:
                a, b = np.asarray(f_out[n]), np.asarray(q_out[pairs[n]])
                stats[n].add(a, b)
                if n not in per_channel:
                    axis = channel_axis(a.shape)
                    per_channel[n] = None if axis is None else ChannelErrorStats(axis)
                if per_channel[n] is not None:
                    per_channel[n].add(a, b)
        for n, st in stats.items():
            node = producers.get(n)
            r = st.result(n)
            ch = per_channel.get(n)
            rows.append({"name": n, "kind": "activation", "node": node.name if node else n,
                         "op_type": node.op_type if node else "Input", "sqnr_db": r["sqnr_db"], "cosine": r["cosine"],
                         "channel_noise": ch.mean_noise_ratio() if ch is not None else None})

    f_inits = {t.name: t for t in fmodel.graph.initializer}
    # Biases are quantized to int32 with scale = input scale x weight scale:
    # their error says nothing that the weight's and the input's do not.
    biases = {n.input[2] for n in fmodel.graph.node if n.op_type in ("Conv", "Gemm", "ConvTranspose") and len(n.input) > 2}
    for dq_out, values in dequantized_weights(qmodel).items():
        name = dq_out[: -len(DQ_SUFFIX)] if dq_out.endswith(DQ_SUFFIX) else dq_out
        if name not in f_inits or name in biases:
            continue
        ref = numpy_helper.to_array(f_inits[name]).astype(np.float64)
        if ref.shape != values.shape:
            continue
        st = ErrorStats()
        st.add(ref.reshape(1, -1), values.reshape(1, -1))
        r = st.result(name)
        node = consumers.get(name)
        rows.append({"name": name, "kind": "weight", "node": node.name if node else name,
                     "op_type": node.op_type if node else "", "sqnr_db": r["sqnr_db"], "cosine": r["cosine"],
                     "channel_noise": None})
    rows.sort(key=lambda r: (r["sqnr_db"] is None, r["sqnr_db"] if r["sqnr_db"] is not None else 0.0))
    return rows
