#!/usr/bin/env python3
"""How fast the accuracy-target search's pieces are, against what they cannot beat (issue 21).

(a) One search trial (write the INT8 graph, load it, run it on the kept
    evaluation images, compare with the kept FP32 outputs, time it alone)
    against the INT8 model's own inference over the same images (goal: at
    most 1.3x). A trial that changes only the strategy of an earlier one is
    written by patching the graph ONNX Runtime's quantizer wrote before
    ("patched"); the same trial with the quantizer writing it ("quantizer")
    is what every trial cost before. Each strategy's ranges are computed once
    per graph (calibrate/strategies.py); their cost is printed apart, and the
    first trial of each strategy pays it.
(a') A trial that sends a layer back to float: a new structure, so ONNX
    Runtime's quantizer writes it, reusing the weights it quantized in earlier
    runs (quantize/weightmemo.py); the same trial without that (before).
(b) Calibration with histograms (what a search calibrates with) per image,
    against decoding the image and one FP32 inference of it (goal: at most
    2.0x, stretch 1.5x).

Both sides of each ratio run in this process, on the same images and batch
size, alternated --repeat times (the machine may be shared: medians, and the
CPU and load average are printed).

Example (MobileNetV2, 200 calibration / 800 evaluation photos):
    python bench/tuning_speed.py ../shared/assets/models/mobilenetv2_1.0_224.onnx \\
        ../shared/assets/imagenet/images --mean 127 --std 127.5 \\
        --labels ../shared/assets/imagenet/labels.csv --class-offset 1 --calib 200 --eval 800
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))

from guiapp.core.calibrate.calibration import calibrate  # noqa: E402
from guiapp.core.context import open_context  # noqa: E402
from guiapp.core.data.dataset import ReadLog, batches, iter_tensors  # noqa: E402
from guiapp.core.data.preprocess import preset  # noqa: E402
from guiapp.core.evaluate.sessions import make_session  # noqa: E402
from guiapp.core.job import CalibrationSettings, EvalSettings, Job, QuantSettings, Recipe, TuningSettings  # noqa: E402
from guiapp.core.progress import CancelToken, no_progress  # noqa: E402
from guiapp.core.quantize.prepare import prepare  # noqa: E402
from guiapp.core.quantize.protect import find_protections  # noqa: E402
from guiapp.core.quantize.variants import Variant, VariantBuilder  # noqa: E402
from guiapp.core.quantize.weightmemo import MEMO  # noqa: E402
from guiapp.core.report.summary import environment  # noqa: E402
from guiapp.core.tuning.evalset import build_evalset, score  # noqa: E402
from guiapp.core.tuning.scorer import Scorer, latency_ms  # noqa: E402
from guiapp.core.tuning.trials import Goal  # noqa: E402

TRIAL_GOAL = 1.3
CALIB_GOAL, CALIB_STRETCH = 2.0, 1.5


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("images", type=Path)
    ap.add_argument("--preset", default="imagenet")
    ap.add_argument("--mean", type=float)
    ap.add_argument("--std", type=float)
    ap.add_argument("--resize", default="shorter")
    ap.add_argument("--shorter", type=int, default=256, help="shorter side before the centre crop (resize=shorter)")
    ap.add_argument("--labels", type=Path, help="labels CSV (file, class_index): top-1 is the search's metric")
    ap.add_argument("--class-offset", type=int, default=0)
    ap.add_argument("--calib", type=int, default=200)
    ap.add_argument("--eval", type=int, default=800)
    ap.add_argument("--batch", type=int, default=8, help="calibration batch")
    ap.add_argument("--first", default="minmax", help="the strategy of the first trial (the quantizer writes it)")
    ap.add_argument("--measure", default="entropy,percentile,mse", help="strategies whose patched trials are timed (the search tries these three)")
    ap.add_argument("--repeat", type=int, default=3)
    return ap.parse_args()


def make_job(args: argparse.Namespace, out: Path) -> Job:
    spec = preset(args.preset, 3, resize=args.resize, resize_shorter=args.shorter if args.resize == "shorter" else None)
    if args.mean is not None:
        spec = replace(spec, mean=(args.mean,) * 3)
    if args.std is not None:
        spec = replace(spec, std=(args.std,) * 3)
    labels = {"labels_from": "csv", "labels_csv": args.labels, "class_offset": args.class_offset} if args.labels else {}
    return Job(args.model, out, spec,
               CalibrationSettings((args.images,), max_images=args.calib, method="entropy", batch_size=args.batch),
               QuantSettings(), EvalSettings((args.images,), max_images=args.eval, **labels), tuning=TuningSettings(max_drop=1.0))


def cpu_line() -> str:
    env = environment(os.cpu_count() or 1)
    feats = ", ".join(env["cpu_int8_features"] or []) or "no int8 dot product"
    return (f"CPU {env['cpu']} ({feats}), {env['physical_cores']} physical core(s), {env['threads']} thread(s); "
            f"onnxruntime {env['onnxruntime']}, numpy {env['numpy']}; load {tuple(round(x, 2) for x in os.getloadavg())}")


def ratio_line(what: str, num: list[float], den: list[float], goal: str, unit: str = "s") -> str:
    ratios = [a / b for a, b in zip(num, den)]
    return (f"{what}: {statistics.median(num):.2f} {unit} against {statistics.median(den):.2f} {unit}; ratio "
            f"{statistics.median(ratios):.2f}x (runs: {', '.join(f'{r:.2f}' for r in ratios)}) {goal}")


def calibration_pairs(ctx, prepared, repeat: int) -> tuple[list[float], list[float], int]:
    """(b): seconds per image of our histogram calibration and of decode +
    FP32 inference of the same images, ``repeat`` alternated runs."""
    inputs = ctx.calibration_inputs(cache_path=None, share_activation_ranges=True)  # as the ONNX Runtime target
    session = make_session(ctx.job.model)
    cal_s, base_s, n = [], [], 0
    cal = None
    for k in range(repeat):
        def run_cal():
            nonlocal cal
            t = time.perf_counter()
            cal = calibrate(prepared.model, inputs, no_progress, ctx.cancel)
            cal_s.append((time.perf_counter() - t) / cal.images)

        def run_base():
            nonlocal n
            files = list(cal.used)  # the images calibration read, in its order
            t, n = time.perf_counter(), 0
            for _, x in batches(iter_tensors(files, ctx.spec, ctx.job.calibration.max_images, ReadLog(), ctx.cancel),
                                inputs.batch_size):
                session.run(None, ctx.feeds(x))
                n += len(x)
            base_s.append((time.perf_counter() - t) / n)

        for step in ((run_cal, run_base) if k % 2 == 0 else (run_base, run_cal)):  # calibration first: its images
            step()
    return cal_s, base_s, cal


def inference_s(path: Path, evalset, plan) -> float:
    """The INT8 model's own inference over the kept images (their normalization overlaps it, as in a trial)."""
    session = make_session(path, plan.threads)
    t = time.perf_counter()
    for _, x, _ in evalset.batches(plan.fixed_batch):
        session.run(evalset.names, plan.feeds(x))
    return time.perf_counter() - t


