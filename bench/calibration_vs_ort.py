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

With --speed (issue 21): per model, decode + FP32 inference against our
calibration with a histogram method and with minmax (as the app runs them:
a Relu/Clip input shares its output's statistics), and with histograms of
every tensor's own (as for TensorRT's cache), alternated in one process,
medians; every method's ranges against a plain reference collection (within
one bin; a shared input against its output's, the range ONNX Runtime's
quantizer gives it) and top-1 with both:
    python bench/calibration_vs_ort.py ../shared/assets/models/squeezenet1.1.onnx \\
        ../shared/assets/models/mobilenetv2_1.0_224.onnx ../shared/assets/imagenet/images --speed \\
        --specs ../shared/assets/models/specs.json --labels ../shared/assets/imagenet/labels.csv -n 200

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
    from guiapp.core.calibrate.calibration import CalibrationInputs, calibrate
    from guiapp.core.calibrate.strategies import RangeTarget, StrategySettings, compute_ranges
    from guiapp.core.data.preprocess import PreprocessSpec
    from guiapp.core.job import CalibrationSettings, QuantSettings
    from guiapp.core.model.feeds import Feeds
    from guiapp.core.model.modelinfo import inspect_model
    from guiapp.core.progress import CancelToken, no_progress
    from guiapp.core.quantize.prepare import build, prepare

    t0 = time.perf_counter()
    spec = PreprocessSpec(**_spec_kwargs(cfg["spec"]))
    files = [Path(f) for f in cfg["files"]]
    model = Path(cfg["model"])
    q = QuantSettings(per_channel=cfg["per_channel"])
    settings = CalibrationSettings(max_images=len(files), seed=0, method=cfg["method"], batch_size=cfg["batch"], percentile=cfg["percentile"])
    with tempfile.TemporaryDirectory() as tmp:
        prepared = prepare(model, inspect_model(model).opset, Path(tmp), no_progress, CancelToken())
        # max_images = len(files): every chosen image, in our seeded order
        cal = calibrate(prepared.model, CalibrationInputs(model, Feeds(cfg["input"]), spec, settings, files, cfg["batch"],
                                                          share_activation_ranges=True),
                        no_progress, CancelToken())
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


# ---------------------------------------------------------------- --speed: paired timing and the range check
# Issue 21, "Histograms at memory speed": calibration with a histogram method
# against what it cannot beat (decoding the images and one FP32 inference of
# them), minmax for reference, all in this process on the same images and
# batch size, alternated run by run (the machine's speed drifts); medians.
# Then every method's ranges against the statistics collected the plain way
# (every tensor read and histogrammed whole), and top-1 with both.

SPEED_GOAL, SPEED_STRETCH = 2.0, 1.5


def reference_stats(model, feeds, stream, ema_constant: float = 0.01) -> dict:
    """The statistics as collected before issue 21, written plainly: every
    calibrated tensor read from ONNX Runtime and histogrammed whole, batch by
    batch, in float64 on the grid of its max |x| so far (a widening grid
    merges its bins exactly)."""
    import math

    import numpy as np

    from guiapp.core.calibrate.calibration import augmented, tensors_to_calibrate
    from guiapp.core.calibrate.histogram import HALF, TensorStats, rebin
    from guiapp.core.evaluate.sessions import make_session

    names = tensors_to_calibrate(model)
    fed = {feeds.image} | {c.name for c in feeds.constants}
    read = [n for n in names if n not in fed]
    session = make_session(augmented(model, read).SerializeToString())
    stats = {n: TensorStats() for n in names}
    for _, batch in stream:
        feed = feeds(batch)
        values = {**dict(zip(read, session.run(read, feed))), **feed}
        for n, s in stats.items():
            x = values[n].astype(np.float64).ravel()
            x = np.where(np.isfinite(x), x, 0.0)
            lo, hi = float(x.min()), float(x.max())
            s.fold_extremes(lo, hi, ema_constant)
            s.count += x.size
            s.zeros += int(np.count_nonzero(x == 0))
            if max(-lo, hi) == 0:
                s.zeros_pending, s.hist[HALF] = (s.zeros_pending + x.size, 0) if s.exp is None else (0, s.hist[HALF] + x.size)
                continue
            need = math.frexp(max(-lo, hi))[1]
            if s.exp is None:
                s.exp, s.hist[HALF], s.zeros_pending = need, s.zeros_pending, 0
            elif need > s.exp:
                s.hist, s.exp = rebin(s.hist, need - s.exp), need
            s.hist += np.bincount((np.floor(x * 2.0 ** (12 - s.exp)) + HALF).astype(np.int64), minlength=2 * HALF)
    return stats


