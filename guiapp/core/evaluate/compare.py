"""FP32 vs INT8: size, latency, and how much the INT8 model agrees with FP32
in the terms of its task (and with the labels, when there are labels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..data.boxlabels import BoxLabels, labels_from_coco, labels_from_yolo
from ..data.dataset import Labels, ReadLog, batches, iter_tensors, labels_from_csv, labels_from_subfolders, nothing_readable
from ..notes import Note
from ..progress import EVALUATE, CancelToken, ProgressEvent, ProgressFn
from .comparison import EvalPlan, Runners, accumulate, noise_places
from .latency import ROUNDS as LATENCY_ROUNDS, time_models
from .shards import FirstTensor, compare_files, evaluation_order

def compare_outputs(runners: Runners, plan: EvalPlan, batches: Iterator[tuple[list[Path], np.ndarray]], total_images: int,
                    progress: ProgressFn, cancel: CancelToken, progress_total: int | None = None,
                    noisy: dict[Path, int] | None = None) -> dict:
    """Run both models on the same images: the task's fidelity numbers, and
    per output SQNR and cosine (whole and per channel group). Progress counts
    images out of ``progress_total`` (default: the images). ``samples`` in
    the result holds the task's picture data; ``shape_warnings`` Notes;
    ``noisy``: the images the noise floor is measured on (none by default)."""
    comparison = accumulate(runners, plan, batches, total_images, progress, cancel, progress_total, noisy)
    return comparison.result()


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


def no_label_fits(plan: EvalPlan, result: dict) -> list[Note]:
    """A warning when labels were given but none fits the task."""
    if plan.labels is None or result["accuracy"] is not None or result["fidelity"]["headline"].get("map50"):
        return []
    return [Note("evaluate.labels_unused", "none of the evaluation images has a label that fits this model's task; "
                                           "accuracy not measured.")]


def evaluate_models(fp32: Path, int8: Path, plan: EvalPlan, progress: ProgressFn, cancel: CancelToken,
                    executor: Any = None, shard_images: int | None = None) -> dict:
    """Compare ``fp32`` and ``int8`` on up to ``plan.max_images`` of its files
    in the terms of its task (split across ``executor``'s workers when it has
    several and the images are many), then time both, each alone. Returns
    report sections (task, fidelity, eval, accuracy, agreement, outputs,
    latency_ms, latency, warnings as Notes) and ``samples`` (picture data,
    not for the JSON report)."""
    total = min(plan.max_images, len(plan.files))
    lat_units = LATENCY_ROUNDS * 2 if plan.latency_runs else 0  # progress: one unit per image, one per block of latency runs
    compared = compare_files(fp32, int8, plan, progress, cancel, executor, total + lat_units, shard_images)
    log = compared.log
    if compared.first is None:
        raise nothing_readable(log.skipped, "the evaluation images", "Add readable JPEG or PNG images to the evaluation folder.")
    result = compared.comparison.result()
    warnings = list(result.pop("shape_warnings")) + no_label_fits(plan, result)
    latency, context = None, None
    if plan.latency_runs:
        latency, context, timed = time_pair(fp32, int8, plan, compared.first, result["images"], progress, cancel)
        warnings.extend(timed)
    result["eval"] = {
        "images_used": len(log.used),
        "images_skipped": len(log.skipped),
        "skipped_files": [{"file": str(p), "reason": r} for p, r in log.skipped],
        "labels": None if plan.labels is None else plan.labels.source,
    }
    result["latency_ms"] = latency
    result["latency"] = context
    result["warnings"] = warnings
    return result


def time_pair(fp32: Path, int8: Path, plan: EvalPlan, first: np.ndarray, done: int, progress: ProgressFn,
              cancel: CancelToken) -> tuple[dict, dict, list[Note]]:
    """Both models timed, each alone, on ``first`` (an evaluation image):
    (latency by key, the report's latency context, warnings). ``done``:
    progress units already reported."""
    def on_step(step: int, planned: int) -> None:
        progress(ProgressEvent(EVALUATE, done + step, done + planned, "measuring latency (each model alone, in rounds)"))

    on_step(0, LATENCY_ROUNDS * 2)
    sample = np.stack([first] * (plan.fixed_batch or 1))
    latency, context, busy = time_models(
        {"fp32": fp32, "int8": int8}, plan.feeds(sample), plan.latency_runs, plan.threads, cancel, on_step, sample.shape[0]
    )
    return latency, context, busy + slower_warning(latency)


def slower_warning(latency: dict) -> list[Note]:
    if latency["int8"]["median"] <= 1.05 * latency["fp32"]["median"]:
        return []
    return [Note(
        "latency.int8_slower",
        f"the INT8 model ran slower than FP32 here ({latency['int8']['median']:.2f} vs {latency['fp32']['median']:.2f} ms). "
        "In very small models quantize/dequantize overhead outweighs the INT8 arithmetic; int8 activations on x86 "
        "and per-tensor QOperator graphs are other usual causes.",
    )]


def compare_on_files(runners: Runners, plan: EvalPlan, progress: ProgressFn, cancel: CancelToken) -> tuple[dict, np.ndarray]:
    """FP32 against another runtime's INT8 (``runners``) through the same
    fidelity code, on up to ``plan.max_images`` of its files in evaluate_models'
    order. Returns the comparison (warnings as Notes, no pictures) and the
    first input tensor (a latency sample)."""
    order = evaluation_order(plan.files, plan.labels, plan.seed)
    total = min(plan.max_images, len(order))
    log = ReadLog()
    first = FirstTensor()
    stream = first.watch(iter_tensors(order, plan.spec, total, log, cancel))
    ev = compare_outputs(runners, plan, batches(stream, plan.fixed_batch or 16), total, progress, cancel,
                         noisy=noise_places(order, plan))
    if first.tensor is None:
        raise nothing_readable(log.skipped, "the evaluation images", "Add readable JPEG or PNG images.")
    ev["warnings"] = list(ev.pop("shape_warnings")) + no_label_fits(plan, ev)
    ev.pop("samples", None)
    return ev, first.tensor
