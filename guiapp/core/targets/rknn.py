"""Rockchip RKNN: RKNN-Toolkit2 builds the ``.rknn`` in a worker process with
its own Python (rknn_worker.py), calibrating on our preprocessed images with
its own algorithm; its PC simulator runs the evaluation images right after
the build, and the app compares them with FP32 (ONNX Runtime) through the same
fidelity code as every other target.

The toolkit never enters the app's process or environment: it pins torch,
onnx and numpy versions, and importing it changes the process (Qt variables,
LD_LIBRARY_PATH, sys.path, the main thread's name).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import atomic_path, atomic_write_text, check_output_path
from ..data.dataset import ReadLog, iter_tensors, list_images, nothing_readable, seeded_order
from ..errors import JobError, ModelError, OutputError
from ..evaluate.compare import compare_outputs, evaluation_order, resolve_labels
from ..model.feeds import make_feeds
from ..data.imagefile import open_rgb
from ..job import Job
from ..model.modelinfo import inspect_model
from ..pipeline import QuantResult, _evaluation_files, check_model, hold_back_for_evaluation, resolve_spec
from ..data.preprocess import PreprocessSpec, model_pixels, normalize
from ..progress import CALIBRATE, EVALUATE, PREPARE, QUANTIZE, CancelToken, ProgressEvent, ProgressFn, no_progress
from ..report.summary import broken_warning, environment, now_iso, write_report
from ..evaluate.sessions import default_threads, make_session
from ..tasks import EvalContext, detect_task
from .base import Target, TargetUnavailable
from .rknn_board import board_snippet
from .rknn_toolkit import WORKER, availability, find_python, found
from .worker import WorkerError, run_worker

# Our strategies -> the toolkit's quantized_algorithm; the others have no counterpart.
ALGORITHMS = {"minmax": "normal", "entropy": "kl_divergence", "mse": "mmse"}
ANALYSIS_IMAGES = 2  # accuracy_analysis: 2.5-4 s and 170-340 MB of snapshot per image


@dataclass(frozen=True)
class Files:
    """What the worker is given, all inside the run's temporary folder."""

    dataset: Path
    calib_used: tuple[Path, ...]
    calib_skipped: tuple[tuple[Path, str], ...]


def refuses(job: Job) -> str:
    method = job.calibration.method
    if job.tuning.max_drop is not None:
        return ("the accuracy-target search tries ONNX Runtime INT8 models; RKNN-Toolkit2 quantizes on its own. "
                "Search with the onnxruntime target, or quantize for RKNN without a target (no --max-drop).")
    if job.quantization.equalize or job.quantization.bias_correction:
        return "equalization and bias correction are not passed to RKNN-Toolkit2: turn them off for the rknn target."
    if job.quantization.ort_optimized or job.quantization.batch_one:
        return ("the ONNX Runtime output form (optimized graph, batch of 1) does not apply to an .rknn file "
                "(RKNN-Toolkit2 fixes the input shape itself): turn those options off for the rknn target.")
    if method not in ALGORITHMS:
        return f"RKNN-Toolkit2 has no counterpart of the {method} strategy: choose minmax (its normal), entropy (kl_divergence) or mse (mmse)."
    return ""


def toolkit_config(job: Job, spec: PreprocessSpec) -> dict:
    """Our settings in the toolkit's words."""
    problem = refuses(job)
    if problem:
        field = "calibration.method" if "strategy" in problem else "tuning.max_drop" if job.tuning.max_drop is not None else "quantization"
        raise JobError(field, problem)
    method = job.calibration.method
    return {
        # Mean and std in the model's channel order, pixel units: RKNN's own convention.
        "mean_values": [list(spec.mean)],
        "std_values": [list(spec.std)],
        # Calibration PNGs are RGB; the toolkit swaps them for a BGR model.
        "quant_img_RGB2BGR": spec.color == "bgr",
        "target_platform": job.target.platform,
        "quantized_algorithm": ALGORITHMS[method],
        "quantized_method": "channel" if job.quantization.per_channel else "layer",
    }


