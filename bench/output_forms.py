#!/usr/bin/env python3
"""The output-form options, measured: latency and top-1 of each INT8 variant.

For each ImageNet model of the shared assets, the INT8 model is written with
the app's defaults and with each option changed (Concat ranges shared or
not, channels padded or not, the AMX form of wide pointwise convolutions or
not, a batch of one, ONNX Runtime's optimized graph, QOperator, reduce
range). Every variant comes from the same calibration statistics (one cache)
and is scored on the same 800 labeled photos the realmodels tests use; each
model file, FP32 included, is then timed alone in a fresh process by the
plain ONNX Runtime script of bench/latency.py, in rounds that alternate the
files; figures are medians over rounds, and INT8/FP32 ratios are the median
of each round's own ratio (the two timed seconds apart). All figures printed
together come from one run on one machine (its CPU line is printed).

For MobileNetV2 it prints the goal of issue 21: the default INT8 model's
latency over FP32's at batch 1, ONNX Runtime's default threads, <= 0.40.
``--profile`` adds where the time goes: ONNX Runtime's own profile of FP32
and the default INT8 model, by kind of node (first convolution, depthwise,
pointwise, the rest), in the same run.

Examples:
    python bench/output_forms.py --models squeezenet1.1 mobilenetv2_1.0_224 --rounds 3
    python bench/output_forms.py --models mobilenetv2_1.0_224 --variants default "AMX form off" --rounds 9 --profile
"""

from __future__ import annotations

import argparse
import contextlib
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

DEFAULT = "default (as the app writes it on this CPU)"
VARIANTS = {  # name -> QuantSettings changes from the defaults; "no_amx": quantized as on a CPU without AMX
    DEFAULT: {},
    "Concat ranges separate": {"share_concat_ranges": False},
    "channels not padded (and no AMX form)": {"pad_channels": False},
    "AMX form off (wide 1x1 weights symmetric)": {"no_amx": True},
    "neither (as ONNX Runtime writes it)": {"share_concat_ranges": False, "pad_channels": False},
    "batch of 1": {"batch_one": True},
    "ONNX Runtime-optimized graph": {"ort_optimized": True},
    "QOperator": {"format": "qoperator"},
    "reduce range": {"reduce_range": True},
}
GOALS = {"mobilenetv2_1.0_224": ("MobileNetV2", 0.40)}  # issue 21: INT8 latency / FP32 latency at most this


def spec_entry(name: str) -> dict:
    return json.loads((assets_dir() / "models" / "specs.json").read_text())[name]


def job_for(name: str, out: Path, cache: Path, evaluate: int):
    from guiapp.core.job import CalibrationSettings, EvalSettings, Job
    from guiapp.core.data.preprocess import PreprocessSpec

    assets = assets_dir()
    entry = spec_entry(name)
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


def without_amx():
    """The ONNX Runtime flow deciding its forms as on a CPU without AMX."""
    from unittest import mock

    from guiapp.core.evaluate.cpu import current_cpu
    from guiapp.core.targets import ortflow

    cpu = current_cpu()
    flags = None if cpu.flags is None else cpu.flags - {"amx_int8", "amx_tile"}
    return mock.patch.object(ortflow, "current_cpu", lambda: replace(cpu, flags=flags))


def build(name: str, label: str, changes: dict, out: Path, tmp: Path, evaluate: int) -> dict:
    """The variant's accuracy section, quantizing it unless ``out`` is already there."""
    from guiapp.core import run as pipeline
    from guiapp.core.job import QuantSettings

    done = out.with_suffix(".accuracy.json")
    if out.is_file() and done.is_file():
        return json.loads(done.read_text())
    print(f"{name}: quantizing, {label} ...", flush=True)
    changes = dict(changes)
    job = job_for(name, out, tmp / f"{name}.calib.npz", evaluate)
    job = replace(job, quantization=replace(QuantSettings(), **{k: v for k, v in changes.items() if k != "no_amx"}))
    with without_amx() if changes.get("no_amx") else contextlib.nullcontext():
        acc = pipeline.quantize(job, overwrite=True).report["accuracy"]
    done.write_text(json.dumps(acc))
    return acc


