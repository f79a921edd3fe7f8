"""FP32 vs INT8: size, latency, and how much the INT8 model agrees with FP32
in the terms of its task (and with the labels, when there are labels)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import onnxruntime as ort

from ..data.boxlabels import BoxLabels, labels_from_coco, labels_from_yolo
from ..data.dataset import (
    Labels, ReadLog, batches, iter_tensors, labels_from_csv, labels_from_subfolders, nothing_readable, seeded_order,
)
from ..errors import ModelError
from ..model.feeds import Feeds
from ..notes import Note
from ..progress import EVALUATE, CancelToken, ProgressEvent, ProgressFn
from ..tasks import TASKS, EvalContext, TaskGuess, make_fidelity
from ..tasks.errorstats import ErrorStats
from .latency import ROUNDS as LATENCY_ROUNDS, time_models
from .sessions import make_session

Runner = Callable[[dict[str, np.ndarray]], list[np.ndarray]]  # feed -> outputs in the FP32 model's order


@dataclass(frozen=True)
class Runners:
    """The two models to compare, as functions of a feed, and the FP32 model's output names."""

    fp32: Runner
    int8: Runner
    names: list[str]


@dataclass(frozen=True)
class EvalPlan:
    """What an evaluation compares on and how: the images, the task and its
    context (options, labels, preprocessing), the feeds, how many images,
    how long latency is timed."""

    files: list[Path]
    task: TaskGuess
    context: EvalContext
    feeds: Feeds
    declared: dict[str, tuple]  # the FP32 model's declared output shapes (ONNX Runtime reports its own)
    fixed_batch: int | None = None
    max_images: int = 500
    latency_runs: int = 50
    seed: int = 0
    threads: int | None = None
    noise_images: int = 0  # the noise floor (FP32 against FP32 on inputs with invisible noise) on this many images

    @property
    def spec(self):
        return self.context.spec

    @property
    def labels(self):
        return self.context.labels


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


def compare_outputs(runners: Runners, plan: EvalPlan, batches: Iterator[tuple[list[Path], np.ndarray]], total_images: int,
                    progress: ProgressFn, cancel: CancelToken, progress_total: int | None = None) -> dict:
    """Run both models on the same images: the task's fidelity numbers, and
    per output SQNR and cosine (whole and per channel group). Progress counts
    images out of ``progress_total`` (default: the images). ``samples`` in
    the result holds the task's picture data; ``shape_warnings`` Notes."""
    ptotal = progress_total or total_images
    task = plan.task
    groups = TASKS[task.kind].groups
    shape_warnings: list[Note] = []
    stats: dict[str, OutputStats] = {}
    fidelity = make_fidelity(task, plan.context)
    floor = NoiseFloor(plan) if plan.noise_images and TASKS[task.kind].noise_floor else None
    seen = 0
    progress(ProgressEvent(EVALUATE, 0, ptotal, "comparing FP32 and INT8 outputs"))
    for paths, batch in batches:
        cancel.check()
        feed = plan.feeds(batch)
        try:
            r32 = runners.fp32(feed)
            r8 = runners.int8(feed)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"evaluation failed on {paths[0].name}: {str(exc).splitlines()[0][:200]}") from None
        for n, a, b in zip(runners.names, r32, r8):
            a, b = np.asarray(a), np.asarray(b)
            if a.dtype.kind == "f":
                if n not in stats:
                    stats[n] = OutputStats(groups(task, n, a.shape))
                stats[n].add(a, b)
            if seen == 0:  # the first batch tells
                shape_warnings.extend(_declared_shape_warning(n, plan.declared.get(n), a.shape))
        fidelity.add(paths, dict(zip(runners.names, r32)), dict(zip(runners.names, r8)))
        if floor is not None:
            floor.add(paths, batch, feed, r32, runners)
        seen += len(paths)
        progress(ProgressEvent(EVALUATE, seen, ptotal, f"{seen}/{total_images} images"))
    fid = fidelity.result()
    if floor is not None and floor.seen:
        fid["headline"]["noise_floor"] = floor.result()
    return {
        "images": seen,
        "task": task.to_dict(),
        "agreement": fid.pop("agreement", None),
        "accuracy": fid.pop("accuracy", None),
        "fidelity": fid,
        "outputs": [stats[n].result(n) for n in runners.names if n in stats],
        "shape_warnings": list(dict.fromkeys(shape_warnings)),
        "samples": fidelity.samples,
    }


NOISE_LEVELS = 1.0  # Gaussian input noise, in pixel levels (0..255): invisible, yet it moves a model's outputs