def breakdown(builder, evalset, plan, r: Recipe, out: Path) -> str:
    """Where one patched trial's time goes (the pieces Scorer.run runs, timed one by one)."""
    t0 = time.perf_counter()
    builder.build(r, out, CancelToken())
    t1 = time.perf_counter()
    _, session = score(evalset, out, plan, CancelToken())
    t2 = time.perf_counter()
    latency_ms(session, evalset, plan.fixed_batch)
    t3 = time.perf_counter()
    return f"write {t1 - t0:.3f} s, load + run + compare {t2 - t1:.2f} s, latency alone {t3 - t2:.2f} s"


def trial_pairs(ws: Scorer, builder: VariantBuilder, args) -> None:
    """(a): patched trials, the same trials written by the quantizer, and the
    INT8 model's own inference, alternated."""
    cancel = CancelToken()
    methods = [m for m in args.measure.split(",") if m]
    first = ws.run("strategy", Recipe(args.first, True), cancel)  # the quantizer writes it; its graph is kept
    print(f"first trial ({args.first}, written by the quantizer, its ranges computed in it): {first.seconds:.2f} s")
    for m in methods:  # as in a search: a strategy's first trial computes its ranges (those the patch reads)
        infer = inference_s(ws.path_of(first), ws.evalset, ws.plan)
        t = ws.run("strategy", Recipe(m, True), cancel)
        print(f"first {m} trial (patched, computing its ranges): {t.seconds:.2f} s against the INT8 inference "
              f"{infer:.2f} s: ratio {t.seconds / infer:.2f}x", flush=True)
        start = time.perf_counter()
        builder.ranges(builder.base, Recipe(m, True))  # the rest of them, for the quantizer's trials below
        print(f"  (the rest of {m}'s ranges, which only the quantizer reads: {time.perf_counter() - start:.2f} s)")
    infer, patched, quantized = [], [], []
    written = builder.written
    for k in range(args.repeat):
        m = methods[k % len(methods)]
        infer.append(inference_s(ws.path_of(first), ws.evalset, ws.plan))
        builder.written = written
        # These trials repeat earlier ones: the scorer would know their files and not score
        # them again (tuning/scorer.py). Forgotten here, so that each is scored as a new trial.
        ws._digests.clear()
        patched.append(ws.run("strategy", Recipe(m, True), cancel).seconds)
        builder.written = None  # what every trial cost before: the quantizer writes it
        ws._digests.clear()
        with MEMO.disabled():
            quantized.append(ws.run("strategy", Recipe(m, True), cancel).seconds)
        builder.written = written
        print(f"  run {k + 1} ({m}, ranges known): INT8 inference {infer[-1]:.2f} s, patched trial {patched[-1]:.2f} s, "
              f"quantizer trial {quantized[-1]:.2f} s", flush=True)
    print(f"patched trial, {breakdown(builder, ws.evalset, ws.plan, Recipe(methods[0], True), ws.tmp / 'parts.onnx')}")
    print(f"trials written: {written.patched} patched, {written.quantized} by the quantizer")
    print(ratio_line(f"(a) one trial (patched) vs the INT8 model's inference over {len(ws.evalset)} images", patched, infer,
                     f"goal <= {TRIAL_GOAL}"))
    print(ratio_line("    the same trial written by ONNX Runtime's quantizer (before)", quantized, infer, "(for reference)"))
    float_trials(ws, builder, methods[0], args.repeat)


