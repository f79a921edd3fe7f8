#!/usr/bin/env python3
"""Work spread over workers, against the same work in one process.

1. The accuracy-target search: trials per minute with 1 worker (serial, the
   obvious way) and with 2 local worker processes; the same trials must come
   out (checked).
2. An evaluation: images per second in one process and split across 2
   workers (the same numbers must come out: checked), and the cost of one
   image on one core, from which the 50,000-photo estimate for N Ray nodes
   is drawn (per-image cost x images / cores + each worker's start + moving
   the images).

Prints the CPU and the load average (the machine may be shared): compare
only figures from the same run.

Examples:
    python bench/scale.py                       # the bundled demo model
    python bench/scale.py --assets ../shared/assets --eval 800
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))

from guiapp.core import run as run_module  # noqa: E402
from guiapp.core.data.dataset import list_images  # noqa: E402
from guiapp.core.data.preprocess import PreprocessSpec  # noqa: E402
from guiapp.core.demo import demo_folder  # noqa: E402
from guiapp.core.evaluate.compare import evaluate_models  # noqa: E402
from guiapp.core.job import CalibrationSettings, EvalSettings, Job, QuantSettings, TuningSettings  # noqa: E402
from guiapp.core.context import open_context  # noqa: E402
from guiapp.core.parallel import ExecutorSpec, make_executor  # noqa: E402
from guiapp.core.progress import CancelToken, no_progress  # noqa: E402
from guiapp.core.report.summary import environment  # noqa: E402
from guiapp.core.tuning import run as tuning_run  # noqa: E402

PHOTOS = 50_000
LINK_MB_S = 110.0  # one node reading its images over 1 Gbit/s


def demo_job(out: Path, eval_images: int) -> Job:
    job = run_module.load_job(demo_folder() / "demo.job.json")
    return replace(job, output=out, report=None, cache=None,
                   evaluation=replace(job.evaluation, max_images=eval_images, latency_runs=0, per_layer_images=4))


def assets_job(assets: Path, out: Path, calib: int, eval_images: int) -> Job:
    images = assets / "imagenet" / "images"
    spec = PreprocessSpec(mean=(127.0,) * 3, std=(127.5,) * 3, color="rgb", resize="shorter", size=(224, 224))
    return Job(assets / "models" / "mobilenetv2_1.0_224.onnx", out, spec,
               CalibrationSettings((images,), max_images=calib, method="minmax"),
               QuantSettings(),
               EvalSettings((images,), labels_from="csv", labels_csv=assets / "imagenet" / "labels.csv", class_offset=1,
                            max_images=eval_images, latency_runs=0, per_layer_images=4))


def search(job: Job, tmp: Path, spec: ExecutorSpec) -> tuple[float, list]:
    searching = replace(job, output=tmp / f"search-{spec.kind}.onnx",
                        quantization=replace(job.quantization, per_channel=False),
                        tuning=TuningSettings(max_drop=0.2, minutes=30))
    t = time.perf_counter()
    report = run_module.quantize(searching, executor=spec).report
    seconds = time.perf_counter() - t
    trials = [(x["index"], x["method"], tuple(x["float_nodes"]), x["metric"]) for x in report["tuning"]["trials"]]
    return seconds, trials


def evaluation(job: Job, int8: Path, workers: int, threads: int | None) -> tuple[float, dict]:
    executor = make_executor(ExecutorSpec("serial") if workers == 1 else ExecutorSpec("local", workers=workers))
    try:
        with open_context(job, no_progress, CancelToken(), overwrite=True) as ctx:
            files = list_images(job.evaluation.folders, "evaluation")
            plan = replace(ctx.eval_plan(files), threads=threads)
            t = time.perf_counter()
            ev = evaluate_models(job.model, int8, plan, no_progress, CancelToken(), executor, shard_images=64)
            return time.perf_counter() - t, ev
    finally:
        executor.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--assets", type=Path, help="../shared/assets: MobileNetV2 on the ImageNet photos (default: the demo)")
    ap.add_argument("--calib", type=int, default=200)
    ap.add_argument("--eval", type=int, default=800)
    ap.add_argument("--skip-search", action="store_true")
    args = ap.parse_args()

    env = environment(os.cpu_count() or 1)
    print(f"CPU {env['cpu']} ({', '.join(env['cpu_int8_features'] or [])}), {env['threads']} threads; "
          f"onnxruntime {env['onnxruntime']}; load {os.getloadavg()}")
    tuning_run.POOL_WORTH_S = 0.0  # measure the pool even on quick trials
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        tmp = Path(tmp)
        out = tmp / "model.int8.onnx"
        job = assets_job(args.assets, out, args.calib, args.eval) if args.assets else demo_job(out, min(args.eval, 300))
        print(f"model {job.model.name}, {job.evaluation.max_images} evaluation images")

        if not args.skip_search:
            s1, t1 = search(job, tmp, ExecutorSpec("serial"))
            s2, t2 = search(job, tmp, ExecutorSpec("local", workers=2))
            same = "the same trials" if t1 == t2 else "DIFFERENT TRIALS"
            print(f"search: serial {len(t1)} trials in {s1:.1f} s ({len(t1) / s1 * 60:.1f}/min); "
                  f"2 workers {len(t2)} trials in {s2:.1f} s ({len(t2) / s2 * 60:.1f}/min); speed-up {s1 / s2:.2f}x; {same}")

        run_module.quantize(job)  # the INT8 model evaluated below
        e1, ev1 = evaluation(job, out, 1, None)
        e2, ev2 = evaluation(job, out, 2, None)
        c1, _ = evaluation(job, out, 1, 1)  # one core: the per-image cost a cluster node's core pays
        n = ev1["images"]
        same = ev1["fidelity"]["headline"]["value"] == ev2["fidelity"]["headline"]["value"] and ev1["images"] == ev2["images"]
        print(f"evaluation of {n} images: one process {n / e1:.1f} images/s; 2 workers {n / e2:.1f} images/s; "
              f"speed-up {e1 / e2:.2f}x; {'the same numbers' if same else 'DIFFERENT NUMBERS'}")
        per_image = c1 / n
        start = max(0.0, e2 - e1 / 2)  # what two workers lose to starting (sessions, imports) beyond half the work
        files = list_images(job.evaluation.folders, "evaluation")
        mb = sum(p.stat().st_size for p in files) / len(files) / 1e6
        print(f"one image on one core: {per_image * 1000:.1f} ms (FP32 + INT8, decode included); mean file {mb:.2f} MB; "
              f"worker start about {start:.1f} s")
        print(f"estimate for {PHOTOS} photos (per-image cost x photos / cores + start + {LINK_MB_S:.0f} MB/s per node to read them):")
        for nodes, cores in ((1, 2), (4, 8), (16, 8), (64, 8)):
            compute = per_image * PHOTOS / (nodes * cores)
            transfer = mb * PHOTOS / nodes / LINK_MB_S
            print(f"  {nodes:3d} node(s) x {cores} cores: {(compute + start + transfer) / 60:6.1f} min "
                  f"(compute {compute / 60:.1f}, reading {transfer / 60:.1f})")
    print(f"load {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
