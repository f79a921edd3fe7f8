"""The evaluation's images compared, in this process or split into shards
across an executor's workers and merged: the same numbers either way
(counts add up; the noise floor's noise is seeded by each image's place).
Latency is never measured here: it is timed afterwards, each model alone."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import ReadLog, batches, iter_tensors, seeded_order
from ..errors import ModelError
from ..parallel.base import Failed
from ..progress import EVALUATE, CancelToken, ProgressEvent, ProgressFn, no_progress
from .comparison import Comparison, EvalPlan, Runners, accumulate, noise_places
from .sessions import make_session

BATCH = 16  # images run together when the model's batch is free
SHARD_IMAGES = 512  # at least this many images per shard: starting a worker's sessions costs about a second


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


@dataclass(frozen=True)
class Shard:
    """Some of the evaluation's images (``files``, up to ``limit`` readable
    ones) to compare: what a worker receives (paths and settings, no sessions)."""

    fp32: Path
    int8: Path
    plan: EvalPlan
    files: tuple[Path, ...]
    limit: int
    noisy: dict[Path, int]


@dataclass
class Compared:
    """A shard's comparison, what it read and skipped, its first tensor."""

    comparison: Comparison
    log: ReadLog
    first: np.ndarray | None

    def merge(self, other: "Compared") -> None:
        """Add ``other``, made on the images after these."""
        self.comparison.merge(other.comparison)
        self.log.used.extend(other.log.used)
        self.log.skipped.extend(other.log.skipped)
        if self.first is None:
            self.first = other.first


def compare_shard(shard: Shard, progress: ProgressFn = no_progress, cancel: CancelToken | None = None,
                  progress_total: int | None = None) -> Compared:
    """Both models on the shard's images (a worker's item, or the whole
    evaluation in this process)."""
    plan = shard.plan
    cancel = cancel or CancelToken()
    log, first = ReadLog(), FirstTensor()
    stream = first.watch(iter_tensors(shard.files, plan.spec, shard.limit, log, cancel))
    fp32, int8 = make_session(shard.fp32, plan.threads), make_session(shard.int8, plan.threads)
    names = [o.name for o in fp32.get_outputs()]
    runners = Runners(lambda feed: fp32.run(names, feed), lambda feed: int8.run(names, feed), names)
    total = min(shard.limit, len(shard.files))
    comparison = accumulate(runners, plan, batches(stream, plan.fixed_batch or BATCH), total, progress, cancel,
                            progress_total, shard.noisy)
    return Compared(comparison, log, first.tensor)


def compare_files(fp32: Path, int8: Path, plan: EvalPlan, progress: ProgressFn, cancel: CancelToken,
                  executor: Any = None, progress_total: int | None = None, shard_images: int | None = None) -> Compared:
    """FP32 against INT8 on up to ``plan.max_images`` readable images of
    ``plan.files`` in :func:`evaluation_order`; with an ``executor`` of
    several workers and at least two shards' worth of images, in shards on
    its workers (each with its share of the cores), merged in order."""
    order = evaluation_order(plan.files, plan.labels, plan.seed)
    total = min(plan.max_images, len(order))
    noisy = noise_places(order, plan)
    workers = getattr(executor, "workers", 1)
    shard_images = shard_images or SHARD_IMAGES
    if workers < 2 or total < 2 * shard_images:
        return compare_shard(Shard(fp32, int8, plan, tuple(order), plan.max_images, noisy), progress, cancel, progress_total)

    ptotal = progress_total or total
    size = max(shard_images, math.ceil(total / (4 * workers) / BATCH) * BATCH)  # whole batches, ~4 shards per worker
    shard_plan = replace(plan, threads=None)  # a worker uses its share of the cores
    shards = [Shard(fp32, int8, shard_plan, tuple(order[s : min(s + size, total)]), size, noisy)
              for s in range(0, total, size)]
    done = [0]

    def on_result(i: int, got) -> None:
        if isinstance(got, Compared):
            done[0] += got.comparison.seen
            progress(ProgressEvent(EVALUATE, done[0], ptotal, f"{done[0]}/{total} images ({len(shards)} parts on {workers} workers)"))

    progress(ProgressEvent(EVALUATE, 0, ptotal, f"comparing FP32 and INT8 outputs on {workers} workers"))
    parts = executor.map(compare_shard, shards, cancel, on_result)
    for shard, got in zip(shards, parts):
        if isinstance(got, Failed):
            raise ModelError(f"the evaluation of {len(shard.files)} images (from {shard.files[0].name}) failed twice: {got.reason}",
                             "Run it again with --workers 1 to see the error in one process.")
    merged = parts[0]
    for got in parts[1:]:
        merged.merge(got)
    missing = plan.max_images - merged.comparison.seen
    if missing > 0 and total < len(order):  # unreadable files: read on, as one process would have
        merged.merge(compare_shard(Shard(fp32, int8, plan, tuple(order[total:]), missing, noisy), cancel=cancel))
    return merged
