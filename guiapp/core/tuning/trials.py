"""One trial of the accuracy-target search: the settings it tried and what
they gave, and the target it was judged by."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..job import Recipe


@dataclass(frozen=True)
class Goal:
    """What the user asked: the headline metric at most ``max_drop`` points
    below FP32's value of it."""

    metric: str
    label: str
    reference: float  # FP32's value (1.0 for numbers measured against FP32)
    max_drop: float  # points

    @property
    def required(self) -> float:
        return self.reference - self.max_drop / 100.0

    def meets(self, value: float | None) -> bool:
        return value is not None and value >= self.required - 1e-12

    def to_dict(self) -> dict:
        return {"metric": self.metric, "label": self.label, "reference": self.reference,
                "max_drop_points": self.max_drop, "required": self.required}


@dataclass(frozen=True)
class Trial:
    index: int
    stage: str  # strategy, equalize, fallback, restore
    recipe: Recipe
    metric: float | None
    meets: bool
    size_bytes: int
    latency_ms: float | None
    seconds: float
    note: str = ""
    details: dict = field(default_factory=dict, compare=False)  # the trial's fidelity headline

    def to_dict(self) -> dict:
        return {"index": self.index, "stage": self.stage, **self.recipe.to_dict(), "metric": self.metric,
                "meets": self.meets, "size_bytes": self.size_bytes, "latency_ms": self.latency_ms,
                "seconds": self.seconds, "note": self.note}


def choose(trials: list[Trial]) -> Trial | None:
    """The model to write: among trials that meet the target, the one with the
    fewest float layers (faster, smaller), then the best metric; when none
    meets it, the best metric, then the fewest float layers."""
    done = [t for t in trials if t.metric is not None]
    if not done:
        return None
    meeting = [t for t in done if t.meets]
    if meeting:
        return min(meeting, key=lambda t: (len(t.recipe.float_nodes), -t.metric, t.index))
    return min(done, key=lambda t: (-t.metric, len(t.recipe.float_nodes), t.index))


def pareto(trials: list[Trial]) -> list[int]:
    """Indices of trials no other trial beats on both metric and latency."""
    pts = [t for t in trials if t.metric is not None and t.latency_ms is not None]
    out = []
    for t in pts:
        if not any(o.metric >= t.metric and o.latency_ms <= t.latency_ms and (o.metric > t.metric or o.latency_ms < t.latency_ms)
                   for o in pts):
            out.append(t.index)
    return out
