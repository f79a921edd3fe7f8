"""The command line's parser: every subcommand and flag (cli.py runs them)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import APP_NAME, __version__
from . import normcheck
from ..core.calibrate.strategies import METHODS
from ..core.data.preprocess import COLORS, INTERPOLATIONS, LAYOUTS, PRESETS, RESIZES
from ..core.job import ACTIVATION_TYPES, FORMATS
from ..core.targets.registry import TARGET_KINDS
from ..core.targets.rknn import PLATFORMS as RKNN_PLATFORMS
from ..core.tasks import TASK_KINDS
from ..core.tasks.detection_layout import BOX_FORMATS


def _preprocess_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("preprocessing (mean/std in pixel units 0..255: out = (pixel - mean) / std)")
    g.add_argument("--preset", choices=list(PRESETS), help="normalization preset (default: imagenet)")
    g.add_argument("--mean", metavar="M1,M2,M3", help="per-channel mean in pixel units, overrides the preset's")
    g.add_argument("--std", metavar="S1,S2,S3", help="per-channel std in pixel units, overrides the preset's")
    g.add_argument("--color", choices=COLORS, help="channel order the model expects")
    g.add_argument("--layout", choices=LAYOUTS, help="image input layout (default: detected)")
    g.add_argument("--resize", choices=RESIZES, help="resize policy (default: shorter = resize shorter side, centre-crop)")
    g.add_argument("--resize-shorter", type=int, metavar="N", help="shorter side before the crop (default: size*256/224)")
    g.add_argument("--size", metavar="HxW", help="input size, needed when the model's height/width are dynamic")
    g.add_argument("--interpolation", choices=list(INTERPOLATIONS), help="resampling filter (default: bilinear)")
    g.add_argument("--pad-value", type=int, metavar="V", help="letterbox fill in pixel units (default: 0)")
    g.add_argument("--input-value", action="append", metavar="NAME=V[,V...]",
                   help="a constant for a model input besides the image (repeatable); one value fills it")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guiapp", description=f"{APP_NAME}: FP32 ONNX image models to fast, accurate INT8.")
    parser.add_argument("--version", action="version", version=f"{APP_NAME} {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("inspect", help="show a model's inputs, outputs, operators and blockers")
    p.add_argument("model", type=Path)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--layout", choices=LAYOUTS, default="auto")
    p.add_argument("--size", metavar="HxW", help="run a model whose input size is open at this size (default: the size "
                                               "its file states, e.g. Ultralytics' imgsz) to read the outputs' real shapes")

    _quantize_parser(sub)

    p = sub.add_parser("evaluate", help="compare an FP32 model and its INT8 version on images")
    p.add_argument("fp32", type=Path)
    p.add_argument("int8", type=Path)
    p.add_argument("--images", type=Path, action="append", required=True, metavar="DIR")
    _preprocess_flags(p)
    _eval_flags(p, prefix=False)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report", type=Path, metavar="R.json")
    executor_flags(p)

    normcheck.add_parser(sub, _preprocess_flags)

    p = sub.add_parser("batch", help="quantize many models: one job file each (or a folder of them), on every core or a Ray cluster",
                       description="Run every job (a failing one never stops the others), then time each model alone. "
                                   "Exit 0 only when every job succeeded.")
    p.add_argument("jobs", type=Path, nargs="+", metavar="JOB.json|DIR", help="job files, or folders of them")
    p.add_argument("--index", type=Path, metavar="INDEX.json",
                   help="where to write the index (JSON, and an HTML table beside it; default: batch-index.json beside the first job)")
    p.add_argument("--force", action="store_true", help="replace existing outputs")
    executor_flags(p)

    p = sub.add_parser("demo", help="quantize the bundled demo model end to end")
    p.add_argument("--out-dir", type=Path, metavar="DIR", help="where to write the demo's outputs (default: a new temp folder)")
    return parser


def _quantize_parser(sub) -> None:
    p = sub.add_parser("quantize", help="calibrate and quantize a model to INT8, then evaluate it")
    p.add_argument("model", type=Path, nargs="?", help="FP32 .onnx model (or give --job)")
    p.add_argument("--calib", type=Path, action="append", metavar="DIR", help="calibration image folder (repeatable)")
    p.add_argument("--out", type=Path, metavar="OUT.onnx", help="where to write the INT8 model")
    _preprocess_flags(p)
    _quantization_flags(p)
    _eval_flags(p)
    _target_flags(p)
    _file_flags(p)
    executor_flags(p)


def _quantization_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("calibration and quantization")
    g.add_argument("--method", choices=METHODS, help="calibration strategy (default: minmax)")
    g.add_argument("--percentile", type=float, metavar="P", help="for --method percentile (default 99.99)")
    pc = g.add_mutually_exclusive_group()
    pc.add_argument("--per-channel", dest="per_channel", action="store_true", default=None, help="per-channel weights (default)")
    pc.add_argument("--per-tensor", dest="per_channel", action="store_false", help="one scale per weight tensor")
    g.add_argument("--activation-type", choices=ACTIVATION_TYPES, help="default uint8 (int8 is slower on x86)")
    g.add_argument("--format", choices=FORMATS, help="QDQ (default) or QOperator")
    g.add_argument("--symmetric-activations", action="store_true", default=None)
    g.add_argument("--reduce-range", action="store_true", default=None, help="7-bit weights, for x86 CPUs without VNNI")
    share = g.add_mutually_exclusive_group()
    share.add_argument("--share-concat-ranges", dest="share_concat_ranges", action="store_true", default=None,
                       help="Concat inputs read only by the Concat take its range: it copies instead of requantizing (default)")
    share.add_argument("--separate-concat-ranges", dest="share_concat_ranges", action="store_false",
                       help="every Concat input keeps its own range")
    pad = g.add_mutually_exclusive_group()
    pad.add_argument("--pad-channels", dest="pad_channels", action="store_true", default=None,
                     help="pad convolutions' input channels to a multiple of 4: same outputs, ONNX Runtime's fast x86 kernel (default)")
    pad.add_argument("--no-pad-channels", dest="pad_channels", action="store_false", help="leave channel counts as they are")
    g.add_argument("--batch-one", action="store_true", default=None, help="fix the INT8 model's batch size to 1 (you run one image at a time)")
    form = g.add_mutually_exclusive_group()
    form.add_argument("--ort-optimized", dest="ort_optimized", action="store_true", default=None,
                     help="write the graph as ONNX Runtime optimizes it (fused QLinear ops; loads in ONNX Runtime only)")
    form.add_argument("--portable", dest="ort_optimized", action="store_false", help="write the plain QDQ/QOperator graph")
    g.add_argument("--exclude", action="append", metavar="NODE[,NODE...]", help="nodes to keep in float")
    g.add_argument("--exclude-op-types", metavar="OP[,OP...]", help="operator types to keep in float")
    g.add_argument("--max-images", type=int, metavar="N", help="calibration images to use (default 200)")
    g.add_argument("--seed", type=int, metavar="S", help="seed for picking calibration images (default 0)")
    g.add_argument("--batch-size", type=int, metavar="B", help="calibration batch (default 8; 1 for fixed-batch models)")
    g.add_argument("--keep-float", type=int, metavar="N", help="re-quantize with the N worst layers (per-layer SQNR) in float")
    g.add_argument("--per-layer", action="store_true", help="print the per-layer error table, worst first")
    g.add_argument("--equalize", action="store_true", default=None,
                   help="cross-layer equalization before calibrating (helps per-tensor weights)")
    g.add_argument("--bias-correction", action="store_true", default=None,
                   help="absorb the weights' quantization shift into the biases (helps per-tensor weights)")
    g.add_argument("--max-drop", type=float, metavar="X",
                   help="accuracy target: search for the fastest INT8 model at most X points below FP32 on the task's "
                        "headline metric (top-1 with labels; agreement, detection F1 or mask IoU vs FP32 without)")
    g.add_argument("--tune-minutes", type=float, metavar="M", help="time budget of the --max-drop search (default 10)")
    g.add_argument("--no-protect-outputs", dest="protect_outputs", action="store_false", default=None,
                   help="do not keep output tails that INT8 would crush (mixed-range concats, sigmoid/softmax outputs) in float")


def _target_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("deployment target")
    g.add_argument("--target", choices=TARGET_KINDS,
                   help="runtime to build for (default onnxruntime); rknn writes a .rknn (give --out M.rknn), openvino adds "
                        "the IR (.xml/.bin), tensorrt a symmetric QDQ model and a calibration cache")
    g.add_argument("--rknn-platform", choices=RKNN_PLATFORMS, help="rknn: the Rockchip chip (default rk3588)")
    g.add_argument("--rknn-python", type=Path, metavar="PYTHON",
                   help="rknn: a Python with rknn-toolkit2 (default: $GUIAPP_RKNN_PYTHON, then what scripts/rknn-env made)")
    g.add_argument("--tensorrt-version", metavar="X.Y.Z", help="tensorrt: version named in the calibration cache (default 10.3.0)")


def _file_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("files")
    g.add_argument("--report", type=Path, metavar="REPORT.json", help="write the full report as JSON")
    g.add_argument("--force", action="store_true", help="replace an existing output file")
    cache = g.add_mutually_exclusive_group()
    cache.add_argument("--cache", type=Path, metavar="FILE", help="calibration cache (default: beside the job file or the output)")
    cache.add_argument("--no-cache", action="store_true", help="neither read nor write a calibration cache")
    g.add_argument("--job", type=Path, metavar="JOB.json", help="read settings from a job file (flags override it)")
    g.add_argument("--save-job", type=Path, metavar="JOB.json", help="save the settings as a job file")


def executor_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("workers")
    g.add_argument("--workers", metavar="N|auto", help="worker processes on this machine (default auto: cores / threads per "
                                                     "worker; 1 runs everything in this process)")
    g.add_argument("--threads", type=int, metavar="T", help="ONNX Runtime threads per worker (default: cores / workers)")
    g.add_argument("--ray", metavar="local|auto|ADDRESS", help="run the work as Ray tasks: 'local' on a Ray instance started here, "
                                                             "'auto' on the cluster `ray start --head` made, ADDRESS on another "
                                                             "one (pip install 'guiapp[ray]')")


def _eval_flags(p: argparse.ArgumentParser, prefix: bool = True) -> None:
    g = p.add_argument_group("evaluation")
    if prefix:
        g.add_argument("--eval", type=Path, action="append", metavar="DIR", help="evaluation image folder (repeatable)")
    g.add_argument("--labels", metavar="CSV|subfolders|yolo|DIR|JSON",
                   help="class labels: a CSV (file + class_index or label) or 'subfolders'; box labels: 'yolo' (.txt beside "
                        "the images or in a parallel labels/ folder), a folder of YOLO .txt files, or a COCO .json")
    g.add_argument("--task", choices=TASK_KINDS, help="what the model does (default: auto, decided from its outputs)")
    g.add_argument("--box-format", choices=BOX_FORMATS, help="detectors: how box values read (default: auto)")
    g.add_argument("--score-threshold", type=float, metavar="S", help="detectors: count boxes from this score on (default 0.25)")
    g.add_argument("--nms-iou", type=float, metavar="T", help="detectors: NMS overlap threshold (default 0.45)")
    g.add_argument("--class-offset", type=int, metavar="K", help="model index = class index + K (1 for a background class)")
    g.add_argument("--eval-max-images" if prefix else "--max-images", dest="eval_max_images", type=int, metavar="N")
    g.add_argument("--latency-runs", type=int, metavar="N", help="timed runs per model (default 50)")
