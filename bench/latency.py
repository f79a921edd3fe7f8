#!/usr/bin/env python3
"""Latency: the app's figures against a user's own timing script.

For an FP32 model and its INT8 model, each run of this script measures

  standalone  each model in a fresh process running a plain ONNX Runtime
              script, as a user times a model: one session with default
              options, warm-up, then a loop of timed runs; the median;
  app         both models with the app's own latency function
              (guiapp.core.evaluate.latency.time_models, what a quantization run
              reports), in a fresh process;

and prints per-run figures, the medians over runs, the ratio app/standalone
for each model (the app's figures must be within 10 % of the standalone ones)
and the INT8/FP32 ratio, with the CPU line and the machine's load before and
after every run. All figures compared come from the same run of this script.

Without --int8 the INT8 model is made with the app's default settings: from
--job, or, for a model in the shared assets (models/specs.json), from 200
ImageNet photos with the preprocessing the assets state.

Example:
    python bench/latency.py ../shared/assets/models/squeezenet1.1.onnx --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

# A user's own timing script: plain ONNX Runtime, nothing of the app.
STANDALONE = """
import json, sys, time
import numpy as np
import onnxruntime as ort

path, feed_file, runs, min_s, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
so = ort.SessionOptions()
if threads:
    so.intra_op_num_threads = threads
session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
feed = dict(np.load(feed_file))
start = time.perf_counter()
n = 0
while n < 10 or time.perf_counter() - start < 0.5:  # warm-up
    session.run(None, feed)
    n += 1
times = []
start = time.perf_counter()
while len(times) < runs or time.perf_counter() - start < min_s:
    t = time.perf_counter()
    session.run(None, feed)
    times.append((time.perf_counter() - t) * 1000.0)
chunks = [float(np.median(c)) for c in np.array_split(np.array(times), 5)]  # drift within the measurement
print(json.dumps({"median": float(np.median(times)), "runs": len(times), "spread": max(chunks) / min(chunks)}))
"""


def app_worker(fp32: str, int8: str, feed_file: str, threads: int) -> dict:
    """The app's latency function on both models (runs in a fresh process)."""
    import numpy as np

    from guiapp.core.evaluate.latency import time_models

    feed = dict(np.load(feed_file))
    summaries, context, _ = time_models({"fp32": Path(fp32), "int8": Path(int8)}, feed, runs=50, threads=threads or None)
    return {k: v["median"] for k, v in summaries.items()} | {"threads": context["threads"], "spread": context["round_spread"]}


