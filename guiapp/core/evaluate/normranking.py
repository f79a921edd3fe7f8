"""The normalization check's verdict: candidates ranked by how plausible
the model's outputs are, grouped by agreement, and whether the user's
setting is clearly worse than the best (see normcheck.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.normcandidates import Candidate
from ..tasks.base import Judgement

AGREE = 0.95  # candidates whose outputs agree this much form one group
CONFIDENT = 0.95  # share of resamplings in which the best must beat the current
RESAMPLES = 500


@dataclass(frozen=True)
class Scored:
    candidate: Candidate
    judgement: Judgement
    group: int  # 1 = the group of the best candidate

    @property
    def score(self) -> float:
        s = self.judgement.score
        return s if math.isfinite(s) else -math.inf

    def to_dict(self) -> dict:
        return {**self.candidate.to_dict(), "score": self.score if math.isfinite(self.score) else None,
                "group": self.group, "evidence": self.judgement.evidence, "words": self.judgement.words}


@dataclass(frozen=True)
class NormCheck:
    task: str
    metric: str  # what the score measures, in words
    ranking: tuple[Scored, ...]  # best first
    verdict: str  # "ok" (in the best group), "close" (not clearly worse), "worse", "unjudged"
    confidence: float | None  # share of resamplings in which the suggestion beats the current setting
    message: str
    images: int
    skipped: tuple[tuple[Path, str], ...] = ()
    seconds: float = 0.0
    notes: tuple[str, ...] = ()
    suggested: Scored | None = None  # "worse": the setting to use; "close": the best alternative

    @property
    def current(self) -> Scored | None:
        return next((s for s in self.ranking if s.candidate.current), None)

    @property
    def best(self) -> Scored | None:
        return self.ranking[0] if self.ranking else None

    @property
    def current_in_best_group(self) -> bool | None:
        cur = self.current
        return None if cur is None else cur.group == 1

    @property
    def suggestion(self) -> Candidate | None:
        """The setting to use instead of the current one, when one scores higher."""
        return self.suggested.candidate if self.suggested is not None else None

    def suggestion_line(self) -> str:
        s = self.suggestion
        if s is None:
            return ""
        return f"{'Suggested' if self.verdict == 'worse' else 'Also plausible'}: {s.label}: {s.values_text()}."

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "metric": self.metric,
            "images": self.images,
            "verdict": self.verdict,
            "current_in_best_group": self.current_in_best_group,
            "confidence": self.confidence,
            "message": self.message,
            "suggestion": self.suggestion.to_dict() if self.suggestion else None,
            "candidates": [s.to_dict() for s in self.ranking],
            "skipped_files": [{"file": str(p), "reason": r} for p, r in self.skipped],
            "notes": list(self.notes),
            "seconds": round(self.seconds, 2),
        }

    def table_lines(self) -> list[str]:
        """The ranking as a text table, best first; ``*`` marks the current setting."""
        width = max([len(s.candidate.label) for s in self.ranking] + [7])
        lines = [f"{'group':>5}  {'score':>7}  {'setting':<{width}}  channels, mean, std"]
        for s in self.ranking:
            mark = "*" if s.candidate.current else " "
            score = f"{s.score:7.3f}" if math.isfinite(s.score) else "    n/a"
            lines.append(f"{s.group:>5}  {score} {mark}{s.candidate.label:<{width}}  {s.candidate.values_text()}")
        return lines


def rank(scored: list[tuple[Candidate, Judgement]]) -> list[Scored]:
    """Each candidate, best score first, joins the first group whose leader
    (its best member) it agrees with, else starts a new group. Groups are
    numbered by their leader's score; returned group by group, best first."""
    key = [s.score if math.isfinite(s.score) else -math.inf for _, s in scored]
    order = sorted(range(len(scored)), key=lambda i: (-key[i], i))
    leaders: list[Judgement] = []
    out = []
    for i in order:
        c, j = scored[i]
        group = next((g for g, lead in enumerate(leaders, 1) if lead.signature.agreement(j.signature) >= AGREE), None)
        if group is None:
            leaders.append(j)
            group = len(leaders)
        out.append(Scored(c, j, group))
    return sorted(out, key=lambda s: s.group)  # stable: by score within a group


def confidence(better: Judgement, worse: Judgement, n: int, seed: int = 0) -> float:
    """Share of bootstrap resamplings of the ``n`` images on which ``better``
    scores higher than ``worse`` (paired: the same draw for both)."""
    draws = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=RESAMPLES).astype(np.float64)
    return float(np.mean(better.score_of(draws) > worse.score_of(draws)))


def verdict(ranking: list[Scored], n: int) -> tuple[str, float | None, Scored | None]:
    """("ok" | "close" | "worse", confidence, suggestion). Of the candidates
    as good as the best (in its group, or within the clear gap of its score),
    the user's values with a usual mistake undone come first: that is the
    most likely intended setting."""
    best, cur = ranking[0], next(s for s in ranking if s.candidate.current)
    if cur.group == best.group:
        return "ok", None, None
    clear = best.judgement.clear_gap
    tier = [s for s in ranking if s.group != cur.group and (s.group == 1 or s.score >= best.score - clear * abs(best.score))]
    tier.sort(key=lambda s: (not s.candidate.undo, -s.score))
    for s in tier[:3]:
        conf = confidence(s.judgement, cur.judgement, n)
        if conf >= CONFIDENT and s.score - cur.score >= clear * abs(s.score):
            return "worse", conf, s
    return "close", confidence(best.judgement, cur.judgement, n), best


def message(ranking: list[Scored], kind: str, conf: float | None, n: int, pick: Scored | None) -> str:
    cur = next(s for s in ranking if s.candidate.current)
    if kind == "ok":
        peers = [s.candidate.label for s in ranking if s.group == 1 and not s.candidate.current]
        text = (f"Your setting ({cur.candidate.values_text()}) is in the best group (score {cur.score:.3f}): "
                f"{cur.judgement.words}.")
        if peers:
            text += f" Same results with: {', '.join(peers[:4])}" + (" and others." if len(peers) > 4 else ".")
        return text
    assert pick is not None
    if kind == "close":
        clear = pick.judgement.clear_gap
        return (f"{pick.candidate.label} scores higher than your setting ({pick.score:.3f} vs {cur.score:.3f}, higher on "
                f"{conf:.0%} of {RESAMPLES} resamplings), but not clearly (at least {clear:.0%} higher on 95 % of them): "
                "keep yours unless you know the model was trained otherwise. "
                f"With {pick.candidate.label}: {pick.judgement.words}. With yours: {cur.judgement.words}.")
    far = "far" if cur.score <= 0 or pick.score >= 1.5 * cur.score else "clearly"
    return (f"The model's outputs are {far} more plausible with {pick.candidate.label} than with your setting (score "
            f"{pick.score:.3f} vs {cur.score:.3f}, higher on {conf:.0%} of {RESAMPLES} resamplings of your {n} images). "
            f"With {pick.candidate.label}: {pick.judgement.words}. With yours: {cur.judgement.words}.")
