"""Train the small Paddle classifier and convert it with paddle2onnx.

Runs in the Paddle environment (~/.cache/guiapp/exports-env-paddle: paddle2onnx
pins an older onnx than the torch exporters' environment), started by
``make_exports.py paddle``, which renders the images and checks the result.
Imports nothing from this project.

    python paddle_worker.py --data train.npz --work DIR --name paddle_shapes_cls

Input: ``train.npz`` with ``x`` float32 [N, 3, 96, 96] (already normalized)
and ``y`` int64 [N]. Writes ``DIR/inference/inference.*`` (paddle.jit.save),
``DIR/<name>.onnx`` (paddle2onnx with its default settings) and prints one
JSON line with the timings and versions.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def make_model(classes: int):
    from paddle import nn

    def block(cin: int, cout: int, stride: int) -> list:
        return [nn.Conv2D(cin, cout, 3, stride=stride, padding=1, bias_attr=False), nn.BatchNorm2D(cout), nn.ReLU()]

    return nn.Sequential(
        *block(3, 16, 2), *block(16, 32, 1), nn.MaxPool2D(2),
        *block(32, 48, 1), nn.MaxPool2D(2),
        *block(48, 64, 1), nn.MaxPool2D(2),
        *block(64, 96, 1),
        nn.AdaptiveAvgPool2D(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(96, classes),
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--name", default="paddle_shapes_cls")
    ap.add_argument("--epochs", type=int, default=8)
    args = ap.parse_args()

    import paddle
    import paddle2onnx

    paddle.set_device("cpu")
    paddle.seed(0)
    data = np.load(args.data)
    x, y = data["x"], data["y"].astype(np.int64)
    classes = int(y.max()) + 1
    model = make_model(classes)
    batch = 64
    steps = args.epochs * math.ceil(len(x) / batch)
    sched = paddle.optimizer.lr.OneCycleLR(max_learning_rate=3e-3, total_steps=steps)
    opt = paddle.optimizer.AdamW(learning_rate=sched, parameters=model.parameters(), weight_decay=1e-4)
    loss_fn = paddle.nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        total = 0.0
        for idx in np.array_split(rng.permutation(len(x)), math.ceil(len(x) / batch)):
            xb = x[idx]
            flip = rng.random(len(idx)) < 0.5
            xb = np.where(flip[:, None, None, None], xb[..., ::-1], xb)
            loss = loss_fn(model(paddle.to_tensor(np.ascontiguousarray(xb))), paddle.to_tensor(y[idx]))
            opt.clear_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(idx)
        print(f"  epoch {epoch}: loss {total / len(x):.4f} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    train_seconds = time.perf_counter() - start

    model.eval()
    prefix = args.work / "inference" / "inference"
    spec = [paddle.static.InputSpec(shape=[None, 3, 96, 96], dtype="float32", name="x")]
    paddle.jit.save(model, str(prefix), input_spec=spec)
    written = sorted(p.name for p in prefix.parent.iterdir())
    model_file = next(n for n in written if n.endswith((".json", ".pdmodel")))
    save = args.work / f"{args.name}.onnx"
    cmd = ["paddle2onnx", "--model_dir", str(prefix.parent), "--model_filename", model_file,
           "--params_filename", "inference.pdiparams", "--save_file", str(save)]
    exe = Path(sys.executable).parent / "paddle2onnx"
    cmd[0] = str(exe)
    conv = subprocess.run(cmd, cwd=args.work, capture_output=True, text=True)
    sys.stderr.write(conv.stdout[-4000:] + conv.stderr[-4000:])
    if conv.returncode != 0 or not save.exists():
        print(json.dumps({"error": f"paddle2onnx exited {conv.returncode}"}))
        return 1
    with paddle.no_grad():
        probe = model(paddle.to_tensor(x[:8])).numpy()
    np.save(args.work / "paddle_probe.npy", probe)
    print(json.dumps({
        "paddle": paddle.__version__, "paddle2onnx": paddle2onnx.__version__,
        "train_seconds": round(train_seconds, 1), "epochs": args.epochs, "train_images": len(x),
        "inference_files": written, "command": " ".join(["paddle2onnx"] + cmd[1:]).replace(str(args.work) + "/", ""),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
