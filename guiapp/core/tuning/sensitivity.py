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
    out = []
    for n in model.graph.node:
        if not n.name or n.name in exclude:
            continue
        outs = [o for o in n.output if o in noise]
        if not outs:
            continue
        received = max((noise[i] for i in n.input if i in noise), default=0.0)
        own = max(noise[o] for o in outs) - received
        accumulated = min((total[o] for o in outs if total[o] is not None), default=200.0)
        heavy = n.op_type in HEAVY
        out.append((n.name, own, accumulated, heavy))
    out.sort(key=lambda t: (-t[1], t[2], not t[3]))
    return [(name, own) for name, own, _, _ in out if own > 0]
