"""The run report's skeleton, the same for every target: what was run, on
what, with which result. A target adds its own section (``target``) and the
sections only it can fill (per-layer error, calibration, tuning)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..evaluate.sessions import default_threads
from ..notes import Note
from .summary import broken_warning, environment, now_iso

EVALUATION_KEYS = ("task", "fidelity", "accuracy", "agreement", "outputs")


@dataclass(frozen=True)
class RunFacts:
    """What every report states about its run."""

    model: dict  # ModelInfo.to_dict()
    job: dict  # Job.to_dict()
    model_path: Path
    output: Path
    fp32_size: int
    int8_size: int
    preprocess: dict  # the resolved PreprocessSpec
    normalization_check: dict | None
    timings: dict[str, float]


def base_report(facts: RunFacts, evaluation: dict, sections: dict, notes: list[Note]) -> dict:
    """The report of a run: ``evaluation`` is what evaluating FP32 against
    INT8 gave (evaluate_models' or a target's own), ``sections`` the report
    keys the target fills, ``notes`` its warnings (the evaluation's and a
    broken headline's are added)."""
    latency = evaluation.get("latency_ms") or {}
    report = {
        "created": now_iso(),
        "model": facts.model,
        "output": str(facts.output),
        "fp32": {"path": str(facts.model_path), "size_bytes": facts.fp32_size, "latency_ms": latency.get("fp32")},
        "int8": {"path": str(facts.output), "size_bytes": facts.int8_size, "latency_ms": latency.get("int8")},
        **{k: evaluation[k] for k in EVALUATION_KEYS},
        "latency": evaluation.get("latency"),
        "per_layer": [],
        "kept_float": [],
        "protected_outputs": [],
        "quantization": None,
        "tuning": None,
        "eval": evaluation["eval"],
        "calibration": None,
        "preparation": [],
        "preprocess": facts.preprocess,
        "normalization_check": facts.normalization_check,
        "timings_s": dict(facts.timings),
        "environment": environment(default_threads()),
        "job": facts.job,
        "target": None,
        **sections,
    }
    every = [*notes, *evaluation.get("warnings", []), *broken_warning(evaluation["fidelity"]["headline"])]
    report["warnings"] = [n.to_dict() for n in dict.fromkeys(every)]
    return report