def write_png(pixels: np.ndarray, spec: PreprocessSpec, path: Path) -> None:
    """Model-view pixels (model channel order) as the RGB (or gray) PNG the toolkit reads."""
    if spec.color == "bgr":
        pixels = pixels[:, :, ::-1]
    Image.fromarray(np.ascontiguousarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)).save(path)


def pixel_loader(path: Path, spec: PreprocessSpec) -> np.ndarray:
    return model_pixels(open_rgb(path), spec)


def write_calibration(job: Job, spec: PreprocessSpec, files: list[Path], tmp: Path, progress: ProgressFn,
                      cancel: CancelToken) -> Files:
    """Calibration images resized and cropped for the model, still 0..255, as
    PNGs listed by relative path (the toolkit splits its list on whitespace
    and resolves relative paths against the list's folder)."""
    folder = tmp / "calib"
    folder.mkdir()
    log = ReadLog()
    total = min(job.calibration.max_images, len(files))
    names = []
    progress(ProgressEvent(CALIBRATE, 0, total, "writing the calibration images for RKNN-Toolkit2"))
    stream = iter_tensors(seeded_order(files, job.calibration.seed), spec, job.calibration.max_images, log, cancel, loader=pixel_loader)
    for i, (_, pixels) in enumerate(stream):
        name = f"calib/{i:05d}.png"
        write_png(pixels, spec, tmp / name)
        names.append(name)
        progress(ProgressEvent(CALIBRATE, i + 1, total, f"{i + 1}/{total} images"))
    if not names:
        raise nothing_readable(log.skipped, "the calibration folder(s)", "Add readable JPEG or PNG images.")
    dataset = tmp / "dataset.txt"
    dataset.write_text("\n".join(names) + "\n", encoding="utf-8")
    return Files(dataset, tuple(log.used), tuple(log.skipped))


def evaluation_pixels(job: Job, spec: PreprocessSpec, files: list[Path], labels, tmp: Path, cancel: CancelToken):
    """The evaluation images (the order evaluate_models uses: seeded, labeled
    first) as one [N, H, W, C] uint8 array file, and the first few as PNGs
    for accuracy_analysis. Returns (array path, paths used, ReadLog, PNGs)."""
    order = evaluation_order(files, labels, job.calibration.seed)
    capacity = min(job.evaluation.max_images, len(order))
    h, w = spec.size
    path = tmp / "eval_pixels.npy"
    store = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(capacity, h, w, spec.channels))
    log = ReadLog()
    analysis = []
    n_analysis = min(job.evaluation.per_layer_images, ANALYSIS_IMAGES)
    for i, (_, pixels) in enumerate(iter_tensors(order, spec, capacity, log, cancel, loader=pixel_loader)):
        store[i] = pixels
        if i < n_analysis:
            analysis.append(tmp / f"analysis_{i}.png")
            write_png(pixels, spec, analysis[-1])
    store.flush()
    del store
    if not log.used:
        raise nothing_readable(log.skipped, "the evaluation images", "Add readable JPEG or PNG images to the evaluation folder.")
    return path, list(log.used), log, analysis


def nchw_front(model_path: Path, info, tmp: Path) -> Path:
    """RKNN-Toolkit2 reads an ONNX model's image input as NCHW: a model that
    takes NHWC gets an NCHW input and a Transpose in front (in the temporary
    folder; the input model is untouched). Feeding is unchanged: the
    simulator and the board take NHWC pixels either way."""
    import onnx
    from onnx import helper

    model = onnx.load(str(model_path))
    name = info.image_input.name
    graph_in = next(i for i in model.graph.input if i.name == name)
    dims = list(graph_in.type.tensor_type.shape.dim)
    inner = name + "_nhwc"
    for node in model.graph.node:
        node.input[:] = [inner if i == name else i for i in node.input]
    for out in model.graph.output:
        if out.name == name:
            raise ModelError("the model passes its image input straight to an output; RKNN-Toolkit2 cannot take it.")
    new_dims = [dims[0], dims[3], dims[1], dims[2]]
    shape = [d.dim_param or (d.dim_value if d.HasField("dim_value") else None) for d in new_dims]
    new_in = helper.make_tensor_value_info(name, graph_in.type.tensor_type.elem_type, shape)
    model.graph.input.remove(graph_in)
    model.graph.input.insert(0, new_in)
    model.graph.node.insert(0, helper.make_node("Transpose", [name], [inner], perm=[0, 2, 3, 1], name="guiapp_nchw_to_nhwc"))
    out = tmp / "model_nchw.onnx"
    onnx.save(model, str(out))
    return out


