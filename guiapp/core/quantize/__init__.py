"""Writing the INT8 graph: ONNX Runtime's quantizer, output protection, the output form."""
