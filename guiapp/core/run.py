"""A quantization run, end to end, for any target.

:func:`quantize` checks the job against its target, opens the run's context
once (:mod:`guiapp.core.context`) and hands it to the target's flow, which
builds, checks and places everything. Nothing is written until everything
succeeded: a failure or a cancel at any stage leaves no file behind.
"""

from __future__ import annotations

import os
from typing import Any

from .context import QuantResult, check_outputs, open_context
from .errors import JobError
from .job import Job, read_job_file
from .parallel import ExecutorSpec
from .parallel.process_job import ProcessJob
from .progress import CancelToken, ProgressFn, no_progress
from .targets.registry import TARGETS, option_types


def quantize(job: Job, progress: ProgressFn = no_progress, cancel: CancelToken | None = None,
             overwrite: bool = False, executor: ExecutorSpec | None = None) -> QuantResult:
    """Run ``job`` end to end. Raises UserError subclasses or Cancelled.
    An existing output is replaced only with ``overwrite``; ``executor``
    spreads independent work (the search's trials; default: a local pool)."""
    target = TARGETS[job.target.kind]
    check_outputs(job, overwrite, target.suffix)  # a misnamed output first: the cheapest mistake to fix
    refused = target.refuses(job)
    if refused:
        raise JobError(f"target.{target.kind}", refused)
    target.require(job.target)
    with open_context(job, progress, cancel, overwrite, target.suffix, target.check, executor) as ctx:
        return target.run(ctx)


def quantize_in_process(job: Job, overwrite: bool = False) -> ProcessJob:
    """:func:`quantize` as a job for a child process of its own (the wizard's
    way: a native crash ends the child, not the window)."""
    target = TARGETS[job.target.kind]
    outputs = tuple(p for p in (job.output, *target.companions(job.output), job.report, job.cache) if p is not None) \
        if job.output is not None else ()
    return ProcessJob(quantize, (job,), (("overwrite", overwrite),), outputs)


def job_from_dict(data: Any, base_dir=None) -> Job:
    """A job from its JSON (relative paths against ``base_dir``), every target's options checked."""
    return Job.from_dict(data, base_dir, option_types())


def load_job(path: str | os.PathLike) -> Job:
    """A job file, checked field by field (a JobError names the first bad one)."""
    data, base_dir = read_job_file(path)
    return job_from_dict(data, base_dir)
