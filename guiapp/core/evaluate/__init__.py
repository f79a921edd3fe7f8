"""FP32 vs INT8: comparisons, per-layer error, latency, pictures."""
