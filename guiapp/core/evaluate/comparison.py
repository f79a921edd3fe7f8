"""FP32 against INT8 on a stream of images, accumulated: the task's
fidelity, each output's error (whole and per channel group), the noise
floor, declared shapes that the run contradicts. An accumulator can be
merged with another made on other images (an evaluation split across
workers gives the numbers one process gives)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import ModelError
from ..model.feeds import Feeds
from ..notes import Note
from ..progress import EVALUATE, CancelToken, ProgressEvent, ProgressFn
from ..tasks import TASKS, EvalContext, TaskGuess, make_fidelity
from ..tasks.errorstats import ErrorStats

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

    def merge(self, other: "OutputStats") -> None:
        self.total.merge(other.total)
        for label, (_, _, st) in self.groups.items():
            st.merge(other.groups[label][2])

    def result(self, name: str) -> dict:
        out = self.total.result(name)
        worst = min(((st.sqnr_db, label, st) for label, (_, _, st) in self.groups.items() if st.sqnr_db is not None),
                    key=lambda t: t[0], default=None)
        out["worst_group"] = None if worst is None else {"group": worst[1], "sqnr_db": worst[0], "cosine": worst[2].cosine}
        return out


NOISE_LEVELS = 1.0  # Gaussian input noise, in pixel levels (0..255): invisible, yet it moves a model's outputs


class NoiseFloor:
    """The task's headline number for FP32 against FP32 on the same images
    with invisible Gaussian noise added (``NOISE_LEVELS`` pixel levels): how
    much the outputs move for nothing. INT8 moving them less than this is as
    faithful as FP32 is to itself. ``noisy`` maps the images it is measured
    on (the evaluation's first ``noise_images``) to their place in the
    evaluation, which seeds each image's noise: a split evaluation adds the
    same noise to the same images."""

    def __init__(self, plan: EvalPlan, noisy: dict[Path, int]) -> None:
        self.plan = plan
        self.noisy = noisy
        self.fidelity = make_fidelity(plan.task, plan.context)
        self.seen = 0
        spec = plan.spec
        axis = 1 if spec.layout == "nchw" else 3
        shape = [1, 1, 1, 1]
        shape[axis] = len(spec.std)
        self.scale = (NOISE_LEVELS / np.asarray(spec.std, np.float32)).reshape(shape)  # pixel noise in normalized units

    def add(self, paths: list[Path], batch: np.ndarray, feed: dict, fp32: list, runners: Runners) -> None:
        chosen = [i for i, p in enumerate(paths) if p in self.noisy]
        if not chosen:
            return
        noise = np.stack([np.random.default_rng((self.plan.seed, 17, self.noisy.get(p, -1) + 1)).standard_normal(batch.shape[1:])
                          for p in paths]).astype(batch.dtype)
        moved = runners.fp32({**feed, self.plan.feeds.image: (batch + noise * self.scale).astype(batch.dtype)})
        names = runners.names
        if len(chosen) == len(paths):
            take = lambda outs: dict(zip(names, outs))  # noqa: E731
        else:
            take = lambda outs: {k: np.asarray(v)[chosen] for k, v in zip(names, outs)}  # noqa: E731
        self.fidelity.add([paths[i] for i in chosen], take(fp32), take(moved))
        self.seen += len(chosen)

    def merge(self, other: "NoiseFloor") -> None:
        self.fidelity.merge(other.fidelity)
        self.seen += other.seen

    def result(self) -> dict:
        head = self.fidelity.result()["headline"]
        return {"value": head["value"], "metric": head["metric"], "pixel_levels": NOISE_LEVELS, "images": self.seen}


class Comparison:
    """Everything one evaluation accumulates; :meth:`merge` another made on
    the images after these. ``noisy``: the images the noise floor is
    measured on, by place in the whole evaluation (see :class:`NoiseFloor`)."""

    def __init__(self, plan: EvalPlan, noisy: dict[Path, int] | None = None) -> None:
        self.plan = plan
        self.fidelity = make_fidelity(plan.task, plan.context)
        wanted = plan.noise_images and TASKS[plan.task.kind].noise_floor
        self.floor = NoiseFloor(plan, noisy or {}) if wanted else None
        self.stats: dict[str, OutputStats] = {}
        self.shape_warnings: list[Note] = []
        self.names: list[str] = []  # the FP32 model's outputs, in its order
        self.seen = 0

    def add(self, paths: list[Path], batch: np.ndarray, feed: dict, runners: Runners, outputs: tuple[list, list]) -> None:
        r32, r8 = outputs
        self.names = runners.names
        groups = TASKS[self.plan.task.kind].groups
        for n, a, b in zip(runners.names, r32, r8):
            a, b = np.asarray(a), np.asarray(b)
            if a.dtype.kind == "f":
                if n not in self.stats:
                    self.stats[n] = OutputStats(groups(self.plan.task, n, a.shape))
                self.stats[n].add(a, b)
            if self.seen == 0:  # the first batch tells
                self.shape_warnings.extend(_declared_shape_warning(n, self.plan.declared.get(n), a.shape))
        self.fidelity.add(paths, dict(zip(runners.names, r32)), dict(zip(runners.names, r8)))
        if self.floor is not None:
            self.floor.add(paths, batch, feed, r32, runners)
        self.seen += len(paths)

    def merge(self, other: "Comparison") -> None:
        for n, st in other.stats.items():
            if n in self.stats:
                self.stats[n].merge(st)
            else:
                self.stats[n] = st
        self.shape_warnings.extend(w for w in other.shape_warnings if w not in self.shape_warnings)
        self.fidelity.merge(other.fidelity)
        if self.floor is not None and other.floor is not None:
            self.floor.merge(other.floor)
        self.names = self.names or other.names
        self.seen += other.seen

    def result(self) -> dict:
        names = self.names
        fid = self.fidelity.result()
        if self.floor is not None and self.floor.seen:
            fid["headline"]["noise_floor"] = self.floor.result()
        return {
            "images": self.seen,
            "task": self.plan.task.to_dict(),
            "agreement": fid.pop("agreement", None),
            "accuracy": fid.pop("accuracy", None),
            "fidelity": fid,
            "outputs": [self.stats[n].result(n) for n in names if n in self.stats],
            "shape_warnings": list(dict.fromkeys(self.shape_warnings)),
            "samples": self.fidelity.samples,
        }


def accumulate(runners: Runners, plan: EvalPlan, batches: Iterator[tuple[list[Path], np.ndarray]], total_images: int,
               progress: ProgressFn, cancel: CancelToken, progress_total: int | None = None,
               noisy: dict[Path, int] | None = None) -> Comparison:
    """Run both models on ``batches`` and accumulate the comparison (not yet
    summed up: it can be merged). Progress counts images out of
    ``progress_total`` (default: ``total_images``)."""
    ptotal = progress_total or total_images
    comparison = Comparison(plan, noisy)
    progress(ProgressEvent(EVALUATE, 0, ptotal, "comparing FP32 and INT8 outputs"))
    for paths, batch in batches:
        cancel.check()
        feed = plan.feeds(batch)
        try:
            r32 = runners.fp32(feed)
            r8 = runners.int8(feed)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"evaluation failed on {paths[0].name}: {str(exc).splitlines()[0][:200]}") from None
        comparison.add(paths, batch, feed, runners, (r32, r8))
        progress(ProgressEvent(EVALUATE, comparison.seen, ptotal, f"{comparison.seen}/{total_images} images"))
    return comparison


def noise_places(order: list[Path], plan: EvalPlan) -> dict[Path, int]:
    """The images the noise floor is measured on (the first
    ``plan.noise_images`` of the evaluation's order), by place."""
    return {p: i for i, p in enumerate(order[: plan.noise_images])}


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


