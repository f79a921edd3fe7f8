#!/usr/bin/env python3
"""Calibration: our streaming engine vs a plain onnxruntime.quantization script.

For one model, image folder, image count and method, this runs

  (a) ours: pre-process, stream the images through the FP32 model folding each
      batch into fixed-size statistics, compute ranges, let ONNX Runtime write
      the INT8 graph;
  (b) ORT: the way its documentation shows: quant_pre_process, then
      quantize_static with a CalibrationDataReader (minmax, ema-minmax; same
      batch as ours). For
      entropy and percentile, configured fairly: create_calibrator with the same
      2048 bins (and our percentile), collect_data, compute_data, the cache,
      then quantize_static from the cache; one image per call, as its docs
      (it fails on a smaller last batch). ORT has no MSE method: mse is
      compared with ORT's MinMax.

each in a fresh process, on the same images with the same preprocessing and
batch size. It prints wall time (the quantization work, imports excluded) and
peak RSS of each, the ratios, the top-1 of FP32 and both INT8 models on
held-apart labeled images, and each model's latency.

ORT's histogram calibrators keep every activation of every image in memory
(6.5 GB at 100 images for a MobileNetV2-sized net): above 100 images this
script refuses to run them unless given --allow-ort-memory.

Example (squeezenet1.1, 100 images, entropy):
    python bench/calibration_vs_ort.py ../shared/assets/models/squeezenet1.1.onnx \\
        ../shared/assets/imagenet/images --labels ../shared/assets/imagenet/labels.csv \\
        -n 100 --method entropy --preset imagenet
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))

ORT_HISTOGRAM = {"entropy", "percentile"}


# ---------------------------------------------------------------- workers (fresh processes)


def worker_ours(cfg: dict) -> dict:
    from guiapp.core.calibrate.calibration import calibrate
    from guiapp.core.model.feeds import Feeds
    from guiapp.core.job import CalibrationSettings, Job, QuantSettings
    from guiapp.core.model.modelinfo import inspect_model
    from guiapp.core.pipeline import build, prepare
    from guiapp.core.data.preprocess import PreprocessSpec
    from guiapp.core.progress import CancelToken, no_progress
    from guiapp.core.calibrate.strategies import StrategySettings, RangeTarget, compute_ranges

    t0 = time.perf_counter()
    spec = PreprocessSpec(**_spec_kwargs(cfg["spec"]))
    files = [Path(f) for f in cfg["files"]]
    q = QuantSettings(per_channel=cfg["per_channel"])
    settings = CalibrationSettings(max_images=len(files), seed=0, method=cfg["method"], batch_size=cfg["batch"], percentile=cfg["percentile"])
    job = Job(Path(cfg["model"]), Path(cfg["out"]), spec, settings, q)
    info = inspect_model(job.model)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = prepare(job, info, Path(tmp), no_progress, CancelToken())
        # max_images = len(files): every chosen image, in our seeded order
        cal = calibrate(prepared.model, job.model, Feeds(cfg["input"]), spec, settings, files, cfg["batch"], None, no_progress,
                        CancelToken())
        ranges = compute_ranges(cal.stats, StrategySettings(cfg["method"], cfg["percentile"]), RangeTarget())
        build(prepared, ranges, q, Path(cfg["out"]))
    return {"seconds": time.perf_counter() - t0, "images": cal.images}


def worker_ort(cfg: dict) -> dict:
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from guiapp.core.data.preprocess import PreprocessSpec, load_tensor

    t0 = time.perf_counter()
    spec = PreprocessSpec(**_spec_kwargs(cfg["spec"]))
    files = [Path(f) for f in cfg["files"]]

    # ORT's histogram calibrators stack each run's outputs and fail on a
    # smaller last batch: feed them one image per call, as its docs do.
    batch = 1 if cfg["method"] in ORT_HISTOGRAM else cfg["batch"]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= len(files):
                return None
            chunk = files[self.i : self.i + batch]
            self.i += len(chunk)
            return {cfg["input"]: np.stack([load_tensor(f, spec) for f in chunk])}

    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(cfg["model"], pre)
        common = dict(
            quant_format=QuantFormat.QDQ, per_channel=cfg["per_channel"], activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        method = cfg["method"]
        if method in ORT_HISTOGRAM:
            ort_method = CalibrationMethod.Entropy if method == "entropy" else CalibrationMethod.Percentile
            extra = {"num_bins": 2048}
            if method == "entropy":
                extra["num_quantized_bins"] = 128
            else:
                extra["percentile"] = cfg["percentile"]
            calibrator = create_calibrator(pre, [], augmented_model_path=os.path.join(tmp, "aug.onnx"),
                                           calibrate_method=ort_method, extra_options=extra)
            calibrator.collect_data(Reader())
            cache = os.path.join(tmp, "ranges.json")
            save_tensors_data(calibrator.compute_data(), cache)
            del calibrator
            quantize_static(pre, cfg["out"], None, calibrate_method=ort_method, calibration_cache_path=cache, **common)
        else:
            extra = {"CalibMovingAverage": True, "CalibMovingAverageConstant": 0.01} if method == "ema-minmax" else {}
            quantize_static(pre, cfg["out"], Reader(), calibrate_method=CalibrationMethod.MinMax, extra_options=extra, **common)
    return {"seconds": time.perf_counter() - t0, "images": len(files)}


def _spec_kwargs(d: dict) -> dict:
    d = dict(d)
    d["size"] = tuple(d["size"]) if d.get("size") else None
    return d


# ---------------------------------------------------------------- parent


def run_worker(kind: str, cfg: dict) -> dict:
    """Run one worker in a fresh interpreter; its own peak RSS via wait4."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(cfg, fh)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(HERE), "--worker", kind, fh.name], stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    os.unlink(fh.name)
    if status != 0:
        raise SystemExit(f"{kind} worker failed (status {status})")
    result = json.loads(out.strip().splitlines()[-1])
    result.update({"peak_rss_mb": usage.ru_maxrss / 1024, "process_wall_s": wall})
    return result