def range_deviation(ours: dict, reference: dict, method: str, percentile: float) -> tuple[float, str]:
    """The largest difference of a range end, in bins of the reference's grid, and where."""
    from guiapp.core.calibrate.strategies import RangeTarget, StrategySettings, compute_ranges

    a = compute_ranges(ours, StrategySettings(method, percentile), RangeTarget())
    b = compute_ranges(reference, StrategySettings(method, percentile), RangeTarget())
    if a.keys() != b.keys():
        return float("inf"), "tensors differ: " + ", ".join(sorted(set(a) ^ set(b))[:5])
    worst, where = 0.0, ""
    for n, (lo, hi) in b.items():
        d = max(abs(a[n][0] - lo), abs(a[n][1] - hi))
        w = reference[n].width
        bins = d / w if w else (0.0 if d == 0 else float("inf"))
        if bins > worst:
            worst, where = bins, n
    return worst, where


def shared_inputs(model, names: list[str]) -> dict[str, str]:
    """{Relu/Clip input: its output} for the inputs the app lets share their
    output's statistics."""
    from guiapp.core.calibrate.calibration import derivation_plan
    from guiapp.core.calibrate.histogram import SHARED

    plan = derivation_plan(model, names, True, share=True)
    return {n: d.inputs[0] for n, d in plan.items() if d.op == SHARED}


def speed_pairs(model_path: Path, prepared, feeds, spec, files: list, batch: int, repeat: int) -> tuple[dict, object]:
    """Per-image milliseconds of each contender, ``repeat`` runs each, in
    rotating order; and the last histogram calibration."""
    from guiapp.core.calibrate.calibration import CalibrationInputs, calibrate
    from guiapp.core.data.dataset import ReadLog, batches, iter_tensors
    from guiapp.core.evaluate.sessions import make_session
    from guiapp.core.job import CalibrationSettings
    from guiapp.core.progress import CancelToken, no_progress

    n = len(files)
    session = make_session(model_path)
    last = {}

    def fp32():
        for _, x in batches(iter_tensors(files, spec, n, ReadLog()), batch):
            session.run(None, feeds(x))

    def ours(method, share=True):
        settings = CalibrationSettings(max_images=n, seed=0, method=method, batch_size=batch)
        inputs = CalibrationInputs(model_path, feeds, spec, settings, files, batch, share_activation_ranges=share)
        last[method, share] = calibrate(prepared.model, inputs, no_progress, CancelToken())

    # "own": every tensor's own statistics, as TensorRT's cache needs them (and
    # as the app collected them before activation inputs shared their outputs')
    runs = {"fp32": fp32, "histograms": lambda: ours("entropy"), "minmax": lambda: ours("minmax"),
            "histograms_own": lambda: ours("entropy", share=False)}
    times = {k: [] for k in runs}
    for f in runs.values():  # warm: the page cache, first sessions
        f()
    for r in range(repeat):
        order = list(runs)[r % len(runs):] + list(runs)[: r % len(runs)]
        for k in order:
            t = time.perf_counter()
            runs[k]()
            times[k].append((time.perf_counter() - t) / n * 1000)
    return times, last["entropy", True]


