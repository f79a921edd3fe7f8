"""FP32 vs INT8: size, latency, and how much the INT8 model agrees with FP32
in the terms of its task (and with the labels, when there are labels)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import onnxruntime as ort

from ..data.boxlabels import BoxLabels, labels_from_coco, labels_from_yolo
from ..data.dataset import (
    Labels, ReadLog, batches, iter_tensors, labels_from_csv, labels_from_subfolders, nothing_readable, seeded_order,
)
from ..errors import ModelError
from .errorstats import ErrorStats
from ..model.feeds import Feeds
from ..progress import EVALUATE, CancelToken, ProgressEvent, ProgressFn
from .latency import ROUNDS as LATENCY_ROUNDS, time_models
from .sessions import make_session
from ..tasks import TASKS, EvalContext, TaskGuess, TaskSettings, make_fidelity


Runner = Callable[[dict[str, np.ndarray]], list[np.ndarray]]  # feed -> outputs in the FP32 model's order


def session_runner(session: ort.InferenceSession, names: list[str]) -> Runner:
    return lambda feed: session.run(names, feed)


class OutputStats:
    """One output's error over images: whole tensor, and per channel group
    (a detector's box rows and score rows apart)."""

    def __init__(self, groups: list[tuple[str, int, slice]]) -> None:
        self.total = ErrorStats()
        self.groups = {label: (axis, sl, ErrorStats()) for label, axis, sl in groups}

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        self.total.add(a, b)
        for axis, sl, st in self.groups.values():
            index = (slice(None),) * axis + (sl,)
            st.add(a[index], b[index])

    def result(self, name: str) -> dict:
        out = self.total.result(name)
        worst = min(((st.sqnr_db, label, st) for label, (_, _, st) in self.groups.items() if st.sqnr_db is not None),
                    key=lambda t: t[0], default=None)
        out["worst_group"] = None if worst is None else {"group": worst[1], "sqnr_db": worst[0], "cosine": worst[2].cosine}
        return out


def compare_outputs(
    run_fp32: Runner,
    run_int8: Runner,
    names: list[str],
    declared: dict[str, tuple],
    feeds: Feeds,
    batches: Iterator[tuple[list[Path], np.ndarray]],
    total_images: int,
    task: TaskGuess,
    ctx: EvalContext,
    progress: ProgressFn,
    cancel: CancelToken,
    progress_total: int | None = None,
) -> dict:
    """Run both models on the same images: the task's fidelity numbers, and
    per output SQNR and cosine (whole and per channel group). ``declared``
    holds the FP32 model's declared output shapes (ONNX Runtime reports its own
    inferred ones). Progress counts images out of ``progress_total`` (default:
    the images). ``samples`` in the result holds the task's picture data."""
    ptotal = progress_total or total_images
    groups = TASKS[task.kind].groups
    shape_warnings: list[str] = []
    stats: dict[str, OutputStats] = {}
    fidelity = make_fidelity(task, ctx)
    seen = 0
    progress(ProgressEvent(EVALUATE, 0, ptotal, "comparing FP32 and INT8 outputs"))
    for paths, batch in batches:
        cancel.check()
        feed = feeds(batch)
        try:
            r32 = run_fp32(feed)
            r8 = run_int8(feed)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"evaluation failed on {paths[0].name}: {str(exc).splitlines()[0][:200]}") from None
        for n, a, b in zip(names, r32, r8):
            a, b = np.asarray(a), np.asarray(b)
            if a.dtype.kind == "f":
                if n not in stats:
                    stats[n] = OutputStats(groups(task, n, a.shape))
                stats[n].add(a, b)
            if seen == 0:  # the first batch tells
                shape_warnings.extend(_declared_shape_warning(n, declared[n], a.shape))
        fidelity.add(paths, dict(zip(names, r32)), dict(zip(names, r8)))
        seen += len(paths)
        progress(ProgressEvent(EVALUATE, seen, ptotal, f"{seen}/{total_images} images"))
    fid = fidelity.result()
    cls = fid.get("classification")
    return {
        "images": seen,
        "task": task.to_dict(),
        "fidelity": fid,
        # Top-1 agreement and top-k mean something for classifiers only.
        "agreement": {"top1": cls["agreement_top1"]} if cls else None,
        "accuracy": cls["accuracy"] if cls else None,
        "outputs": [stats[n].result(n) for n in names if n in stats],
        "shape_warnings": sorted(set(shape_warnings)),
        "samples": fidelity.samples,
    }


def _declared_shape_warning(name: str, declared, actual: tuple) -> list[str]:
    """A model whose outputs are declared with the wrong shape runs in ONNX
    Runtime (it only logs), but other runtimes and tools may trip on it."""
    if declared is None:  # not declared: nothing to contradict
        return []
    fixed_mismatch = len(declared) != len(actual) or any(
        isinstance(d, int) and d != a for d, a in zip(declared, actual)
    )
    if not fixed_mismatch:
        return []
    text = "[" + ", ".join(str(d) for d in declared) + "]"
    return [
        f"output {name} is declared {text} but the model computes {list(actual)} (for a batch of {actual[0] if actual else '?'}); "
        "ONNX Runtime tolerates it, "
        "other runtimes may not. The INT8 model keeps the declaration as it was: fix it in the exporter."
    ]


