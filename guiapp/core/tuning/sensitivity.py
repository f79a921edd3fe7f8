"""Which layers to keep in float first: the error each layer adds by itself.

From one per-layer comparison of the current INT8 model with FP32 (every
quantized activation, a few images), a node's own contribution is the noise
ratio of its output minus the worst of its inputs' (the error it received),
as ONNX Runtime's qdq_loss_debug and RKNN's accuracy_analysis separate
"single" from "entire". Noise is taken per channel, averaged: a score row
crushed to zero inside a tensor whose box rows dominate shows here. Layers
with equal own error are ordered by the error accumulated up to them.
"""

from __future__ import annotations

import onnx

HEAVY = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
# ONNX Runtime folds these into the layer before them (the quantized range does the clipping):
# keeping one in float only un-clips that layer's output range. Their error is the layer's.
FOLDED = frozenset({"Relu", "Clip"})


def _noise(row: dict) -> float:
    """Noise-to-signal power of a tensor: per channel when measured, else whole."""
    if row.get("channel_noise") is not None:
        return row["channel_noise"]
    sqnr = row.get("sqnr_db")
    return 0.0 if sqnr is None else 10 ** (-sqnr / 10)


def rank(model: onnx.ModelProto, rows: list[dict], exclude: set[str]) -> list[tuple[str, float]]:
    """Quantized nodes, most harmful first: (node name, own noise ratio).
    ``rows`` are per-layer activation rows of the current INT8 model; nodes in
    ``exclude`` (already float, or the user's) are left out."""
    noise = {r["name"]: _noise(r) for r in rows if r["kind"] == "activation"}
    total = {r["name"]: r.get("sqnr_db") for r in rows if r["kind"] == "activation"}
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    folded_into: dict[str, str] = {}  # a heavy node -> the activation ORT folds into it
    for n in model.graph.node:
        p = producer.get(n.input[0]) if n.input else None
        if n.op_type in FOLDED and p is not None and p.op_type in HEAVY and consumers.get(n.input[0]) == 1:
            folded_into[p.name] = n.output[0]
    out = []
    for n in model.graph.node:
        if not n.name or n.name in exclude or (n.op_type in FOLDED and n.input and producer.get(n.input[0]) is not None
                                               and producer[n.input[0]].name in folded_into):
            continue
        outs = [o for o in n.output if o in noise]
        if n.name in folded_into and folded_into[n.name] in noise:
            outs.append(folded_into[n.name])
        if not outs:
            continue
        received = max((noise[i] for i in n.input if i in noise), default=0.0)
        own = max(noise[o] for o in outs) - received
        accumulated = min((total[o] for o in outs if total[o] is not None), default=200.0)
        heavy = n.op_type in HEAVY
        out.append((n.name, own, accumulated, heavy))
    out.sort(key=lambda t: (-t[1], t[2], not t[3]))
    return [(name, own) for name, own, _, _ in out if own > 0]
