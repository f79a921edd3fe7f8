"""FP32 vs INT8: size, latency, and how much the INT8 model agrees with FP32
(and with the labels, when there are labels)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import onnxruntime as ort

from .dataset import (
    Labels, ReadLog, batches, iter_tensors, labels_from_csv, labels_from_subfolders, nothing_readable, seeded_order,
)
from .errors import ModelError
from .feeds import Feeds
from .progress import EVALUATE, CancelToken, ProgressEvent, ProgressFn
from .latency import ROUNDS as LATENCY_ROUNDS, time_models
from .sessions import make_session


@dataclass
class ErrorStats:
    """Accumulates FP32-vs-INT8 error of one tensor over images: SQNR over
    all values, cosine per image (first axis)."""

    signal: float = 0.0
    noise: float = 0.0
    cosines: list[float] = field(default_factory=list)

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        r = ref.reshape(ref.shape[0], -1).astype(np.float64)
        g = got.reshape(got.shape[0], -1).astype(np.float64)
        self.signal += float(np.sum(r * r))
        self.noise += float(np.sum((r - g) ** 2))
        num = np.sum(r * g, axis=1)
        den = np.linalg.norm(r, axis=1) * np.linalg.norm(g, axis=1)
        self.cosines.extend(np.where(den > 0, num / np.maximum(den, 1e-300), 1.0).tolist())

    def result(self, name: str) -> dict:
        return {"name": name, "cosine": float(np.mean(self.cosines)) if self.cosines else None, "sqnr_db": sqnr_db(self.signal, self.noise)}


def sqnr_db(signal: float, noise: float) -> float | None:
    """Signal-to-quantization-noise ratio in dB (None when undefined; capped at 200 dB for exact matches)."""
    if signal <= 0:
        return None
    if noise <= 0:
        return 200.0
    return float(10.0 * np.log10(signal / noise))


def topk_hits(scores: np.ndarray, labels: np.ndarray, k: int, offset: int) -> int:
    """How many rows have ``label + offset`` among their top ``k`` scores."""
    flat = scores.reshape(scores.shape[0], -1)
    k = min(k, flat.shape[1])
    top = np.argpartition(-flat, k - 1, axis=1)[:, :k]
    return int(np.sum(np.any(top == (labels[:, None] + offset), axis=1)))


def compare_outputs(
    s32: ort.InferenceSession,
    s8: ort.InferenceSession,
    declared: dict[str, tuple],
    feeds: Feeds,
    batches: Iterator[tuple[list[Path], np.ndarray]],
    total_images: int,
    labels: Labels | None,
    class_offset: int,
    progress: ProgressFn,
    cancel: CancelToken,
    progress_total: int | None = None,
) -> dict:
    """Run both models on the same images: agreement, cosine, SQNR, top-k.
    ``declared`` holds the FP32 model's declared output shapes (ONNX Runtime
    reports its own inferred ones). Progress counts images out of
    ``progress_total`` (default: the images)."""
    ptotal = progress_total or total_images
    names = [o.name for o in s32.get_outputs()]
    shape_warnings: list[str] = []
    stats = {n: ErrorStats() for n in names}
    agree = seen = labeled = 0
    hits = {"fp32": {1: 0, 5: 0}, "int8": {1: 0, 5: 0}}
    progress(ProgressEvent(EVALUATE, 0, ptotal, "comparing FP32 and INT8 outputs"))
    for paths, batch in batches:
        cancel.check()
        feed = feeds(batch)
        try:
            r32 = s32.run(names, feed)
            r8 = s8.run(names, feed)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"evaluation failed on {paths[0].name}: {str(exc).splitlines()[0][:200]}") from None
        for n, a, b in zip(names, r32, r8):
            if np.asarray(a).dtype.kind == "f":
                stats[n].add(np.asarray(a), np.asarray(b))
            if seen == 0:  # the first batch tells
                shape_warnings.extend(_declared_shape_warning(n, declared[n], np.shape(a)))
        first32 = np.asarray(r32[0]).reshape(len(paths), -1)
        first8 = np.asarray(r8[0]).reshape(len(paths), -1)
        agree += int(np.sum(first32.argmax(1) == first8.argmax(1)))
        seen += len(paths)
        if labels is not None:
            ys = [labels.get(p) for p in paths]
            idx = [i for i, y in enumerate(ys) if y is not None]
            if idx:
                y = np.array([ys[i] for i in idx])
                for key, out in (("fp32", first32), ("int8", first8)):
                    for k in (1, 5):
                        hits[key][k] += topk_hits(out[idx], y, k, class_offset)
                labeled += len(idx)
        progress(ProgressEvent(EVALUATE, seen, ptotal, f"{seen}/{total_images} images"))
    result = {
        "images": seen,
        "agreement": {"top1": agree / seen if seen else None},
        "outputs": [stats[n].result(n) for n in names],
        "accuracy": None,
        "shape_warnings": sorted(set(shape_warnings)),
    }
    if labels is not None and labeled:
        result["accuracy"] = {
            "labeled_images": labeled,
            "class_offset": class_offset,
            "fp32": {"top1": hits["fp32"][1] / labeled, "top5": hits["fp32"][5] / labeled},
            "int8": {"top1": hits["int8"][1] / labeled, "top5": hits["int8"][5] / labeled},
        }
    return result


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


def resolve_labels(settings, files: list[Path]) -> Labels | None:
    """The labels an evaluation uses, per its settings (never guessed)."""
    roots = list(settings.folders)
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
) -> dict:
    """Compare ``fp32`` and ``int8`` on up to ``settings.max_images`` of ``files``,
    then time both. ``declared``: the FP32 model's declared output shapes. Returns report sections (eval, accuracy, agreement, outputs,
    latency_ms, warnings)."""
    log = ReadLog()
    order = seeded_order(files, seed + 1)  # not the calibration order
    if labels is not None:
        # Labeled images first, so max_images counts images that can score.
        has = {p: labels.get(p) is not None for p in order}
        order = [p for p in order if has[p]] + [p for p in order if not has[p]]
    total = min(settings.max_images, len(order))
    stream = iter_tensors(order, spec, settings.max_images, log, cancel)
    first: list[np.ndarray] = []

    def keep_first(stream):
        for p, tensor in stream:
            if not first:
                first.append(tensor)
            yield p, tensor

    # Progress: one unit per image, then one per block of latency runs.
    lat_units = LATENCY_ROUNDS * 2
    sessions = {"fp32": make_session(fp32, threads), "int8": make_session(int8, threads)}
    result = compare_outputs(
        sessions["fp32"], sessions["int8"], declared, feeds, batches(keep_first(stream), fixed_batch or 16), total, labels,
        settings.class_offset, progress, cancel, progress_total=total + lat_units,
    )
    del sessions  # latency is timed with each model alone (latency.py)
    if not first:
        raise nothing_readable(log.skipped, "the evaluation images", "Add readable JPEG or PNG images to the evaluation folder.")
    warnings = list(result.pop("shape_warnings"))
    if labels is not None and result["accuracy"] is None:
        warnings.append("none of the evaluation images has a label; accuracy not measured.")
    seen = result["images"]

    def on_step(done: int, planned: int) -> None:
        progress(ProgressEvent(EVALUATE, seen + done, seen + planned, "measuring latency (each model alone, in rounds)"))

    on_step(0, lat_units)
    sample = np.stack([first[0]] * (fixed_batch or 1))
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