def _python(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        raise SystemExit(f"worker failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def standalone(model: Path, feed_file: Path, runs: int, min_s: float, threads: int) -> dict:
    return _python(["-c", STANDALONE, str(model), str(feed_file), str(runs), str(min_s), str(threads)])


def app(fp32: Path, int8: Path, feed_file: Path, threads: int) -> dict:
    return _python([str(HERE), "--app-worker", str(fp32), str(int8), str(feed_file), str(threads)])


# ---------------------------------------------------------------- machine state


def load1() -> float:
    return os.getloadavg()[0]


def wait_quiet(limit: float, max_wait: float) -> float:
    """Wait (up to max_wait s) for the 1-minute load average to fall to limit."""
    start = time.monotonic()
    while load1() > limit and time.monotonic() - start < max_wait:
        time.sleep(5)
    return load1()


class Others:
    """Other programs' share of the CPUs while the children ran (our children's
    CPU time subtracted from the machine's busy time)."""

    def __enter__(self):
        from guiapp.core.evaluate.latency import OthersMeter

        self.meter = OthersMeter(own_cpu=lambda: _children_cpu())
        self.meter.start()
        return self

    def __exit__(self, *exc):
        self.share = self.meter.share()


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ---------------------------------------------------------------- inputs and the INT8 model


def make_feed(model: Path, out: Path) -> str:
    """A fixed random input of batch 1 for every input of the model."""
    import numpy as np
    import onnxruntime as ort

    s = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {}
    dtypes = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int64)": np.int64}
    for i in s.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        dt = dtypes.get(i.type, np.float32)
        feed[i.name] = rng.standard_normal(shape).astype(dt) if dt is np.float32 else np.zeros(shape, dt)
    np.savez(out, **feed)
    return ", ".join(f"{k} {list(v.shape)}" for k, v in feed.items())


def assets_dir() -> Path:
    return Path(os.environ.get("GUIAPP_ASSETS") or ROOT.parent / "shared" / "assets")


def quantize_for_bench(model: Path, job_file: Path | None, out: Path, progress: bool) -> None:
    """The INT8 model with the app's default settings."""
    from dataclasses import replace

    from guiapp.core import run as pipeline
    from guiapp.core.job import CalibrationSettings, EvalSettings, Job
    from guiapp.core.data.preprocess import PreprocessSpec

    if job_file is not None:
        job = replace(load_job(job_file), model=model, output=out, report=None, cache=None)
    else:
        specs = json.loads((assets_dir() / "models" / "specs.json").read_text())
        entry = next((e for e in specs.values() if Path(e["file"]).name == model.name), None)
        if entry is None:
            raise SystemExit(f"{model.name} is not in the assets' specs.json: give --int8 FILE or --job JOB.json")
        pp = entry["preprocess"]
        shorter = int(pp["resize"].split()[2].rstrip(",")) if pp["resize"].startswith("shorter side") else None
        spec = PreprocessSpec(mean=tuple(pp["mean_pixel"]), std=tuple(pp["std_pixel"]), color=pp["color"].lower(),
                              layout=entry["input"]["layout"].lower(), resize="shorter" if shorter else "stretch",
                              resize_shorter=shorter)
        images = assets_dir() / "imagenet" / "images"
        job = Job(model=model, output=out, preprocess=spec, calibration=CalibrationSettings(folders=(images,), max_images=200),
                  evaluation=EvalSettings(folders=(images,), max_images=20, latency_runs=5, per_layer_images=0))
    if progress:
        print(f"quantizing {model.name} with the app's default settings ...", flush=True)
    pipeline.quantize(job, overwrite=True)


# ---------------------------------------------------------------- main


def cpu_line(threads: int) -> str:
    import onnxruntime

    from guiapp.core.evaluate.cpu import current_cpu

    cpu = current_cpu()
    return (f"CPU: {cpu.model}; INT8 instruction sets: {cpu.features_text()}; {os.cpu_count()} logical CPUs, "
            f"{cpu.physical_cores} physical cores; threads: {threads or f'ONNX Runtime default ({cpu.physical_cores})'}; "
            f"ONNX Runtime {onnxruntime.__version__}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--app-worker":
        fp32, int8, feed, threads = sys.argv[2:6]
        print(json.dumps(app_worker(fp32, int8, feed, int(threads))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path, help="the FP32 .onnx model")
    ap.add_argument("--int8", type=Path, help="its INT8 model (default: made here with the app's default settings)")
    ap.add_argument("--job", type=Path, help="job file to make the INT8 model with (model and output overridden)")
    ap.add_argument("--runs", type=int, default=3, help="runs of the whole comparison (medians over them)")
    ap.add_argument("--n", type=int, default=200, help="timed inferences per standalone measurement (at least)")
    ap.add_argument("--min-seconds", type=float, default=2.0, help="timed seconds per standalone measurement (at least)")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (default: ONNX Runtime's own choice)")
    ap.add_argument("--quiet-load", type=float, default=0.5, help="wait for the 1-minute load average to fall to this")
    ap.add_argument("--max-wait", type=float, default=300, help="seconds to wait for that before each run")
    ap.add_argument("--keep-int8", type=Path, help="keep the INT8 model made here at this path")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    int8 = args.int8
    if int8 is None:
        int8 = args.keep_int8 or tmp / (args.model.stem + ".int8.onnx")
        quantize_for_bench(args.model, args.job, int8, progress=True)
    feed_file = tmp / "feed.npz"
    shapes = make_feed(args.model, feed_file)

    print(cpu_line(args.threads))
    print(f"FP32: {args.model}\nINT8: {int8}\ninput: {shapes} (fixed random values, the same for every measurement)")
    print(f"standalone: fresh process, plain ONNX Runtime, >= {args.n} runs and >= {args.min_seconds:g} s after warm-up; "
          "app: guiapp.core.evaluate.latency.time_models in a fresh process\n")
    head = (f"{'run':>3}  {'load before':>11}  {'FP32 alone':>10}  {'FP32 app':>8}  {'INT8 alone':>10}  {'INT8 app':>8}  "
            f"{'load after':>10}  {'others':>6}  {'spread':>6}")
    print(head + "\n" + "-" * len(head))
    rows = []
    for r in range(args.runs):
        before = wait_quiet(args.quiet_load, args.max_wait)
        with Others() as others:
            order = ["fp32", "int8"] if r % 2 == 0 else ["int8", "fp32"]  # alternate, so drift reaches both
            alone = {k: standalone(args.model if k == "fp32" else int8, feed_file, args.n, args.min_seconds, args.threads) for k in order}
            by_app = app(args.model, int8, feed_file, args.threads)
        share = "?" if others.share is None else f"{others.share * 100:.0f}%"
        spread = max(alone["fp32"]["spread"], alone["int8"]["spread"], by_app["spread"] or 1.0)
        row = {"fp32_alone": alone["fp32"]["median"], "int8_alone": alone["int8"]["median"], "fp32_app": by_app["fp32"],
               "int8_app": by_app["int8"], "load_before": before, "load_after": load1(), "spread": spread}
        rows.append(row)
        print(f"{r + 1:>3}  {before:>11.2f}  {row['fp32_alone']:>7.3f} ms  {row['fp32_app']:>5.3f} ms  {row['int8_alone']:>7.3f} ms  "
              f"{row['int8_app']:>5.3f} ms  {row['load_after']:>10.2f}  {share:>6}  {spread:>6.2f}" + ("  unsteady" if spread > 1.15 else ""))
    med = {k: statistics.median(r[k] for r in rows) for k in ("fp32_alone", "fp32_app", "int8_alone", "int8_app")}
    print("-" * len(head))
    print(f"{'median':>16}  {med['fp32_alone']:>7.3f} ms  {med['fp32_app']:>5.3f} ms  {med['int8_alone']:>7.3f} ms  {med['int8_app']:>5.3f} ms\n")
    # The verdict uses ratios paired within a run (measured seconds apart), whose median over
    # runs is robust to the machine drifting between runs; the ratio of the medians is shown too.
    ok = True
    for k in ("fp32", "int8"):
        paired = statistics.median(r[f"{k}_app"] / r[f"{k}_alone"] for r in rows)
        within = abs(paired - 1) <= 0.10
        ok &= within
        print(f"{k.upper()}: app / standalone = {paired:.3f} (median of the runs' ratios; ratio of the medians "
              f"{med[f'{k}_app'] / med[f'{k}_alone']:.3f})  {'within' if within else 'OUTSIDE'} 10 %")
    pa = statistics.median(r["int8_alone"] / r["fp32_alone"] for r in rows)
    pp = statistics.median(r["int8_app"] / r["fp32_app"] for r in rows)
    print(f"INT8 / FP32 (median of the runs' ratios): standalone {pa:.3f}, app {pp:.3f}; "
          f"ratio of the medians: standalone {med['int8_alone'] / med['fp32_alone']:.3f}, app {med['int8_app'] / med['fp32_app']:.3f}")
    unsteady = [i + 1 for i, r in enumerate(rows) if r["spread"] > 1.15]
    print("spread: the slowest over the fastest part of one measurement (1.00 = steady). "
          + (f"Runs {unsteady} were unsteady (other programs or virtual machines on these cores): re-run when the "
             "machine is quiet before trusting a comparison." if unsteady else "Every run was steady."))
    print(cpu_line(args.threads))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
