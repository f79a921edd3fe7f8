"""One run's context: what every target's flow starts from, made once.

:func:`open_context` checks the job against the model (output path, model
blockers, task, feeds, preprocessing), lists the calibration images (holding
some back when they are also the evaluation images), resolves the labels,
runs the quiet normalization check and opens the run's temporary folder.
The stages then take the context (or plain values from it) instead of a
dozen parameters each.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from .atomic import check_output_path
from .calibrate.calibration import CalibrationInputs
from .data.dataset import list_images, seeded_order
from .data.preprocess import PreprocessSpec
from .errors import DatasetError, JobError, ModelError, OutputError
from .evaluate.compare import EvalPlan, resolve_labels
from .evaluate.normcheck import CheckInputs, QuietCheck, quiet_check
from .job import Job
from .model.feeds import Feeds, make_feeds
from .model.modelinfo import ModelInfo, inspect_model
from .notes import Note
from .parallel import ExecutorSpec, make_executor
from .progress import PREPARE, CancelToken, ProgressEvent, ProgressFn, no_progress
from .report.document import RunFacts
from .tasks import EvalContext, TaskGuess, detect_task


@dataclass(frozen=True)
class QuantResult:
    output: Path
    report: dict
    samples: list = field(default_factory=list)  # the task's picture data (boxes, maps) for the first images
    eval_files: tuple[Path, ...] = ()  # the images evaluation drew from


@dataclass(frozen=True)
class RunContext:
    job: Job
    info: ModelInfo
    task: TaskGuess
    feeds: Feeds
    spec: PreprocessSpec  # the job's preprocessing, resolved for the model
    calib_files: list[Path]  # calibration candidates (after holding back evaluation images)
    labels: Any  # class or box labels of the evaluation images, or None
    tmp: Path
    progress: ProgressFn
    cancel: CancelToken
    notes: tuple[Note, ...] = ()  # warnings from the set-up
    norm_check: QuietCheck | None = None
    started: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, for the report
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)  # how independent work (trials, evaluation shards) is spread

    @contextlib.contextmanager
    def pool(self) -> Iterator:
        """The run's executor, its workers started on first use and ended with the block."""
        executor = make_executor(self.executor)
        try:
            yield executor
        finally:
            executor.close()

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the block's duration to ``timings[stage]`` (the first stage
        counts from the start of the run: checks and set-up included)."""
        t = self.started if not self.timings else time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - t

    def facts(self, int8_size: int) -> RunFacts:
        """What every report says about this run, whatever the target."""
        job = self.job
        return RunFacts(self.info.to_dict(), job.to_dict(), job.model, job.output, self.info.size_bytes, int8_size,
                        self.spec.to_dict(), self.norm_check.summary if self.norm_check else None, self.timings)

    @property
    def fixed_batch(self) -> int | None:
        return self.info.image_input.fixed_batch

    @property
    def declared(self) -> dict[str, tuple]:
        return {t.name: t.shape for t in self.info.outputs}

    def eval_context(self) -> EvalContext:
        job = self.job
        return EvalContext(job.task.options_for(self.task.kind), self.labels, job.evaluation.class_offset, self.spec)

    def eval_plan(self, files: list[Path], fixed_batch: int | None = None) -> EvalPlan:
        """How the evaluation compares on ``files`` (``fixed_batch``: the INT8 model's, when fixed)."""
        e = self.job.evaluation
        return EvalPlan(files, self.task, self.eval_context(), self.feeds, self.declared, fixed_batch or self.fixed_batch,
                        e.max_images, e.latency_runs, self.job.calibration.seed, noise_images=e.noise_images)

    def calibration_inputs(self, **changes) -> CalibrationInputs:
        job = self.job
        inputs = CalibrationInputs(job.model, self.feeds, self.spec, job.calibration, self.calib_files,
                                   self.fixed_batch or job.calibration.batch_size, job.cache)
        return replace(inputs, **changes)

    def evaluation_files(self, used: tuple[Path, ...], skipped: tuple[tuple[Path, str], ...]) -> tuple[list[Path], str, int]:
        """Evaluation images never include images calibration used: (files,
        where they come from, how many were left out)."""
        return evaluation_files(self.job, self.calib_files, used, skipped)


def resolve_spec(spec: PreprocessSpec, info: ModelInfo) -> PreprocessSpec:
    """A job's preprocessing made concrete for this model, or a JobError."""
    ii = info.image_input
    assert ii is not None
    spec = spec.resolved(ii.layout, info.input_size)
    if spec.channels != ii.channels:
        want = "gray" if ii.channels == 1 else "rgb or bgr"
        raise JobError(
            "preprocess.color",
            f"{spec.color.upper()} gives {spec.channels} channel(s) but the model's input {ii.name!r} takes {ii.channels}",
            f"Use {want} with {ii.channels} mean/std value(s).",
        )
    return spec


def check_model(info: ModelInfo) -> None:
    if info.blockers:
        raise ModelError(info.blockers[0])


def check_outputs(job: Job, overwrite: bool, suffix: str) -> None:
    """The output (and the report and cache files) can be written and overwrite nothing they must not."""
    if job.output is None:
        raise JobError("output", "no output path given", f"Choose where to write the INT8 model (a {suffix} file).")
    check_output_path(job.model, job.output, overwrite, suffix=suffix)
    for extra in (job.report, job.cache):
        if extra is not None and os.path.abspath(extra) in (os.path.abspath(job.model), os.path.abspath(job.output)):
            raise OutputError(f"{extra} would overwrite the model or the output.", "Choose another file name.")


@contextlib.contextmanager
def open_context(job: Job, progress: ProgressFn = no_progress, cancel: CancelToken | None = None, overwrite: bool = False,
                 suffix: str = ".onnx", precheck: Callable[[Job, ModelInfo], None] | None = None,
                 executor: ExecutorSpec | None = None) -> Iterator[RunContext]:
    """Check ``job`` and yield its RunContext; the temporary folder goes when
    the block ends. ``precheck`` is the target's own check of the job against
    the model, run before any work."""
    cancel = cancel or CancelToken()
    started = time.perf_counter()
    progress(ProgressEvent(PREPARE, 0, 3, "checking the model and settings"))
    check_outputs(job, overwrite, suffix)
    info = inspect_model(job.model, layout=job.preprocess.layout, size=job.preprocess.size)
    check_model(info)
    task = detect_task(info, job.task.kind)
    feeds = make_feeds(info, job.inputs)
    spec = resolve_spec(job.preprocess, info)
    if precheck is not None:
        precheck(job, info)
    listed = list_images(job.calibration.folders, "calibration")
    check = quiet_check(CheckInputs(job.model, info, task, feeds, spec, listed, job.task.options_for(task.kind),
                                    seed=job.calibration.seed), progress, cancel)
    calib_files, held_back = hold_back_for_evaluation(job, listed)
    notes = list(check.warnings)
    if held_back:
        notes.append(Note("evaluate.held_back", (
            f"the evaluation images are calibration images: {held_back} of them were held back from calibration, "
            "so that the numbers are measured on images the calibration did not see.")))
    candidates = list_images(job.evaluation.folders, "evaluation") if job.evaluation.folders else calib_files
    labels = resolve_labels(job.evaluation, candidates)
    with tempfile.TemporaryDirectory(prefix="guiapp-") as tmpdir:
        yield RunContext(job, info, task, feeds, spec, calib_files, labels, Path(tmpdir), progress, cancel,
                         tuple(notes), check, started, executor=executor or ExecutorSpec())


def hold_back_for_evaluation(job: Job, calib_files: list[Path]) -> tuple[list[Path], int]:
    """Decided before any work: when calibration would read every image of
    the evaluation folders, a fifth of them (at most the evaluation's image
    count) are kept out of calibration. Returns the calibration candidates
    and how many were held back."""
    if not job.evaluation.folders:
        return calib_files, 0
    eval_real = sorted({os.path.realpath(p) for p in list_images(job.evaluation.folders, "evaluation")})
    planned = {os.path.realpath(p) for p in seeded_order(calib_files, job.calibration.seed)[: job.calibration.max_images]}
    if any(r not in planned for r in eval_real):
        return calib_files, 0
    if len(eval_real) < 2:
        raise DatasetError(
            "the only evaluation image is also the only calibration image.",
            "Give an evaluation folder with other images, or more images.",
        )
    k = max(1, min(job.evaluation.max_images, len(eval_real) // 5))
    held = set(seeded_order(eval_real, job.calibration.seed + 1)[:k])
    return [p for p in calib_files if os.path.realpath(p) not in held], len(held)


def evaluation_files(job: Job, calib_files: list[Path], used: tuple[Path, ...],
                     skipped: tuple[tuple[Path, str], ...]) -> tuple[list[Path], str, int]:
    """The evaluation images, given which images calibration ``used`` and
    which it ``skipped`` (unreadable): (files, source, images left out)."""
    used_real = {os.path.realpath(p) for p in used}
    unreadable = {os.path.realpath(p) for p, _ in skipped}
    if job.evaluation.folders:
        files = list_images(job.evaluation.folders, "evaluation")
        held = [p for p in files if os.path.realpath(p) not in used_real]
        if not held:
            raise DatasetError("every evaluation image was used for calibration.", "Give an evaluation folder with other images.")
        return held, "evaluation folders", len(files) - len(held)
    excluded = used_real | unreadable
    held = [p for p in calib_files if os.path.realpath(p) not in excluded]
    if held:
        return held, "calibration folders, images not used for calibration", len(calib_files) - len(held)
    # Every image went into calibration: compare on them, and say so.
    return list(used), "calibration images (no held-out images: numbers are optimistic)", 0