class NoiseFloor:
    """The task's headline number for FP32 against FP32 on the same images
    with invisible Gaussian noise added (``NOISE_LEVELS`` pixel levels): how
    much the outputs move for nothing. INT8 moving them less than this is as
    faithful as FP32 is to itself."""

    def __init__(self, plan: EvalPlan) -> None:
        self.plan = plan
        self.fidelity = make_fidelity(plan.task, plan.context)
        self.rng = np.random.default_rng(plan.seed + 17)
        self.seen = 0
        spec = plan.spec
        axis = 1 if spec.layout == "nchw" else 3
        shape = [1, 1, 1, 1]
        shape[axis] = len(spec.std)
        self.scale = (NOISE_LEVELS / np.asarray(spec.std, np.float32)).reshape(shape)  # pixel noise in normalized units

    def add(self, paths: list[Path], batch: np.ndarray, feed: dict, fp32: list, runners: Runners) -> None:
        n = min(len(paths), self.plan.noise_images - self.seen)
        if n <= 0:
            return
        noisy = (batch + self.rng.standard_normal(batch.shape).astype(batch.dtype) * self.scale).astype(batch.dtype)
        moved = runners.fp32({**feed, self.plan.feeds.image: noisy})
        names = runners.names
        take = (lambda outs: {k: np.asarray(v)[:n] for k, v in zip(names, outs)}) if n < len(paths) else (
            lambda outs: dict(zip(names, outs)))
        self.fidelity.add(paths[:n], take(fp32), take(moved))
        self.seen += n

    def result(self) -> dict:
        head = self.fidelity.result()["headline"]
        return {"value": head["value"], "metric": head["metric"], "pixel_levels": NOISE_LEVELS, "images": self.seen}


def _declared_shape_warning(name: str, declared, actual: tuple) -> list[Note]:
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
    return [Note(
        "evaluate.declared_shape",
        f"output {name} is declared {text} but the model computes {list(actual)} (for a batch of {actual[0] if actual else '?'}); "
        "ONNX Runtime tolerates it, "
        "other runtimes may not. The INT8 model keeps the declaration as it was: fix it in the exporter.",
    )]


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


def no_label_fits(plan: EvalPlan, result: dict) -> list[Note]:
    """A warning when labels were given but none fits the task."""
    if plan.labels is None or result["accuracy"] is not None or result["fidelity"]["headline"].get("map50"):
        return []
    return [Note("evaluate.labels_unused", "none of the evaluation images has a label that fits this model's task; "
                                           "accuracy not measured.")]


def evaluate_models(fp32: Path, int8: Path, plan: EvalPlan, progress: ProgressFn, cancel: CancelToken) -> dict:
    """Compare ``fp32`` and ``int8`` on up to ``plan.max_images`` of its files
    in the terms of its task, then time both. Returns report sections (task,
    fidelity, eval, accuracy, agreement, outputs, latency_ms, latency,
    warnings as Notes) and ``samples`` (picture data, not for the JSON report)."""
    log = ReadLog()
    order = evaluation_order(plan.files, plan.labels, plan.seed)
    total = min(plan.max_images, len(order))
    first = FirstTensor()
    stream = first.watch(iter_tensors(order, plan.spec, plan.max_images, log, cancel))

    # Progress: one unit per image, then one per block of latency runs.
    lat_units = LATENCY_ROUNDS * 2
    sessions = {"fp32": make_session(fp32, plan.threads), "int8": make_session(int8, plan.threads)}
    names = [o.name for o in sessions["fp32"].get_outputs()]
    runners = Runners(session_runner(sessions["fp32"], names), session_runner(sessions["int8"], names), names)
    result = compare_outputs(runners, plan, batches(stream, plan.fixed_batch or 16), total, progress, cancel,
                             progress_total=total + lat_units)
    del sessions, runners  # latency is timed with each model alone (latency.py)
    if first.tensor is None:
        raise nothing_readable(log.skipped, "the evaluation images", "Add readable JPEG or PNG images to the evaluation folder.")
    warnings = list(result.pop("shape_warnings")) + no_label_fits(plan, result)
    seen = result["images"]

    def on_step(done: int, planned: int) -> None:
        progress(ProgressEvent(EVALUATE, seen + done, seen + planned, "measuring latency (each model alone, in rounds)"))

    on_step(0, lat_units)
    sample = np.stack([first.tensor] * (plan.fixed_batch or 1))
    latency, context, busy = time_models(
        {"fp32": fp32, "int8": int8}, plan.feeds(sample), plan.latency_runs, plan.threads, cancel, on_step, sample.shape[0]
    )
    warnings.extend(busy)
    warnings.extend(slower_warning(latency))
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
    ev = compare_outputs(runners, plan, batches(stream, plan.fixed_batch or 16), total, progress, cancel)
    if first.tensor is None:
        raise nothing_readable(log.skipped, "the evaluation images", "Add readable JPEG or PNG images.")
    ev["warnings"] = list(ev.pop("shape_warnings")) + no_label_fits(plan, ev)
    ev.pop("samples", None)
    return ev, first.tensor