def worker_job(job: Job, info, spec: PreprocessSpec, files: Files, pixels: Path, count: int, analysis, tmp: Path) -> dict:
    ii = info.image_input
    h, w = spec.size
    nhwc = spec.layout == "nhwc"
    model = nchw_front(Path(job.model), info, tmp) if nhwc else Path(job.model).resolve()
    shape = [1, ii.channels, h, w]
    dynamic = nhwc or bool(ii.dynamic_axes) or ii.fixed_batch != 1
    return {
        **toolkit_config(job, spec),
        "model": str(model),
        # The toolkit takes inputs only together with their sizes (a dynamic shape needs both).
        "inputs": [ii.name] if dynamic else None,
        "input_size_list": [shape] if dynamic else None,
        "dataset": str(files.dataset),
        "output": str(tmp / "model.rknn"),
        "work": str(tmp),
        "eval_pixels": str(pixels),
        "eval_count": count,
        "analysis_inputs": [str(p) for p in analysis],
    }


def _progress_relay(progress: ProgressFn, log: list[str]):
    phases = {"load": (QUANTIZE, "loading the model"), "build": (QUANTIZE, "RKNN build"),
              "analyse": (QUANTIZE, "per-layer accuracy analysis"), "simulate": (EVALUATE, "INT8 on the PC simulator")}

    def relay(message: dict) -> None:
        if "log" in message:
            log.append(str(message["log"]))
            p = phases["build"]
            progress(ProgressEvent(p[0], 0, 0, p[1], log=str(message["log"])))
            return
        p = message.get("progress") or {}
        stage, text = phases.get(p.get("phase"), phases["build"])
        detail = f": {p['message']}" if p.get("message") else ""
        progress(ProgressEvent(stage, int(p.get("done", 0)), int(p.get("total", 0)), f"{text}{detail}"))

    return relay


def _per_layer_rows(rows: list[dict]) -> list[dict]:
    """accuracy_analysis's rows in the report's per-layer shape, worst first."""
    out = [{"name": r["name"], "kind": "activation", "node": r["name"], "op_type": r["op_type"], "sqnr_db": r.get("sqnr_db"),
            "cosine": r.get("cosine"), "cosine_single": r.get("cosine_single")}
           for r in rows if r.get("cosine") is not None or r.get("sqnr_db") is not None]
    out.sort(key=lambda r: (r["sqnr_db"] is None, r["sqnr_db"] if r["sqnr_db"] is not None else 0.0))
    return out


