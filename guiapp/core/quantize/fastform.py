"""Which of ONNX Runtime's INT8 kernels a quantized convolution gets, and an
exact rewrite that picks the faster one where the CPU has AMX.

What ONNX Runtime (1.32, CPU) does with the QDQ graph the app writes
(profiled on MobileNetV2 and squeezenet1.1; ``bench/output_forms.py
--profile`` prints it): every ``DequantizeLinear -> Conv -> QuantizeLinear``
becomes a ``QLinearConv``, and its NHWC transformer makes them all
``channels_last``; with uint8 activations and int8 weights whose zero point
is 0 (the quantizer's symmetric weights, our default) MLAS runs its
symmetric convolution kernels (``ConvSym``: AVX2, AVX-VNNI, AVX512 core and
VNNI; NEON and dot-product kernels on Arm), depthwise ones included when the
channel count is a multiple of 16 (8 on Arm). Clip/Relu after a convolution
are already folded into the output range. So the graph is in the fast form
already, and on x86 that is as fast as it gets for depthwise convolutions:
MLAS's x86 depthwise kernel widens every byte to a 32-bit lane, as many
multiply-adds per instruction as FP32's FMA, plus about 8 ns per output pixel
of indirection and call overhead; INT8 depthwise layers take 0.9-1.0x their
FP32 time (Arm64 has dedicated 3x3 and 5x5 depthwise kernels).

AMX is the exception. On a CPU with AMX-INT8 (Intel Sapphire Rapids and
later) MLAS runs its general uint8 x int8 GEMM on AMX tiles, but its
symmetric convolution kernels do not use AMX. A pointwise (1x1) convolution
whose weights are *not* symmetric goes to that GEMM. Measured per layer on
MobileNetV2 (Xeon with AMX, batch 1): 20-30 % faster than the symmetric
kernel from about 320 input channels up, much slower below (5x at 16). With
AMX withheld from ONNX Runtime on the same CPU (its VNNI GEMM), the two paths
are even at those sizes: no gain, no loss.

The rewrite (:func:`gemm_pointwise`): int8 weights ``q`` with zero point 0
become ``q - 1`` with zero point -1. The dequantized weights are the same
numbers, ``(q - 1) - (-1) = q``, and ONNX Runtime computes the same integer
sums, so the outputs are bit-identical; only the kernel changes. It needs
``q >= -127`` (the quantizer's symmetric range is [-127, 127]), and leaves
weights any other node reads alone.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import numpy_helper

from ..evaluate.cpu import CpuInfo
from ..model.nodes import attribute

AMX_MIN_INPUT_CHANNELS = 320  # below this the AMX GEMM loses to the symmetric kernel (measured, MobileNetV2)
SHIFT = -1  # the zero point the rewritten weights get


def amx_int8(cpu: CpuInfo) -> bool:
    """Whether ONNX Runtime's INT8 GEMM runs on AMX tiles on ``cpu`` (Linux
    lists ``amx_int8`` and ``amx_tile`` only when the kernel supports them)."""
    return cpu.flags is not None and {"amx_int8", "amx_tile"} <= cpu.flags


def gemm_pointwise(model: onnx.ModelProto, min_channels: int = AMX_MIN_INPUT_CHANNELS) -> list[str]:
    """Rewrite, in place, the symmetric int8 weights of every pointwise
    ``group=1`` convolution with at least ``min_channels`` input channels
    (QDQ ``DequantizeLinear -> Conv`` or QOperator ``QLinearConv``) to zero
    point -1 (module docstring). Returns the names of the convolutions
    rewritten."""
    g = model.graph
    init = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    readers = Counter(i for n in g.node for i in n.input)
    readers.update(o.name for o in g.output)
    done = []
    for node in g.node:
        if attribute(node, "group", 1) != 1:
            continue
        if node.op_type == "Conv":
            dq = producer.get(node.input[1]) if len(node.input) > 1 else None
            if dq is None or dq.op_type != "DequantizeLinear" or len(dq.input) < 3 or readers[dq.output[0]] != 1:
                continue
            names = (dq.input[0], dq.input[2])
        elif node.op_type == "QLinearConv" and len(node.input) > 5:
            names = (node.input[3], node.input[5])
        else:
            continue
        if _shift(names, init, readers, min_channels):
            done.append(node.name or node.output[0])
    return done


def _shift(names: tuple[str, str], init: dict, readers: Counter, min_channels: int) -> bool:
    """Shift one weight initializer and its zero point when both are int8,
    read by this convolution only, pointwise, wide enough and symmetric."""
    w_name, zp_name = names
    if w_name not in init or zp_name not in init or readers[w_name] != 1 or readers[zp_name] != 1:
        return False
    w = numpy_helper.to_array(init[w_name])
    zp = numpy_helper.to_array(init[zp_name])
    if w.dtype != np.int8 or zp.dtype != np.int8 or w.ndim < 3 or any(d != 1 for d in w.shape[2:]):
        return False
    if w.shape[1] < min_channels or zp.any() or w.size == 0 or int(w.min()) < -127:
        return False
    init[w_name].CopyFrom(numpy_helper.from_array((w.astype(np.int16) + SHIFT).astype(np.int8), w_name))
    init[zp_name].CopyFrom(numpy_helper.from_array(np.full(zp.shape, SHIFT, np.int8), zp_name))
    return True

