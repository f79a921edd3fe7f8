#!/usr/bin/env python3
"""What exposing the calibrated tensors costs ONNX Runtime, before any folding.

Calibration runs the FP32 model with every tensor to calibrate made a graph
output (calibrate/calibration.py). On x86, ONNX Runtime runs convolutions in
its blocked NCHWc layout and fuses Conv+Clip/Relu; an exposed tensor must be
converted back to NCHW, and an exposed pre-activation tensor stops the fusion.
This prints, per image at the given batch, ONNX Runtime's time for the plain
model, with every calibrated tensor exposed, and with only the tensors left
when each Conv output read only by a Relu/Clip is not exposed (ONNX Runtime's
quantizer gives such an input its activation's range anyway), at the "all" and
"extended" optimization levels, median of --repeat runs; nothing is folded.

Example:
    python bench/calibration_exposure.py ../shared/assets/models/mobilenetv2_1.0_224.onnx
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from guiapp.core.calibrate.calibration import augmented, tensors_to_calibrate  # noqa: E402
from latency import cpu_line  # noqa: E402


def post_activation(model: onnx.ModelProto, names: list[str]) -> list[str]:
    readers: dict[str, list] = {}
    for node in model.graph.node:
        for i in node.input:
            readers.setdefault(i, []).append(node)
    producer = {o: n for n in model.graph.node for o in n.output}
    return [n for n in names if not (n in producer and producer[n].op_type == "Conv"
                                     and [r.op_type for r in readers.get(n, [])] in (["Clip"], ["Relu"]))]


def session(model: onnx.ModelProto, level) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as calibration runs it
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def ms_per_image(run, batch: int, repeat: int) -> float:
    run()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000 / batch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    model = onnx.shape_inference.infer_shapes(onnx.load(str(a.model)))
    image = model.graph.input[0]
    shape = [d.dim_value or 1 for d in image.type.tensor_type.shape.dim]
    x = np.random.default_rng(0).standard_normal([a.batch] + shape[1:]).astype(np.float32)
    names = [n for n in tensors_to_calibrate(model) if n != image.name]
    post = post_activation(model, names)
    print(cpu_line(0), f"load {os.getloadavg()[0]:.2f}")
    print(f"{a.model.name}: batch {a.batch}, ms per image (median of {a.repeat}); {len(names)} calibrated tensors, "
          f"{len(post)} without the pre-activation convolution outputs")
    feed = {image.name: ort.OrtValue.ortvalue_from_numpy(x)}
    for label, level in (("all", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
                         ("extended", ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)):
        row = []
        for exposed in ([], names, post):
            s = session(augmented(model, exposed) if exposed else model, level)
            outs = exposed or [o.name for o in model.graph.output]
            row.append(ms_per_image(lambda: s.run_with_ort_values(outs, feed), a.batch, a.repeat))
        print(f"  level {label:9s} plain {row[0]:6.2f}   all exposed {row[1]:6.2f} ({row[1] / row[0]:.2f}x)   "
              f"post-activation only {row[2]:6.2f} ({row[2] / row[0]:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
