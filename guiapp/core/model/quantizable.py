"""Which operator types ONNX Runtime's static quantizer handles, and which
operators mean a model is already quantized."""

from __future__ import annotations

from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

# quantize_static quantizes the union of both registries in either format.
QUANTIZABLE_OP_TYPES = frozenset(QDQRegistry) | frozenset(QLinearOpsRegistry)

# Ops that move or reshape data, or compute shapes: worth no mention when they
# stay float, since they cost (almost) nothing.
STRUCTURAL_OP_TYPES = frozenset(
    {
        "Constant", "ConstantOfShape", "Shape", "Size", "Cast", "CastLike", "Identity", "Dropout",
        "Range", "NonZero", "Expand", "Tile", "Unsqueeze", "Squeeze", "Reshape", "Flatten",
        "Transpose", "Concat", "Slice", "Split", "Gather", "GatherElements", "GatherND",
        "ScatterND", "Equal", "Less", "Greater", "Not", "And", "Or", "If", "Loop", "Scan",
        "DepthToSpace", "SpaceToDepth", "Pad", "Floor", "Ceil", "Round", "ArgMax", "ArgMin",
    }
)

_QUANTIZED = frozenset(
    {
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger",
        "QGemm", "QAttention", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulNBits",
        "DynamicQuantizeLSTM", "QEmbedLayerNormalization",
    }
)


def is_quantized_op(op_type: str) -> bool:
    return op_type in _QUANTIZED or op_type.startswith("QLinear") or op_type.startswith("QOrdered")