def profile_kinds(model: Path, feed_file: Path, threads: int, runs: int) -> dict[str, float]:
    """ONNX Runtime's profile of ``model``: median ms per run by kind of node
    (convolutions by shape, the rest together), the graph as it ran."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "profile")
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
        feed = dict(np.load(feed_file))
        for _ in range(runs + 20):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
        kinds = {n.name: conv_kind(n) for n in onnx.load(so.optimized_model_filepath, load_external_data=False).graph.node}
    times: dict[str, list[float]] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            times.setdefault(e["name"][: -len("_kernel_time")], []).append(e["dur"] / 1000.0)
    out: dict[str, float] = {}
    for node, t in times.items():
        kind = kinds.get(node) or "other nodes"
        out[kind] = out.get(kind, 0.0) + statistics.median(t[-runs:])
    return out


def conv_kind(node) -> str | None:
    if "Conv" not in node.op_type:
        return None
    attrs = {a.name: a for a in node.attribute}
    if "group" in attrs and attrs["group"].i > 1:
        return "depthwise convolutions"
    if "kernel_shape" in attrs and all(k == 1 for k in attrs["kernel_shape"].ints):
        return "pointwise (1x1) convolutions"
    return "other convolutions (the first)"


def print_profile(fp32: Path, int8: Path, feed_file: Path, threads: int) -> None:
    a, b = profile_kinds(fp32, feed_file, threads, 200), profile_kinds(int8, feed_file, threads, 200)
    print("where the time goes (ONNX Runtime's profile, medians of 200 runs; per-node sums exceed the latency):")
    head = f"{'':<34} {'FP32':>9} {'INT8':>9} {'INT8/FP32':>9}"
    print(head + "\n" + "-" * len(head))
    for kind in sorted(set(a) | set(b), key=lambda k: -a.get(k, 0.0)):
        x, y = a.get(kind, 0.0), b.get(kind, 0.0)
        print(f"{kind:<34} {x:6.3f} ms {y:6.3f} ms {y / x if x else float('nan'):9.2f}")
    print(f"{'total':<34} {sum(a.values()):6.3f} ms {sum(b.values()):6.3f} ms {sum(b.values()) / sum(a.values()):9.2f}\n")


def time_files(files: dict[str, Path], feed: Path, args) -> dict[str, list[float]]:
    """Every file timed alone in a fresh process, once a round; rounds alternate the order."""
    times: dict[str, list[float]] = {k: [] for k in files}
    for r in range(args.rounds):
        wait_quiet(args.quiet_load, args.max_wait)
        for key in list(files) if r % 2 == 0 else list(reversed(files)):
            times[key].append(standalone(files[key], feed, args.n, args.min_seconds, args.threads)["median"])
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["squeezenet1.1", "mobilenetv2_1.0_224"], help="names in specs.json")
    ap.add_argument("--variants", nargs="+", help="only the variants whose names contain one of these (default: all)")
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds (each times every file once)")
    ap.add_argument("--evaluate", type=int, default=800, help="labeled photos for top-1")
    ap.add_argument("--n", type=int, default=200, help="timed inferences per measurement (at least)")
    ap.add_argument("--min-seconds", type=float, default=2.0, help="timed seconds per measurement (at least)")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (default: ONNX Runtime's own choice)")
    ap.add_argument("--quiet-load", type=float, default=0.5, help="before each round, wait for the 1-minute load average "
                                                                   "to fall to this")
    ap.add_argument("--max-wait", type=float, default=120, help="seconds to wait for that at most")
    ap.add_argument("--profile", action="store_true", help="also print ONNX Runtime's profile of FP32 and the default INT8")
    ap.add_argument("--work", type=Path, help="folder for the models (kept; a variant already there is timed again, "
                                              "not quantized again)")
    args = ap.parse_args()
    variants = {k: v for k, v in VARIANTS.items() if not args.variants or k == DEFAULT or any(s in k for s in args.variants)}

    tmp = args.work or Path(tempfile.mkdtemp(prefix="bench-forms-"))
    tmp.mkdir(parents=True, exist_ok=True)
    print(cpu_line(args.threads) + "\n")
    for name in args.models:
        files = {"FP32": assets_dir() / spec_entry(name)["file"]}
        top1: dict[str, float] = {}
        for label, changes in variants.items():
            out = tmp / f"{name}.{list(VARIANTS).index(label)}.onnx"
            acc = build(name, label, changes, out, tmp, args.evaluate)
            files[label], top1[label], fp32_top1 = out, acc["int8"]["top1"], acc["fp32"]["top1"]
        feed = tmp / f"{name}.feed.npz"
        make_feed(files["FP32"], feed)
        times = time_files(files, feed, args)
        med = {k: statistics.median(v) for k, v in times.items()}
        ratio = {k: statistics.median(t / f for t, f in zip(v, times["FP32"])) for k, v in times.items()}
        print(f"\n{name}: FP32 top-1 {fp32_top1 * 100:.2f}% on {args.evaluate} labeled photos, "
              f"FP32 {med['FP32']:.3f} ms (median of {args.rounds} rounds, each model alone in a fresh process)")
        head = f"{'INT8 variant':<48} {'top-1':>7} {'vs FP32':>8} {'latency':>9} {'INT8/FP32':>9} {'vs default':>10}"
        print(head + "\n" + "-" * len(head))
        for label in variants:
            print(f"{label[:48]:<48} {top1[label] * 100:6.2f}% {(top1[label] - fp32_top1) * 100:+7.2f} {med[label]:7.3f} ms "
                  f"{ratio[label]:9.3f} {med[label] / med[DEFAULT]:10.3f}")
        if name in GOALS:
            title, goal = GOALS[name]
            print(f"\n{title} INT8/FP32 latency {ratio[DEFAULT]:.2f}x (goal <= {goal:.2f}): "
                  f"{'met' if ratio[DEFAULT] <= goal else 'NOT met'}; per round "
                  + ", ".join(f"{t / f:.2f}" for t, f in zip(times[DEFAULT], times["FP32"])))
        print()
        if args.profile:
            print_profile(files["FP32"], files[DEFAULT], feed, args.threads)
    print(cpu_line(args.threads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