def float_trials(ws: Scorer, builder: VariantBuilder, method: str, repeat: int) -> None:
    """(a') trials that send a layer back to float: a new structure each, so
    the quantizer writes them, reusing the weights it quantized in earlier
    trials (quantize/weightmemo.py); the same trials without that memo. Each
    against its own model's inference (a float layer makes it slower)."""
    cancel = CancelToken()
    convs = [n.name for n in builder.base.prepared.model.graph.node if n.op_type == "Conv"]
    infer, remembered, plain = [], [], []
    written, builder.written = builder.written, None  # each trial below is written by the quantizer
    for k in range(repeat):
        r = Recipe(method, True, float_nodes=(convs[(k + 1) * len(convs) // (repeat + 1)],))
        ws._digests.clear()
        t = ws.run("float", r, cancel)
        remembered.append(t.seconds)
        infer.append(inference_s(ws.path_of(t), ws.evalset, ws.plan))
        ws._digests.clear()
        with MEMO.disabled():
            plain.append(ws.run("float", r, cancel).seconds)
        print(f"  float run {k + 1} ({r.float_nodes[0]} in float): its INT8 inference {infer[-1]:.2f} s, "
              f"weights remembered {remembered[-1]:.2f} s, without {plain[-1]:.2f} s", flush=True)
    builder.written = written
    print(ratio_line("(a') one trial with a layer back to float (the quantizer writes it, weights remembered) vs its "
                     "model's inference", remembered, infer, f"goal <= {TRIAL_GOAL}"))
    print(ratio_line("    the same trial without the weights remembered (before)", plain, infer, "(for reference)"))


def main() -> int:
    args = parse_args()
    print(cpu_line(), flush=True)
    cancel = CancelToken()
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as out_dir:
        job = make_job(args, Path(out_dir) / "unused.onnx")
        with open_context(job, cancel=cancel, overwrite=True) as ctx:
            prepared = prepare(job.model, ctx.info.opset, ctx.tmp, no_progress, cancel)
            cal_s, base_s, cal = calibration_pairs(ctx, prepared, args.repeat)
            print(ratio_line(f"(b) calibration with histograms per image ({cal.images} images, batch {args.batch}) vs decode + "
                             "FP32 inference per image", [x * 1000 for x in cal_s], [x * 1000 for x in base_s],
                             f"goal <= {CALIB_GOAL} (stretch {CALIB_STRETCH})", "ms"), flush=True)
            eval_files, _, _ = ctx.evaluation_files(cal.used, cal.skipped)
            q = job.quantization
            protections = find_protections(prepared.model, {n: (s.lo, s.hi) for n, s in cal.stats.items()}) if q.protect_outputs else []
            protected = tuple(dict.fromkeys(n for p in protections for n in p.nodes))
            builder = VariantBuilder(Variant(prepared, cal.stats), q, protected, job.calibration.percentile,
                                     ctx.calibration_inputs(cache_path=None, share_activation_ranges=True), ctx.fixed_batch,
                                     ctx.tmp)
            plan = replace(ctx.eval_plan(eval_files), noise_images=0)
            t = time.perf_counter()
            evalset = build_evalset(job.model, plan, ctx.tmp, cancel)
            print(f"evaluation set: {len(evalset)} images decoded and run in FP32 once, {time.perf_counter() - t:.1f} s")
            ws = Scorer(builder, evalset, plan, Goal("", "", 1.0, 0.0), ctx.tmp, frozenset(protected))
            trial_pairs(ws, builder, args)
    print(cpu_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
