"""The search inside a quantization run: from the prepared graph and its
calibration statistics to the chosen trial's INT8 model, with every trial
recorded for the report."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import JobError
from ..progress import TUNE, CancelToken, ProgressEvent, ProgressFn
from ..tasks import EvalContext
from .evalset import build_evalset
from .search import search
from .trials import Goal, Trial, TrialSettings, pareto
from .workspace import Workspace


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


def tune(ws_args: dict, job, eval_files: list[Path], labels, task, info, tmp: Path,
         progress: ProgressFn, cancel: CancelToken) -> Tuned:
    """Search for the best INT8 model that meets ``job.tuning``. ``ws_args``
    are the Workspace fields the run already has."""
    t0 = time.monotonic()
    deadline = t0 + job.tuning.minutes * 60
    progress(ProgressEvent(TUNE, 0, 1, "decoding the evaluation images and running FP32 once"))
    ctx = EvalContext(job.task, labels, job.evaluation.class_offset, ws_args["spec"])
    evalset = build_evalset(job.model, eval_files, ws_args["spec"], ws_args["feeds"], {t.name: t.shape for t in info.outputs},
                            job.evaluation.max_images, job.calibration.seed, ws_args["fixed_batch"], tmp, cancel, labels)
    ws = Workspace(evalset=evalset, task=task, ctx=ctx, goal=Goal("", "", 1.0, 0.0), tmp=tmp, **ws_args)
    q = job.quantization
    first = TrialSettings(job.calibration.method, q.per_channel, q.equalize, q.bias_correction, ())
    # The goal needs FP32's own value of the metric: the first trial's headline carries it.
    probe = ws.run("strategy", first, cancel, f"strategy {first.method}")
    ws.goal = goal_for(probe.details, job.tuning.max_drop)
    probe = replace(probe, meets=ws.goal.meets(probe.metric))
    seen: list[Trial] = []

    def on_trial(t: Trial) -> None:
        seen.append(t)
        value = "-" if t.metric is None else f"{t.metric * 100:.1f}%"
        verdict = "meets the target" if t.meets else "below the target"
        progress(ProgressEvent(TUNE, len(seen), len(seen) + 1,
                               f"trial {t.index}: {t.settings.describe()}: {value} ({verdict} {ws.goal.required * 100:.1f}%)",
                               data={"trial": t.to_dict(), "goal": ws.goal.to_dict()}))

    on_trial(probe)
    result = search(ws, first, deadline, cancel, on_trial, seed_trials=[probe])
    chosen = result.chosen
    if chosen is None:
        from ..errors import Cancelled

        raise Cancelled()
    v = ws.variant(chosen.settings, CancelToken())
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
        "notes": list(ws.notes),
        "pareto": pareto(result.trials),
        "trials": [t.to_dict() for t in result.trials],
    }
    return Tuned(ws.path_of(chosen), chosen, v, report, result.stopped == "cancelled")


def trial_job(job, trial: dict):
    """The job that makes ``trial``'s model without a search (what the Results
    page runs when the user picks another trial)."""
    from ..job import TuningSettings

    q = job.quantization
    q = replace(q, per_channel=bool(trial["per_channel"]), equalize=bool(trial.get("equalize")),
                bias_correction=bool(trial.get("bias_correction")),
                exclude_nodes=tuple(dict.fromkeys((*q.exclude_nodes, *trial["float_nodes"]))), keep_float=0)
    return replace(job, quantization=q, calibration=replace(job.calibration, method=trial["method"]),
                   tuning=TuningSettings(None, job.tuning.minutes))
