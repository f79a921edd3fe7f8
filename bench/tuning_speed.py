#!/usr/bin/env python3
"""How fast the accuracy-target search's pieces are, against what they cannot beat.

1. Calibration (one pass, histograms for every strategy) per image, against
   decoding the image and one FP32 inference of it (goal: at most 1.5x).
2. One search trial (write the INT8 graph, load it, run it on the kept
   evaluation images, compare with the kept FP32 outputs, time it) against the
   INT8 model's own inference over the same images (goal: at most 1.3x).

Both sides run in this process, one after the other, on the same images and
batch size. Prints the CPU and the load average, since the machine may be shared.

Example:
    python bench/tuning_speed.py ../shared/assets/models/mobilenetv2_1.0_224.onnx \\
        ../shared/assets/imagenet/images --mean 127 --std 127.5 --calib 200 --eval 800
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

import numpy as np  # noqa: E402

from guiapp.core.calibrate.calibration import calibrate  # noqa: E402
from guiapp.core.data.dataset import ReadLog, batches, iter_tensors, list_images, seeded_order  # noqa: E402
from guiapp.core.model.feeds import make_feeds  # noqa: E402
from guiapp.core.job import CalibrationSettings, EvalSettings, Job, QuantSettings  # noqa: E402
from guiapp.core.model.modelinfo import inspect_model  # noqa: E402
from guiapp.core.pipeline import Prepared, build, prepare, resolve_spec  # noqa: E402
from guiapp.core.data.preprocess import preset  # noqa: E402
from guiapp.core.progress import CancelToken, no_progress  # noqa: E402
from guiapp.core.report.summary import environment  # noqa: E402
from guiapp.core.evaluate.sessions import make_session  # noqa: E402
from guiapp.core.tasks import EvalContext, TaskSettings, detect_task  # noqa: E402
from guiapp.core.tuning.evalset import build_evalset  # noqa: E402
from guiapp.core.tuning.trials import Goal, TrialSettings  # noqa: E402
from guiapp.core.tuning.workspace import Variant, Workspace  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("images", type=Path)
    ap.add_argument("--preset", default="imagenet")
    ap.add_argument("--mean", type=float)
    ap.add_argument("--std", type=float)
    ap.add_argument("--resize", default="shorter")
    ap.add_argument("--calib", type=int, default=200)
    ap.add_argument("--eval", type=int, default=800)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()

    env = environment(os.cpu_count() or 1)
    print(f"CPU {env['cpu']}, {env['threads']} threads; onnxruntime {env['onnxruntime']}; load {os.getloadavg()}")
    spec = preset(args.preset, 3, resize=args.resize)
    if args.mean is not None:
        spec = replace(spec, mean=(args.mean,) * 3)
    if args.std is not None:
        spec = replace(spec, std=(args.std,) * 3)
    info = inspect_model(args.model)
    spec = resolve_spec(spec, info)
    feeds = make_feeds(info, {})
    files = list_images([args.images])
    order = seeded_order(files, 0)
    calib_files, eval_files = order[: args.calib], order[args.calib: args.calib + args.eval]
    fixed = info.image_input.fixed_batch
    bs = fixed or args.batch
    cancel = CancelToken()
    job = Job(args.model, Path("unused.onnx"), spec, CalibrationSettings(max_images=args.calib, method="entropy", batch_size=bs),
              QuantSettings(), EvalSettings(max_images=args.eval))

    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
        tmp = Path(tmp)
        prepared = prepare(job, info, tmp, no_progress, cancel)

        # ---- 1. calibration vs decode + FP32 inference
        t = time.perf_counter()
        cal = calibrate(prepared.model, args.model, feeds, spec, job.calibration, calib_files, bs, None, no_progress, cancel)
        cal_s = time.perf_counter() - t
        session = make_session(args.model)
        t = time.perf_counter()
        n = 0
        for _, x in batches(iter_tensors(seeded_order(calib_files, 0), spec, args.calib, ReadLog(), cancel), bs):
            session.run(None, feeds(x))
            n += len(x)
        base_s = time.perf_counter() - t
        print(f"calibration (histograms, {cal.images} images): {cal_s / cal.images * 1000:.1f} ms/image; "
              f"decode + FP32 inference: {base_s / n * 1000:.1f} ms/image; ratio {cal_s / cal.images / (base_s / n):.2f}x (goal <= 1.5)")

        # ---- 2. one trial vs the INT8 model's own inference over the same images
        task = detect_task(info)
        evalset = build_evalset(args.model, eval_files, spec, feeds, {o.name: o.shape for o in info.outputs}, args.eval, 0, fixed,
                                tmp, cancel)

        def make_prepared(model, name):
            import onnx

            path = tmp / f"{name}.onnx"
            onnx.save(model, str(path))
            return Prepared(path, model, prepared.steps, prepared.header)

        ws = Workspace(base=Variant(prepared, cal.stats), quant=QuantSettings(), protected=(), percentile=99.99, feeds=feeds,
                       evalset=evalset, task=task, ctx=EvalContext(TaskSettings(), None, 0, spec), goal=Goal("x", "x", 1.0, 1.0),
                       tmp=tmp, calibrate=lambda m: {}, calib_files=calib_files, spec=spec, fixed_batch=fixed, build=build,
                       make_prepared=make_prepared)
        ws.run("strategy", TrialSettings("minmax", True), cancel)  # warm: first imports, first session
        trial = ws.run("strategy", TrialSettings("entropy", True), cancel)
        int8 = make_session(ws.path_of(trial))
        t = time.perf_counter()
        for _, x, _ in evalset.batches(fixed):
            int8.run(None, feeds(x))
        infer_s = time.perf_counter() - t
        print(f"one trial on {len(evalset)} images: {trial.seconds:.2f} s; the INT8 model's inference over them: "
              f"{infer_s:.2f} s; ratio {trial.seconds / infer_s:.2f}x (goal <= 1.3)")
    print(f"load {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
