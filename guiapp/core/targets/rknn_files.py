"""What RKNN-Toolkit2's worker is given, written into the run's temporary
folder: the calibration images as PNGs the toolkit reads, the evaluation
images as one uint8 array for its simulator, the model with an NCHW input,
and the job in the toolkit's words."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..context import RunContext
from ..data.dataset import ReadLog, iter_tensors, nothing_readable, seeded_order
from ..data.imagefile import open_rgb
from ..data.preprocess import PreprocessSpec, model_pixels
from ..errors import ModelError
from ..evaluate.compare import evaluation_order
from ..progress import CALIBRATE, ProgressEvent

ANALYSIS_IMAGES = 2  # accuracy_analysis: 2.5-4 s and 170-340 MB of snapshot per image


@dataclass(frozen=True)
class Files:
    """What the worker is given, all inside the run's temporary folder."""

    dataset: Path
    calib_used: tuple[Path, ...]
    calib_skipped: tuple[tuple[Path, str], ...]


@dataclass(frozen=True)
class EvalPixels:
    """The evaluation images as the simulator takes them."""

    path: Path  # [N, H, W, C] uint8 array file
    used: list[Path]
    log: ReadLog
    analysis: list[Path]  # the first few as PNGs, for accuracy_analysis


def write_png(pixels: np.ndarray, spec: PreprocessSpec, path: Path) -> None:
    """Model-view pixels (model channel order) as the RGB (or gray) PNG the toolkit reads."""
    if spec.color == "bgr":
        pixels = pixels[:, :, ::-1]
    Image.fromarray(np.ascontiguousarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)).save(path)


def pixel_loader(path: Path, spec: PreprocessSpec) -> np.ndarray:
    return model_pixels(open_rgb(path), spec)


def write_calibration(ctx: RunContext) -> Files:
    """Calibration images resized and cropped for the model, still 0..255, as
    PNGs listed by relative path (the toolkit splits its list on whitespace
    and resolves relative paths against the list's folder)."""
    job, spec, tmp = ctx.job, ctx.spec, ctx.tmp
    folder = tmp / "calib"
    folder.mkdir()
    log = ReadLog()
    total = min(job.calibration.max_images, len(ctx.calib_files))
    names = []
    ctx.progress(ProgressEvent(CALIBRATE, 0, total, "writing the calibration images for RKNN-Toolkit2"))
    stream = iter_tensors(seeded_order(ctx.calib_files, job.calibration.seed), spec, job.calibration.max_images, log, ctx.cancel,
                          loader=pixel_loader)
    for i, (_, pixels) in enumerate(stream):
        name = f"calib/{i:05d}.png"
        write_png(pixels, spec, tmp / name)
        names.append(name)
        ctx.progress(ProgressEvent(CALIBRATE, i + 1, total, f"{i + 1}/{total} images"))
    if not names:
        raise nothing_readable(log.skipped, "the calibration folder(s)", "Add readable JPEG or PNG images.")
    dataset = tmp / "dataset.txt"
    dataset.write_text("\n".join(names) + "\n", encoding="utf-8")
    return Files(dataset, tuple(log.used), tuple(log.skipped))


def evaluation_pixels(ctx: RunContext, files: list[Path]) -> EvalPixels:
    """The evaluation images (the order evaluate_models uses: seeded, labeled
    first) as one [N, H, W, C] uint8 array file, and the first few as PNGs
    for accuracy_analysis."""
    job, spec = ctx.job, ctx.spec
    order = evaluation_order(files, ctx.labels, job.calibration.seed)
    capacity = min(job.evaluation.max_images, len(order))
    h, w = spec.size
    path = ctx.tmp / "eval_pixels.npy"
    store = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(capacity, h, w, spec.channels))
    log = ReadLog()
    analysis = []
    n_analysis = min(job.evaluation.per_layer_images, ANALYSIS_IMAGES)
    for i, (_, pixels) in enumerate(iter_tensors(order, spec, capacity, log, ctx.cancel, loader=pixel_loader)):
        store[i] = pixels
        if i < n_analysis:
            analysis.append(ctx.tmp / f"analysis_{i}.png")
            write_png(pixels, spec, analysis[-1])
    store.flush()
    del store
    if not log.used:
        raise nothing_readable(log.skipped, "the evaluation images", "Add readable JPEG or PNG images to the evaluation folder.")
    return EvalPixels(path, list(log.used), log, analysis)


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


def worker_job(ctx: RunContext, config: dict, files: Files, pixels: EvalPixels) -> dict:
    ii, spec, tmp = ctx.info.image_input, ctx.spec, ctx.tmp
    h, w = spec.size
    nhwc = spec.layout == "nhwc"
    model = nchw_front(Path(ctx.job.model), ctx.info, tmp) if nhwc else Path(ctx.job.model).resolve()
    dynamic = nhwc or bool(ii.dynamic_axes) or ii.fixed_batch != 1
    return {
        **config,
        "model": str(model),
        # The toolkit takes inputs only together with their sizes (a dynamic shape needs both).
        "inputs": [ii.name] if dynamic else None,
        "input_size_list": [[1, ii.channels, h, w]] if dynamic else None,
        "dataset": str(files.dataset),
        "output": str(tmp / "model.rknn"),
        "work": str(tmp),
        "eval_pixels": str(pixels.path),
        "eval_count": len(pixels.used),
        "analysis_inputs": [str(p) for p in pixels.analysis],
    }