def run(job: Job, progress: ProgressFn = no_progress, cancel: CancelToken | None = None, overwrite: bool = False) -> QuantResult:
    """Build ``job``'s model for an RKNN NPU, check it on the PC simulator,
    write the .rknn and the board snippet. Nothing is written on failure."""
    cancel = cancel or CancelToken()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    progress(ProgressEvent(PREPARE, 0, 3, "checking the model, the settings and RKNN-Toolkit2"))
    if job.output is None:
        raise JobError("output", "no output path given", "Choose where to write the .rknn model.")
    check_output_path(job.model, job.output, overwrite, suffix=".rknn")
    problem = availability(job.target)
    if problem:
        raise TargetUnavailable(problem)
    python = find_python(job.target)
    info = inspect_model(job.model, layout=job.preprocess.layout)
    check_model(info)
    task = detect_task(info, job.task.kind)
    feeds = make_feeds(info, job.inputs)
    if feeds.constants:
        raise ModelError("the RKNN target takes models whose only input is the image.", "Use the ONNX Runtime target for this model.")
    spec = resolve_spec(job.preprocess, info)
    warnings = []
    if job.quantization.exclude_nodes:
        warnings.append("nodes to keep in float are not passed to RKNN-Toolkit2 (its hybrid quantization is not driven by this app); they were quantized.")
    calib_files, held_back = hold_back_for_evaluation(job, list_images(job.calibration.folders, "calibration"))
    if held_back:
        warnings.append(f"the evaluation images are calibration images: {held_back} of them were held back from calibration.")
    config = toolkit_config(job, spec)  # a JobError for a method without counterpart, before any work
    timings["prepare"] = time.perf_counter() - t

    with tempfile.TemporaryDirectory(prefix="guiapp-rknn-") as tmpdir:
        tmp = Path(tmpdir)
        t = time.perf_counter()
        files = write_calibration(job, spec, calib_files, tmp, progress, cancel)
        eval_files, eval_source, excluded = _evaluation_files(job, calib_files, _Used(files.calib_used, files.calib_skipped))
        labels = resolve_labels(job.evaluation, eval_files)
        pixels, used, eval_log, analysis = evaluation_pixels(job, spec, eval_files, labels, tmp, cancel)
        timings["calibrate"] = time.perf_counter() - t

        t = time.perf_counter()
        log: list[str] = []
        try:
            result = run_worker([str(python), str(WORKER)], worker_job(job, info, spec, files, pixels, len(used), analysis, tmp),
                                tmp, _progress_relay(progress, log), cancel, "RKNN-Toolkit2's worker")
        except WorkerError as exc:
            crashed = "without a result" in str(exc)  # no error of its own: its log says more
            said = " ".join(line.strip().splitlines()[-1] for line in log if line.startswith("E "))[-400:] if crashed else ""
            raise ModelError(
                f"RKNN-Toolkit2 could not build the model: {exc}" + (f" (it said: {said})" if said else ""),
                "A model the toolkit cannot convert usually needs a re-export (static shapes, operators it supports).",
            ) from None
        timings["quantize"] = time.perf_counter() - t  # the build, the analysis and the simulator runs

        t = time.perf_counter()
        ev = _compare(job, info, feeds, spec, task, labels, pixels, used, result, progress, cancel)
        timings["evaluate"] = time.perf_counter() - t
        built = tmp / "model.rknn"
        snippet = board_snippet(job, spec, info, task, Path(job.output).name)
        board = board_path(Path(job.output))
        report = {
            "created": now_iso(),
            "model": info.to_dict(),
            "output": str(job.output),
            "fp32": {"path": str(job.model), "size_bytes": info.size_bytes, "latency_ms": None},
            "int8": {"path": str(job.output), "size_bytes": built.stat().st_size, "latency_ms": None},
            **{k: ev[k] for k in ("task", "fidelity", "accuracy", "agreement", "outputs")},
            "per_layer": _per_layer_rows(result.get("per_layer") or []),
            "kept_float": [],
            "protected_outputs": [],
            "eval": {
                "images_used": len(used), "images_skipped": len(eval_log.skipped),
                "skipped_files": [{"file": str(p), "reason": r} for p, r in eval_log.skipped],
                "labels": None if labels is None else labels.source, "source": eval_source,
                "excluded_calibration_overlap": excluded,
            },
            "calibration": {
                "method": job.calibration.method, "images_used": len(files.calib_used),
                "images_skipped": len(files.calib_skipped),
                "skipped_files": [{"file": str(p), "reason": r} for p, r in files.calib_skipped],
                "seconds": result.get("build_seconds", 0.0), "tensors": None, "batch_size": 1, "cache_used": False, "cache": None,
            },
            "preparation": [],
            "preprocess": spec.to_dict(),
            "warnings": warnings + ev["warnings"] + broken_warning(ev["fidelity"]["headline"]) + [
                "latency is not measurable without a board: the PC simulator is a functional model of the NPU, "
                "not a timing one. Run the board snippet with rknn_lite's perf tools on the device."
            ],
            "timings_s": timings,
            "environment": environment(default_threads()),
            "target": {
                "kind": "rknn", "title": TARGET.title, "python": str(python),
                "rknn_toolkit2": result.get("rknn_toolkit2"), **config,
                "checked_in": "RKNN-Toolkit2's PC simulator (INT8 outputs), against FP32 in ONNX Runtime",
                "simulator_ms_per_image": result.get("ms_per_image"),
                "per_layer_images": len(analysis),
                "board_snippet": str(board),
                "log": log[-200:],
            },
            "job": job.to_dict(),
        }
        cancel.check()
        _place(built, Path(job.output), snippet, board)
    if job.report is not None:
        write_report(report, job.report)
    return QuantResult(Path(job.output), report, ev["samples"])