def speed_one(model_path: Path, spec_entry: dict | None, args) -> dict:
    import numpy as np

    from guiapp.core.calibrate.strategies import METHODS, RangeTarget, StrategySettings, compute_ranges
    from guiapp.core.data.dataset import ReadLog, batches, iter_tensors, labels_from_csv, list_images, seeded_order
    from guiapp.core.job import QuantSettings
    from guiapp.core.model.feeds import make_feeds
    from guiapp.core.data.preprocess import load_tensor
    from guiapp.core.model.modelinfo import inspect_model
    from guiapp.core.progress import CancelToken, no_progress
    from guiapp.core.quantize.prepare import build, prepare

    info = inspect_model(model_path)
    spec, offset = _model_spec(info, spec_entry, args)
    feeds = make_feeds(info, {})
    batch = info.image_input.fixed_batch or args.batch
    order = seeded_order(list_images([args.images]), 0)
    log = ReadLog()
    for _ in iter_tensors(order, spec, args.n, log):
        pass
    calib = list(log.used)
    used = set(calib) | {p for p, _ in log.skipped}
    held = [p for p in order if p not in used][: args.held_out]
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as tmp:
        tmp = Path(tmp)
        prepared = prepare(model_path, info.opset, tmp, no_progress, CancelToken())
        times, cal = speed_pairs(model_path, prepared, feeds, spec, calib, batch, args.repeat)
        # calibrate() reads its files in its seeded order: so does the reference (the moving average is per batch)
        ref = reference_stats(prepared.model, feeds, batches(iter_tensors(seeded_order(calib, 0), spec, len(calib), ReadLog()), batch))
        # A Relu/Clip input that shares its output's statistics is compared with
        # the reference's output: ONNX Runtime's quantizer gives it that range.
        shared = shared_inputs(prepared.model, list(ref))
        effective = {**ref, **{y: ref[z] for y, z in shared.items()}}
        med = {k: statistics.median(v) for k, v in times.items()}
        out = {"model": model_path.name, "images": len(calib), "batch": batch, "ms_per_image": med, "runs": times,
               "ratio": {k: med[k] / med["fp32"] for k in ("histograms", "minmax", "histograms_own")},
               "shared_inputs": len(shared), "methods": {}}
        labels = labels_from_csv(args.labels, [args.images]) if args.labels else None
        x = np.stack([load_tensor(p, spec) for p in held]) if labels else None
        for method in METHODS:
            bins, where = range_deviation(cal.stats, effective, method, args.percentile)
            row = {"max_bins": bins, "where": where}
            if labels is not None:
                for side, stats in (("ours", cal.stats), ("reference", ref)):
                    path = tmp / f"{method}.{side}.onnx"
                    build(prepared, compute_ranges(stats, StrategySettings(method, args.percentile), RangeTarget()), QuantSettings(), path)
                    row[f"top1_{side}"] = _top1(path, feeds, x, [labels.get(p) for p in held], offset)
            out["methods"][method] = row
        if labels is not None:
            out["fp32_top1"] = _top1(model_path, feeds, x, [labels.get(p) for p in held], offset)
            out["held_out"] = len(held)
    return out


def _model_spec(info, entry: dict | None, args):
    """The preprocessing of specs.json's entry (RGB, shorter side 256, centre
    crop to the input size), or of the command line; and the class offset."""
    from dataclasses import replace

    from guiapp.core.data.preprocess import PreprocessSpec, preset

    ii = info.image_input
    if entry is None:
        spec = preset(args.preset, ii.channels, resize="shorter", resize_shorter=args.resize_shorter)
        if args.mean or args.std:
            spec = replace(spec, **({"mean": tuple(map(float, args.mean.split(",")))} if args.mean else {}),
                           **({"std": tuple(map(float, args.std.split(",")))} if args.std else {}))
        return spec.resolved(ii.layout, ii.size), args.class_offset
    pre = entry["preprocess"]
    spec = PreprocessSpec(mean=tuple(pre["mean_pixel"]), std=tuple(pre["std_pixel"]), color=pre["color"].lower(),
                          resize="shorter", resize_shorter=256)
    return spec.resolved(ii.layout, ii.size), int(entry["output"].get("class_offset", 0))


