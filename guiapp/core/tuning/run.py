"""The search inside a quantization run: from the builder of the run's
prepared graph to the chosen trial's INT8 model, with every trial recorded
for the report."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import Cancelled, JobError
from ..evaluate.compare import EvalPlan
from ..job import Job, Recipe
from ..progress import TUNE, CancelToken, ProgressEvent, ProgressFn
from .evalset import build_evalset
from .scorer import Builder, Scorer
from .search import search
from .trials import Goal, Trial, pareto


POOL_WORTH_S = 3.0  # a trial shorter than this runs here: a worker takes about this long to start


@dataclass(frozen=True)
class Tuned:
    path: Path  # the chosen trial's INT8 model (in the work folder)
    trial: Trial
    variant: object  # the graph it was made from (equalized and bias-corrected as chosen) and its statistics
    report: dict  # the report's "tuning" section
    cancelled: bool


def goal_for(headline: dict, max_drop: float) -> Goal:
    """The target in the task's own metric. Numbers measured against FP32
    (agreement, F1, IoU) have FP32 at 100 %; top-1 with labels has FP32's top-1."""
    if headline["metric"].endswith("_db"):
        raise JobError("tuning.max_drop", "this model's task has no accuracy-like number (only output SQNR in dB)",
                       "Choose its task on the Model page (--task) or give labels, or quantize without a target.")
    reference = headline.get("fp32")
    return Goal(headline["metric"], headline["label"], 1.0 if reference is None else float(reference), max_drop)


def tune(job: Job, builder: Builder, plan: EvalPlan, fixed: frozenset[str], tmp: Path, progress: ProgressFn,
         cancel: CancelToken, executor=None) -> Tuned:
    """Search for the best INT8 model that meets ``job.tuning``, building
    every trial with ``builder`` and scoring it on ``plan``'s images.
    ``fixed``: the nodes in float whatever the trial; ``executor``: runs the
    trials of one step concurrently (the same trials and numbers as without)."""
    t0 = time.monotonic()
    deadline = t0 + job.tuning.minutes * 60
    progress(ProgressEvent(TUNE, 0, 1, "decoding the evaluation images and running FP32 once"))
    evalset = build_evalset(job.model, plan, tmp, cancel)
    ws = Scorer(builder, evalset, plan, Goal("", "", 1.0, 0.0), tmp, fixed, executor)
    first = Recipe.of(job)
    # The goal needs FP32's own value of the metric: the first trial's headline carries it.
    probe = ws.run("strategy", first, cancel, f"strategy {first.method}")
    ws.goal = goal_for(probe.details, job.tuning.max_drop)
    probe = replace(probe, meets=ws.goal.meets(probe.metric))
    if probe.seconds < POOL_WORTH_S:
        ws.executor = None  # trials this quick: starting workers (each loads ONNX Runtime) would cost more
    seen: list[Trial] = []

    def on_trial(t: Trial) -> None:
        seen.append(t)
        value = "-" if t.metric is None else f"{t.metric * 100:.1f}%"
        verdict = "meets the target" if t.meets else "below the target"
        progress(ProgressEvent(TUNE, len(seen), len(seen) + 1,
                               f"trial {t.index}: {t.recipe.describe()}: {value} ({verdict} {ws.goal.required * 100:.1f}%)",
                               data={"trial": t.to_dict(), "goal": ws.goal.to_dict()}))

    on_trial(probe)
    result = search(ws, first, deadline, cancel, on_trial, seed_trials=[probe])
    chosen = result.chosen
    if chosen is None:
        raise Cancelled()
    v = builder.variant(chosen.recipe, CancelToken())
    missed = None if chosen.meets else (ws.goal.required - chosen.metric) * 100
    report = {
        "target": ws.goal.to_dict(),
        "met": chosen.meets,
        "missed_by_points": missed,
        "chosen": chosen.index,
        "stopped": result.stopped,
        "minutes_budget": job.tuning.minutes,
        "seconds": time.monotonic() - t0,
        "evaluation_images": len(evalset),
        "notes": list(builder.notes),
        "pareto": pareto(result.trials),
        "trials": [t.to_dict() for t in result.trials],
    }
    return Tuned(ws.path_of(chosen), chosen, v, report, result.stopped == "cancelled")