@dataclass(frozen=True)
class _Used:
    """What _evaluation_files reads of a calibration: which images it used or skipped."""

    used: tuple[Path, ...]
    skipped: tuple[tuple[Path, str], ...]


def _compare(job, info, feeds, spec, task, labels, pixels_path, used, result, progress, cancel) -> dict:
    """FP32 in ONNX Runtime vs the simulator's outputs, image by image."""
    pixels = np.load(pixels_path, mmap_mode="r")
    outputs = [np.load(p, mmap_mode="r") for p in result.get("outputs") or []]
    session = make_session(job.model)
    names = [o.name for o in session.get_outputs()]
    if len(outputs) != len(names):
        raise ModelError(f"the simulator gave {len(outputs)} output(s) where the model has {len(names)}.")
    n = len(used)
    batch = info.image_input.fixed_batch or 16
    cursor = [0]
    shapes: list[tuple] = []

    def run_fp32(feed):
        out = session.run(names, feed)
        shapes[:] = [o.shape for o in out]
        return out

    def batches():
        for s in range(0, n, batch):
            chunk = np.stack([normalize(np.asarray(pixels[i]), spec) for i in range(s, min(n, s + batch))])
            yield used[s : s + len(chunk)], chunk

    def run_int8(feed):
        k = len(feed[feeds.image])
        s, cursor[0] = cursor[0], cursor[0] + k
        # Stored per image as the simulator gave them ([N, 1, ...]); its layout of an
        # output may differ from ONNX Runtime's by unit axes: shaped as FP32's when the sizes agree.
        got = [np.asarray(o[s : s + k]) for o in outputs]
        return [g.reshape(want) if g.size == int(np.prod(want)) else g for g, want in zip(got, shapes)]

    ctx = EvalContext(job.task, labels, job.evaluation.class_offset, spec)
    ev = compare_outputs(run_fp32, run_int8, names, {t.name: t.shape for t in info.outputs},
                         feeds, batches(), n, task, ctx, progress, cancel)
    warnings = list(ev.pop("shape_warnings"))
    if labels is not None and ev["accuracy"] is None and not ev["fidelity"]["headline"].get("map50"):
        warnings.append("none of the evaluation images has a label that fits this model's task; accuracy not measured.")
    ev["warnings"] = warnings
    return ev


def board_path(output: Path) -> Path:
    return output.with_name(output.name.removesuffix(".rknn") + "_board.py")


def _place(built: Path, output: Path, snippet: str, board: Path) -> None:
    try:
        with atomic_path(output) as part:
            shutil.copyfile(built, part)
    except OSError as exc:
        raise OutputError(f"cannot write {output}: {exc.strerror or exc}.", "Check free space and permissions.") from None
    atomic_write_text(board, snippet)


TARGET = Target(
    kind="rknn",
    title="Rockchip RKNN (NPU)",
    suffix=".rknn",
    summary="A .rknn model for Rockchip NPUs, built by RKNN-Toolkit2 in its own Python and checked on its PC simulator.",
    availability=availability,
    run=run,
    settings=frozenset({"per_channel"}),
    companions=lambda output: [board_path(output)],
    found=found,
    refuses=refuses,
)
