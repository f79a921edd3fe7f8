#!/usr/bin/env python3
"""A detector through Quantization Studio vs a plain onnxruntime.quantization script.

For one detector and its calibration and (labeled) evaluation images:

  (a) ours: ``guiapp.core.pipeline.quantize`` with the default settings
      (output protection on), and once with ``--no-protect-outputs``;
  (b) ORT: the script its documentation shows: quant_pre_process, then
      quantize_static with a CalibrationDataReader over the same images with
      the same preprocessing (QDQ, per-channel, uint8 activations, MinMax;
      ``--ort-method entropy`` for Entropy).

Every INT8 model is judged by the same code against the same FP32 outputs:
boxes over the score threshold, F1/recall/precision against FP32, and
mAP@0.5 against the labels when given. Prints one row per model.

Example (the project's own detector):
    python bench/detector_vs_ort.py resources/detector/model.onnx \\
        --calib resources/detector/calib --eval resources/detector/eval/images --labels yolo \\
        --preset unit --pad-value 114
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))

from guiapp.core.data.dataset import list_images, seeded_order  # noqa: E402
from guiapp.core.evaluate.compare import evaluate_models, resolve_labels  # noqa: E402
from guiapp.core.model.feeds import make_feeds  # noqa: E402
from guiapp.core.job import CalibrationSettings, EvalSettings, Job, QuantSettings  # noqa: E402
from guiapp.core.model.modelinfo import inspect_model  # noqa: E402
from guiapp.core.context import resolve_spec
from guiapp.core.run import quantize  # noqa: E402
from guiapp.core.data.preprocess import load_tensor, preset  # noqa: E402
from guiapp.core.progress import CancelToken, no_progress  # noqa: E402
from guiapp.core.tasks import TaskSettings, detect_task  # noqa: E402


def plain_ort(model: Path, out: Path, files: list[Path], spec, input_name: str, method: str) -> None:
    """What a user's own script does (onnxruntime's documented recipe)."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(files)

        def get_next(self):
            f = next(self.items, None)
            return None if f is None else {input_name: load_tensor(f, spec)[None].astype(np.float32)}

    pre = out.with_suffix(".pre.onnx")
    try:
        quant_pre_process(str(model), str(pre))
    except Exception:  # noqa: BLE001 - as a user would: without symbolic shape inference
        quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy}[method])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--calib", type=Path, required=True)
    ap.add_argument("--eval", type=Path, required=True)
    ap.add_argument("--labels", help="yolo, a folder of YOLO .txt files, or a COCO .json")
    ap.add_argument("--preset", default="unit")
    ap.add_argument("--mean", type=float)
    ap.add_argument("--std", type=float)
    ap.add_argument("--resize", default="letterbox")
    ap.add_argument("--pad-value", type=int, default=0)
    ap.add_argument("-n", "--calib-images", type=int, default=100)
    ap.add_argument("--eval-images", type=int, default=500)
    ap.add_argument("--score-threshold", type=float, default=0.25)
    ap.add_argument("--ort-method", choices=("minmax", "entropy"), default="minmax")
    args = ap.parse_args()
    args.model, args.calib, args.eval = args.model.absolute(), args.calib.absolute(), args.eval.absolute()

    spec = preset(args.preset, 3, resize=args.resize, pad_value=args.pad_value)
    if args.mean is not None:
        spec = replace(spec, mean=(args.mean,) * 3)
    if args.std is not None:
        spec = replace(spec, std=(args.std,) * 3)
    info = inspect_model(args.model)
    task_settings = TaskSettings(score_threshold=args.score_threshold)
    task = detect_task(info)
    labels_from, labels_path = "none", None
    if args.labels:
        p = Path(args.labels)
        labels_from, labels_path = ("coco", p) if p.suffix == ".json" else ("yolo", p if p.is_dir() else None)
    ev_settings = EvalSettings((args.eval,), labels_from=labels_from, labels_csv=labels_path, max_images=args.eval_images,
                               latency_runs=20, per_layer_images=0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-det-") as tmp:
        tmp = Path(tmp)
        for name, protect in (("guiapp (default: outputs protected)", True), ("guiapp --no-protect-outputs", False)):
            job = Job(args.model, tmp / f"ours_{protect}.onnx", spec,
                      CalibrationSettings((args.calib,), max_images=args.calib_images), QuantSettings(protect_outputs=protect),
                      ev_settings, task=task_settings)
            rows.append((name, quantize(job).report))
        files = seeded_order(list_images([args.calib]), 0)[: args.calib_images]
        resolved = resolve_spec(spec, info)
        ort_out = tmp / "ort.onnx"
        # ONNX Runtime's symbolic shape inference writes into the working directory when it fails.
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            plain_ort(args.model, ort_out, files, resolved, info.image_input.name, args.ort_method)
        finally:
            os.chdir(cwd)
        eval_files = list_images([args.eval])
        ev = evaluate_models(args.model, ort_out, {t.name: t.shape for t in info.outputs}, make_feeds(info, {}), resolved,
                             eval_files, resolve_labels(ev_settings, eval_files), ev_settings, info.image_input.fixed_batch,
                             no_progress, CancelToken(), task=task, task_settings=task_settings)
        rows.append((f"plain onnxruntime quantize_static ({args.ort_method})", ev))

    print(f"model {args.model.name}: {task.reason}")
    print(f"{'INT8 model':42} {'FP32 boxes':>10} {'INT8 boxes':>10} {'matched':>8} {'F1 vs FP32':>10} {'mAP FP32':>9} {'mAP INT8':>9}")
    for name, r in rows:
        d = r["fidelity"]["detection"]
        m = d.get("map50") or {}
        f1 = "-" if d["f1"] is None else f"{d['f1']:.3f}"
        mf = "-" if m.get("fp32") is None else f"{m['fp32'] * 100:.1f}"
        mi = "-" if m.get("int8") is None else f"{m['int8'] * 100:.1f}"
        print(f"{name:42} {d['fp32_boxes']:>10} {d['int8_boxes']:>10} {d['matched']:>8} {f1:>10} {mf:>9} {mi:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