def _top1(path: Path, feeds, x, labels: list, offset: int) -> float:
    import numpy as np

    from guiapp.core.evaluate.sessions import make_session

    s = make_session(path)
    pred = np.concatenate([s.run(None, feeds(x[i : i + 25]))[0].reshape(len(x[i : i + 25]), -1).argmax(1) for i in range(0, len(x), 25)])
    return float(np.mean(pred == np.array(labels) + offset))


def speed_main(args) -> int:
    from guiapp.core.evaluate.cpu import current_cpu
    import onnxruntime

    specs = json.loads(args.specs.read_text()) if args.specs else {}
    by_file = {Path(v["file"]).name: v for v in specs.values() if isinstance(v, dict) and "file" in v}
    print(f"CPU {current_cpu().model}, {os.cpu_count()} logical CPUs; onnxruntime {onnxruntime.__version__}; "
          f"load {tuple(round(v, 2) for v in os.getloadavg())}")
    results = []
    for model_path in args.model:
        r = speed_one(model_path, by_file.get(model_path.name), args)
        results.append(r)
        med, ratio = r["ms_per_image"], r["ratio"]
        print(f"\n{r['model']}: {r['images']} images, batch {r['batch']}, median of {args.repeat} paired runs (ms per image)")
        print(f"  decode + FP32 inference      {med['fp32']:7.2f}")
        verdict = "met" if ratio["histograms"] <= SPEED_GOAL else "MISSED"
        stretch = " (stretch <= 1.5x met)" if ratio["histograms"] <= SPEED_STRETCH else ""
        print(f"  calibration, histograms      {med['histograms']:7.2f}   {ratio['histograms']:.2f}x  goal <= {SPEED_GOAL}x: {verdict}{stretch}")
        print(f"  calibration, minmax          {med['minmax']:7.2f}   {ratio['minmax']:.2f}x  (reference)")
        print(f"  histograms, every tensor's own statistics (TensorRT's cache; before {r['shared_inputs']} activation "
              f"inputs shared their outputs')\n                               {med['histograms_own']:7.2f}   "
              f"{ratio['histograms_own']:.2f}x  (reference)")
        print("  ranges against the plain reference (largest difference of a range end, in bins)" +
              (f"; top-1 on {r['held_out']} held-out images (FP32 {r['fp32_top1']:.3f})" if "fp32_top1" in r else ""))
        for method, row in r["methods"].items():
            ok = "ok" if row["max_bins"] <= 1.0 else "OVER ONE BIN"
            top = (f"  top-1 reference {row['top1_reference']:.3f} ours {row['top1_ours']:.3f}"
                   f" {'unchanged' if row['top1_ours'] == row['top1_reference'] else 'CHANGED'}") if "top1_ours" in row else ""
            print(f"    {method:11} {row['max_bins']:6.2f} {ok:12}{top}" + (f"  ({row['where']})" if row["max_bins"] > 1.0 else ""))
    print(f"\nload {tuple(round(v, 2) for v in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    bad = [r for r in results if any(row["max_bins"] > 1.0 or row.get("top1_ours") != row.get("top1_reference")
                                     for row in r["methods"].values())]
    return 1 if bad else 0


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
    ap.add_argument("model", type=Path, nargs="+", help="the ONNX model (several with --speed)")
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
    ap.add_argument("--repeat", type=int, help="runs per side (default 1; 5 with --speed); medians are reported "
                                                "(peak RSS varies a few %% run to run)")
    ap.add_argument("--speed", action="store_true",
                    help="instead: per model, decode + FP32 inference vs our calibration with histograms (goal <= 2.0x) and "
                         "with minmax, paired in this process; then every method's ranges against the plain reference "
                         "(within one bin) and top-1 with both (--labels)")
    ap.add_argument("--specs", type=Path, help="with --speed: specs.json, each model's preprocessing and class offset")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.speed:
        args.repeat = args.repeat or 5
        return speed_main(args)
    args.repeat = args.repeat or 1
    if len(args.model) > 1:
        ap.error("several models only with --speed")
    args.model = args.model[0]

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