def evaluate(models: dict[str, Path], input_name: str, spec, files, labels, offset: int) -> dict:
    import numpy as np
    import onnxruntime as ort

    from guiapp.core.data.preprocess import load_tensor

    sessions = {k: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for k, p in models.items()}
    hits = {k: 0 for k in models}
    n = 0
    for i in range(0, len(files), 25):
        chunk = files[i : i + 25]
        x = np.stack([load_tensor(f, spec) for f in chunk])
        y = np.array([labels.get(f) for f in chunk])
        for k, s in sessions.items():
            hits[k] += int(np.sum(s.run(None, {input_name: x})[0].reshape(len(chunk), -1).argmax(1) == y + offset))
        n += len(chunk)
    lat = {}
    x1 = np.stack([load_tensor(files[0], spec)])
    for k, s in sessions.items():
        for _ in range(10):
            s.run(None, {input_name: x1})
        ts = []
        for _ in range(100):
            t = time.perf_counter()
            s.run(None, {input_name: x1})
            ts.append((time.perf_counter() - t) * 1000)
        lat[k] = float(np.median(ts))
    return {"top1": {k: hits[k] / n for k in models}, "latency_ms": lat, "images": n}


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        cfg = json.loads(Path(sys.argv[3]).read_text())
        result = (worker_ours if sys.argv[2] == "ours" else worker_ort)(cfg)
        print(json.dumps(result))
        return 0

    from guiapp.core.data.dataset import ReadLog, iter_tensors, labels_from_csv, list_images, seeded_order
    from guiapp.core.model.modelinfo import inspect_model
    from guiapp.core.data.preprocess import preset
    from guiapp.core.calibrate.strategies import METHODS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("images", type=Path)
    ap.add_argument("-n", type=int, default=100, help="calibration images")
    ap.add_argument("--method", choices=METHODS, default="minmax")
    ap.add_argument("--percentile", type=float, default=99.99)
    ap.add_argument("--preset", default="imagenet")
    ap.add_argument("--mean")
    ap.add_argument("--std")
    ap.add_argument("--resize-shorter", type=int, default=256)
    ap.add_argument("--per-tensor", action="store_true")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--labels", type=Path, help="CSV (file, class_index) for top-1 on held-apart images")
    ap.add_argument("--class-offset", type=int, default=0)
    ap.add_argument("--held-out", type=int, default=300, help="labeled images for top-1 (never used for calibration)")
    ap.add_argument("--only", choices=["ours", "ort"], help="run one side only")
    ap.add_argument("--allow-ort-memory", action="store_true", help="run ORT's histogram calibrators above 100 images")
    ap.add_argument("--repeat", type=int, default=1, help="runs per side; medians are reported (peak RSS varies a few %% run to run)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    if args.method in ORT_HISTOGRAM and args.n > 100 and args.only != "ours" and not args.allow_ort_memory:
        print(f"refusing: ONNX Runtime's {args.method} calibrator keeps every activation of every image in memory "
              f"(6.5 GB at 100 images for MobileNetV2, over 16 GB at 500). Use --only ours, or --allow-ort-memory.", file=sys.stderr)
        return 2

    info = inspect_model(args.model)
    ii = info.image_input
    spec = preset(args.preset, ii.channels, resize="shorter", resize_shorter=args.resize_shorter)
    if args.mean or args.std:
        from dataclasses import replace

        spec = replace(spec, **({"mean": tuple(map(float, args.mean.split(",")))} if args.mean else {}),
                       **({"std": tuple(map(float, args.std.split(",")))} if args.std else {}))
    spec = spec.resolved(ii.layout, ii.size)
    batch = ii.fixed_batch or args.batch

    # The same calibration images for both: the first n readable ones of the seeded order.
    order = seeded_order(list_images([args.images]), 0)
    log = ReadLog()
    for _ in iter_tensors(order, spec, args.n, log):
        pass
    calib = [str(p) for p in log.used]
    used = set(calib) | {str(p) for p, _ in log.skipped}
    held = [p for p in order if str(p) not in used][: args.held_out]

    out_dir = Path(tempfile.mkdtemp(prefix="bench-calib-"))
    cfg = {"model": str(args.model), "input": ii.name, "spec": spec.to_dict(), "files": calib, "method": args.method,
           "percentile": args.percentile, "batch": batch, "per_channel": not args.per_tensor}
    results = {}
    for kind in ("ours", "ort"):
        if args.only and args.only != kind:
            continue
        runs = [run_worker(kind, dict(cfg, out=str(out_dir / f"{kind}.onnx"))) for _ in range(args.repeat)]
        results[kind] = {
            "seconds": statistics.median(r["seconds"] for r in runs),
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
            "runs": runs,
        }

    print(f"\n{args.model.name}: {len(calib)} calibration images, method {args.method}, batch {batch}, "
          f"{'per-tensor' if args.per_tensor else 'per-channel'}" + (f", median of {args.repeat} runs" if args.repeat > 1 else ""))
    ort_name = {"mse": "MinMax (ORT has no MSE)", "ema-minmax": "MinMax, moving average"}.get(args.method, args.method)
    print(f"{'':14}{'wall s':>9}{'peak RSS MB':>13}")
    for kind, r in results.items():
        label = "ours" if kind == "ours" else f"ORT {ort_name}"
        print(f"{label:14.14}{r['seconds']:9.2f}{r['peak_rss_mb']:13.0f}")
    if len(results) == 2:
        o, r = results["ours"], results["ort"]
        print(f"{'ratio ours/ORT':14}{o['seconds'] / r['seconds']:9.2f}{o['peak_rss_mb'] / r['peak_rss_mb']:13.2f}")

    if args.labels and held:
        labels = labels_from_csv(args.labels, [args.images])
        models = {"fp32": args.model, **{k: out_dir / f"{k}.onnx" for k in results}}
        ev = evaluate(models, ii.name, spec, held, labels, args.class_offset)
        print(f"\ntop-1 on {ev['images']} held-apart images, latency (batch 1, median ms):")
        for k in models:
            print(f"  {k:5} top-1 {ev['top1'][k]:.3f}  latency {ev['latency_ms'][k]:.2f} ms")
        results["eval"] = ev
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
