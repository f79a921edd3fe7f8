#!/usr/bin/env python3
"""The output-form options, measured: latency and top-1 of each INT8 variant.

For each ImageNet model of the shared assets, the INT8 model is written with
the app's defaults and with each option changed (Concat ranges shared or
not, channels padded or not, a batch of one, ONNX Runtime's optimized graph,
QOperator, reduce range). Every variant comes from the same calibration
statistics (one cache) and is scored on the same 800 labeled photos the
realmodels tests use; each model file, FP32 included, is then timed alone in
a fresh process by the plain ONNX Runtime script of bench/latency.py, in
rounds that alternate the files, medians over rounds. All figures printed
together come from one run on one machine (its CPU line is printed).

Example:
    python bench/output_forms.py --models squeezenet1.1 mobilenetv2_1.0_224 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE.parent))

from latency import assets_dir, cpu_line, make_feed, standalone, wait_quiet  # noqa: E402

VARIANTS = {  # name -> QuantSettings changes from the defaults
    "default (shared Concat ranges, channels padded)": {},
    "Concat ranges separate": {"share_concat_ranges": False},
    "channels not padded": {"pad_channels": False},
    "neither (as ONNX Runtime writes it)": {"share_concat_ranges": False, "pad_channels": False},
    "batch of 1": {"batch_one": True},
    "ONNX Runtime-optimized graph": {"ort_optimized": True},
    "QOperator": {"format": "qoperator"},
    "reduce range": {"reduce_range": True},
}


def job_for(name: str, out: Path, cache: Path, evaluate: int):
    from guiapp.core.job import CalibrationSettings, EvalSettings, Job
    from guiapp.core.data.preprocess import PreprocessSpec

    assets = assets_dir()
    entry = json.loads((assets / "models" / "specs.json").read_text())[name]
    pp = entry["preprocess"]
    shorter = int(pp["resize"].split()[2].rstrip(",")) if pp["resize"].startswith("shorter side") else None
    spec = PreprocessSpec(mean=tuple(pp["mean_pixel"]), std=tuple(pp["std_pixel"]), color=pp["color"].lower(),
                          layout=entry["input"]["layout"].lower(), resize="shorter" if shorter else "stretch",
                          resize_shorter=shorter)
    imagenet = assets / "imagenet"
    return Job(model=assets / entry["file"], output=out, preprocess=spec, cache=cache,
               calibration=CalibrationSettings(folders=(imagenet / "images",), max_images=200),
               evaluation=EvalSettings(folders=(imagenet / "images",), labels_from="csv", labels_csv=imagenet / "labels.csv",
                                       class_offset=entry["output"]["class_offset"], max_images=evaluate, latency_runs=5,
                                       per_layer_images=0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["squeezenet1.1", "mobilenetv2_1.0_224"], help="names in specs.json")
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds (each times every file once)")
    ap.add_argument("--evaluate", type=int, default=800, help="labeled photos for top-1")
    ap.add_argument("--n", type=int, default=200, help="timed inferences per measurement (at least)")
    ap.add_argument("--min-seconds", type=float, default=2.0, help="timed seconds per measurement (at least)")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (default: ONNX Runtime's own choice)")
    ap.add_argument("--work", type=Path, help="folder for the models (kept; a variant already there is timed again, "
                                              "not quantized again)")
    args = ap.parse_args()

    from guiapp.core import run as pipeline
    from guiapp.core.job import QuantSettings

    tmp = args.work or Path(tempfile.mkdtemp(prefix="bench-forms-"))
    tmp.mkdir(parents=True, exist_ok=True)
    print(cpu_line(args.threads) + "\n")
    for name in args.models:
        files: dict[str, Path] = {}
        top1: dict[str, float] = {}
        fp32_top1 = None
        for label, changes in VARIANTS.items():
            out = tmp / f"{name}.{len(files)}.onnx"
            job = job_for(name, out, tmp / f"{name}.calib.npz", args.evaluate)
            job = replace(job, quantization=replace(QuantSettings(), **changes))
            done = out.with_suffix(".accuracy.json")
            if out.is_file() and done.is_file():
                acc = json.loads(done.read_text())
            else:
                print(f"{name}: quantizing, {label} ...", flush=True)
                acc = pipeline.quantize(job, overwrite=True).report["accuracy"]
                done.write_text(json.dumps(acc))
            files[label], top1[label], fp32_top1 = out, acc["int8"]["top1"], acc["fp32"]["top1"]
        fp32 = job.model
        feed = tmp / f"{name}.feed.npz"
        make_feed(fp32, feed)
        times: dict[str, list[float]] = {k: [] for k in ["FP32", *files]}
        for r in range(args.rounds):
            wait_quiet(0.5, 120)
            order = list(times) if r % 2 == 0 else list(reversed(times))
            for key in order:
                path = fp32 if key == "FP32" else files[key]
                times[key].append(standalone(path, feed, args.n, args.min_seconds, args.threads)["median"])
        med = {k: statistics.median(v) for k, v in times.items()}
        default = next(iter(files))
        print(f"\n{name}: FP32 top-1 {fp32_top1 * 100:.2f}% on {args.evaluate} labeled photos, "
              f"FP32 {med['FP32']:.3f} ms (median of {args.rounds} rounds, each model alone in a fresh process)")
        head = f"{'INT8 variant':<48} {'top-1':>7} {'vs FP32':>8} {'latency':>9} {'INT8/FP32':>9} {'vs default':>10}"
        print(head + "\n" + "-" * len(head))
        for label in files:
            print(f"{label:<48} {top1[label] * 100:6.2f}% {(top1[label] - fp32_top1) * 100:+7.2f} {med[label]:7.3f} ms "
                  f"{med[label] / med['FP32']:9.3f} {med[label] / med[default]:10.3f}")
        print()
    print(cpu_line(args.threads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