def evaluation_order(files: list[Path], labels, seed: int) -> list[Path]:
    """The evaluation's image order: seeded (not the calibration order), and
    with labels the labeled images first, so max_images counts images that
    can score."""
    order = seeded_order(files, seed + 1)
    if labels is None:
        return order
    has = {p: labels.get(p) is not None for p in order}
    return [p for p in order if has[p]] + [p for p in order if not has[p]]


class FirstTensor:
    """Passes a (path, tensor) stream through and keeps its first tensor (the
    latency sample)."""

    tensor: np.ndarray | None = None

    def watch(self, stream):
        for p, tensor in stream:
            if self.tensor is None:
                self.tensor = tensor
            yield p, tensor


def resolve_labels(settings, files: list[Path]) -> Labels | BoxLabels | None:
    """The labels an evaluation uses, per its settings (never guessed):
    class labels (csv, subfolders) or box labels (yolo, coco)."""
    roots = list(settings.folders)
    if settings.labels_from == "yolo":
        return labels_from_yolo(files, settings.labels_csv)
    if settings.labels_from == "coco":
        return labels_from_coco(settings.labels_csv, files)
    if settings.labels_from == "csv":
        if not roots and files:
            roots = sorted({p.parent for p in files})
        return labels_from_csv(settings.labels_csv, roots)
    if settings.labels_from == "subfolders":
        return labels_from_subfolders(files, roots or sorted({p.parent.parent for p in files}))
    return None


def evaluate_models(
    fp32: Path,
    int8: Path,
    declared: dict[str, tuple],
    feeds: Feeds,
    spec,
    files: list[Path],
    labels: Labels | None,
    settings,
    fixed_batch: int | None,
    progress: ProgressFn,
    cancel: CancelToken,
    threads: int | None = None,
    seed: int = 0,
    task: TaskGuess | None = None,
    task_settings: TaskSettings | None = None,
) -> dict:
    """Compare ``fp32`` and ``int8`` on up to ``settings.max_images`` of ``files``
    in the terms of ``task`` (default: generic), then time both. ``declared``:
    the FP32 model's declared output shapes. Returns report sections (task,
    fidelity, eval, accuracy, agreement, outputs, latency_ms, warnings) and
    ``samples`` (picture data, not for the JSON report)."""

    task = task or TaskGuess("generic", "no task given")
    ctx = EvalContext(task_settings or TaskSettings(), labels, settings.class_offset, spec)
    log = ReadLog()
    order = evaluation_order(files, labels, seed)
    total = min(settings.max_images, len(order))
    first = FirstTensor()
    stream = first.watch(iter_tensors(order, spec, settings.max_images, log, cancel))

    # Progress: one unit per image, then one per block of latency runs.
    lat_units = LATENCY_ROUNDS * 2
    sessions = {"fp32": make_session(fp32, threads), "int8": make_session(int8, threads)}
    names = [o.name for o in sessions["fp32"].get_outputs()]
    result = compare_outputs(
        session_runner(sessions["fp32"], names), session_runner(sessions["int8"], names), names, declared, feeds,
        batches(stream, fixed_batch or 16), total, task, ctx, progress, cancel, progress_total=total + lat_units,
    )
    del sessions  # latency is timed with each model alone (latency.py)
    if first.tensor is None:
        raise nothing_readable(log.skipped, "the evaluation images", "Add readable JPEG or PNG images to the evaluation folder.")
    warnings = list(result.pop("shape_warnings"))
    if labels is not None and result["accuracy"] is None and not (result["fidelity"]["headline"].get("map50")):
        warnings.append("none of the evaluation images has a label that fits this model's task; accuracy not measured.")
    seen = result["images"]

    def on_step(done: int, planned: int) -> None:
        progress(ProgressEvent(EVALUATE, seen + done, seen + planned, "measuring latency (each model alone, in rounds)"))

    on_step(0, lat_units)
    sample = np.stack([first.tensor] * (fixed_batch or 1))
    latency, context, busy = time_models(
        {"fp32": fp32, "int8": int8}, feeds(sample), settings.latency_runs, threads, cancel, on_step, sample.shape[0]
    )
    warnings.extend(busy)
    if latency["int8"]["median"] > 1.05 * latency["fp32"]["median"]:
        warnings.append(
            f"the INT8 model ran slower than FP32 here ({latency['int8']['median']:.2f} vs {latency['fp32']['median']:.2f} ms). "
            "In very small models quantize/dequantize overhead outweighs the INT8 arithmetic; int8 activations on x86 "
            "and per-tensor QOperator graphs are other usual causes."
        )
    result["eval"] = {
        "images_used": len(log.used),
        "images_skipped": len(log.skipped),
        "skipped_files": [{"file": str(p), "reason": r} for p, r in log.skipped],
        "labels": None if labels is None else labels.source,
    }
    result["latency_ms"] = latency
    result["latency"] = context
    result["warnings"] = warnings
    return result

