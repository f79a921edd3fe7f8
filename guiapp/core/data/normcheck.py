"""The normalization check: the model itself says which mean, std and
channel order it was trained with.

A model is visibly more decided on the input distribution it was trained
on. The check runs it on about 32 of the user's images under every candidate
preprocessing (:mod:`guiapp.core.data.normcandidates`; each image is decoded and
resized once, the candidates only renormalize the same pixels), asks the
model's task how plausible the outputs are (``Task.plausibility``), and
groups candidates whose outputs agree (``Signature.agreement`` >= 95 %: for
a classifier, the same top-1 class on 95 % of the images). It complains only
when the user's setting is not in the best group and is clearly worse: a
candidate scores higher by at least the task's clear gap (3 % for
classifiers; half for detectors, whose score separates only inputs far off
the training range; a quarter for dense maps) and higher on at least 95 % of 500 resamplings of the
images (so that a difference made by one or two images does not count).
The suggestion is the user's own values with one usual mistake undone when
that does as well as the best (same group, or within the clear gap), else
the best.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx

from .dataset import ReadLog, iter_tensors, nothing_readable, seeded_order
from ..errors import Cancelled
from ..model.feeds import Feeds
from .imagefile import open_rgb
from ..model.loading import load_proto
from ..model.modelinfo import ModelInfo
from .normcandidates import Candidate, candidates
from .preprocess import PreprocessSpec, model_pixels, normalize
from ..progress import PREPARE, CancelToken, ProgressEvent, ProgressFn, no_progress
from ..evaluate.sessions import make_session
from ..tasks import TASKS, TaskGuess, TaskSettings
from ..tasks.base import Judgement, PlausibilityInput

STAGE = "check"
IMAGES = 32
MIN_IMAGES = 8  # under a time budget, fewer images than this are not worth a verdict
AGREE = 0.95  # candidates whose outputs agree this much form one group
CONFIDENT = 0.95  # share of resamplings in which the best must beat the current
RESAMPLES = 500
BATCH = 16
_PASS_THROUGH = ("Identity", "Flatten", "Reshape", "Squeeze", "Unsqueeze")


class TooSlow(Exception):
    """The check would take longer than its time budget."""


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


def logit_taps(model: onnx.ModelProto) -> dict[str, str]:
    """Output name -> the tensor its final Softmax reads, for outputs that
    end in a Softmax (possibly followed by reshapes): the true logits, which
    the probabilities hide once they saturate."""
    producer = {o: n for n in model.graph.node for o in n.output}
    taps = {}
    for out in model.graph.output:
        node = producer.get(out.name)
        while node is not None and node.op_type in _PASS_THROUGH and node.input:
            node = producer.get(node.input[0])
        if node is not None and node.op_type == "Softmax" and node.input:
            taps[out.name] = node.input[0]
    return taps


def _session(model: Path):
    proto = load_proto(model, load_external=True)
    taps = logit_taps(proto)
    known = {o.name for o in proto.graph.output}
    for t in sorted(set(taps.values()) - known):
        proto.graph.output.append(onnx.ValueInfoProto(name=t))
    session = make_session(proto.SerializeToString())
    return session, taps, [o.name for o in session.get_outputs()]


def _geometry(spec: PreprocessSpec) -> PreprocessSpec:
    """``spec`` without its normalization: decoding and resizing only (RGB or gray)."""
    c = spec.channels
    return replace(spec, color="gray" if c == 1 else "rgb", mean=(0.0,) * c, std=(1.0,) * c)


def _run(session, names: list[str], feeds: Feeds, spec: PreprocessSpec, chunks: list[np.ndarray], batch: int,
         fixed: bool, cancel: CancelToken) -> dict[str, np.ndarray]:
    """The model's outputs for every chunk of pixels (uint8 [k, H, W, C], RGB
    or gray) normalized by ``spec``, concatenated."""
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for chunk in chunks:
        cancel.check()
        k = len(chunk)
        x = normalize(chunk[..., ::-1] if spec.color == "bgr" else chunk, spec)
        if fixed and k < batch:  # a fixed batch size: pad with copies, drop their outputs
            x = np.concatenate([x, np.repeat(x[-1:], batch - k, axis=0)])
        for n, out in zip(names, session.run(names, feeds(x))):
            out = np.asarray(out)
            if fixed and batch == 1 and (out.ndim == 0 or out.shape[0] != 1):
                out = out[None]  # an output without a batch axis
            parts[n].append(out[:k])
    return {n: np.concatenate(v) for n, v in parts.items()}


def _images_in_budget(session, names, feeds, spec, chunk, batch, fixed, cancel, seconds: float) -> int:
    """How many images one candidate can run in ``seconds``, timed on the
    second run of one batch (the first pays the session's warm-up)."""
    for _ in range(2):
        t = time.perf_counter()
        _run(session, names, feeds, spec, [chunk], batch, fixed, cancel)
        took = time.perf_counter() - t
    return int(seconds * len(chunk) / max(took, 1e-9))


def _finite(outputs: dict[str, np.ndarray]) -> bool:
    """Make float outputs finite in place (inputs far too large overflow some
    models to inf or NaN); False when any was not."""
    clean = True
    for n, a in outputs.items():
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            outputs[n] = np.nan_to_num(a, nan=0.0, posinf=1e6, neginf=-1e6)
            clean = False
    return clean


def _labels_array(labels, paths: list[Path]) -> np.ndarray | None:
    if labels is None or not hasattr(labels, "get"):
        return None
    ys = []
    for p in paths:
        y = labels.get(p)
        ys.append(y if isinstance(y, (int, np.integer)) else -1)
    return np.array(ys, np.int64) if any(y >= 0 for y in ys) else None


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


def _message(ranking: list[Scored], kind: str, conf: float | None, n: int, pick: Scored | None) -> str:
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


def check_normalization(
    model: Path,
    info: ModelInfo,
    task: TaskGuess,
    feeds: Feeds,
    spec: PreprocessSpec,
    files: list[Path],
    *,
    settings: TaskSettings | None = None,
    labels=None,
    class_offset: int = 0,
    images: int = IMAGES,
    seed: int = 0,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
    budget_s: float | None = None,
) -> NormCheck:
    """Rank the candidate preprocessings of ``spec`` (resolved for ``info``)
    by how plausible ``model``'s outputs are on up to ``images`` of ``files``.
    Raises DatasetError when no image is readable, or Cancelled. With
    ``budget_s``, a timed first batch decides how many images fit in the
    budget; TooSlow when fewer than MIN_IMAGES do."""
    t0 = time.perf_counter()
    cancel = cancel or CancelToken()
    settings = settings or TaskSettings()
    judge = TASKS[task.kind].plausibility
    notes = []
    gn = info.graph_normalization
    if gn is not None:
        notes.append(f"The model normalizes its input itself: {gn.describe()}. {gn.advice()}")
    if judge is None:
        return NormCheck(task.kind, "", (), "unjudged", None,
                         f"This model's outputs ({task.reason}) have no task-specific reading, so there is no way to tell "
                         "a plausible output from an implausible one: check the preprocessing against the model's documentation.",
                         0, notes=tuple(notes), seconds=time.perf_counter() - t0)
    cands = candidates(spec)
    total = len(cands) + 1
    progress(ProgressEvent(STAGE, 0, total, "reading images"))
    log = ReadLog()
    stream = iter_tensors(seeded_order(files, seed), _geometry(spec), images, log, cancel,
                          loader=lambda p, s: model_pixels(open_rgb(p), s))
    read = list(stream)
    if not read:
        raise nothing_readable(log.skipped, "the image folder(s)", "Add readable JPEG or PNG images.")
    paths, pixels = [p for p, _ in read], [px for _, px in read]
    y = _labels_array(labels, paths)
    session, taps, names = _session(model)
    fixed = info.image_input.fixed_batch
    batch = fixed or BATCH
    chunks = [np.stack(pixels[i:i + batch]) for i in range(0, len(pixels), batch)]
    if budget_s is not None:
        fit = _images_in_budget(session, names, feeds, cands[0].apply(spec), chunks[0], batch, fixed is not None, cancel,
                                budget_s / len(cands))
        if fit < min(MIN_IMAGES, len(paths)):
            raise TooSlow(f"over {budget_s:.0f} s for {len(cands)} candidates")
        if fit < len(paths):
            paths, pixels = paths[:fit], pixels[:fit]
            chunks = [np.stack(pixels[i:i + batch]) for i in range(0, len(pixels), batch)]
            y = y[:fit] if y is not None else None
            notes.append(f"Checked on {fit} images to stay within {budget_s:.0f} s.")
    declared = {o.name for o in info.outputs}
    scored = []
    for i, c in enumerate(cands):
        progress(ProgressEvent(STAGE, i + 1, total, f"running the model with {c.label}"))
        out = _run(session, names, feeds, c.apply(spec), chunks, batch, fixed is not None, cancel)
        finite = _finite(out)
        logits = {o: out[t_] for o, t_ in taps.items()}
        judgement = judge(task, PlausibilityInput({n: out[n] for n in names if n in declared}, logits, settings, y, class_offset))
        if not finite:
            judgement = replace(judgement, words=judgement.words + "; the outputs overflowed (inf or NaN)",
                                evidence={**judgement.evidence, "non_finite_outputs": True})
        scored.append((c, judgement))
    progress(ProgressEvent(STAGE, total, total, "comparing"))
    ranking = rank(scored)
    kind, conf, pick = verdict(ranking, len(paths))
    metric = ranking[0].judgement.metric
    if y is None and labels is not None:
        notes.append("None of the checked images has a class label: the check judged without labels.")
    return NormCheck(task.kind, metric, tuple(ranking), kind, conf, _message(ranking, kind, conf, len(paths), pick),
                     len(paths), tuple(log.skipped), time.perf_counter() - t0, tuple(notes), pick)


# ---------------------------------------------------------------- before every quantization

QUIET_BUDGET_S = 15.0  # the check before a quantization uses fewer images, or none, to stay within this


@dataclass(frozen=True)
class QuietCheck:
    warnings: list[str]
    summary: dict  # the report's "normalization_check"


def quiet_check(job, info: ModelInfo, task: TaskGuess, feeds: Feeds, spec: PreprocessSpec, files: list[Path],
                progress: ProgressFn = no_progress, cancel: CancelToken | None = None) -> QuietCheck:
    """The check on the calibration images before a quantization: a warning
    when the job's preprocessing is clearly worse than another candidate.
    It never stops the run: when it cannot run (too slow, unreadable images,
    a model the task cannot judge), the summary says why."""
    def forward(e: ProgressEvent) -> None:
        progress(ProgressEvent(PREPARE, 0, 3, f"checking the preprocessing against the model: {e.message}"))

    try:
        check = check_normalization(job.model, info, task, feeds, spec, files, settings=job.task, seed=job.calibration.seed,
                                    progress=forward, cancel=cancel, budget_s=QUIET_BUDGET_S)
    except Cancelled:
        raise
    except TooSlow as exc:
        return QuietCheck([], {"verdict": "skipped", "message": f"not run: it would take {exc} (check-norm runs it on demand)"})
    except Exception as exc:  # noqa: BLE001 - a check must never fail the quantization
        return QuietCheck([], {"verdict": "skipped", "message": f"not run: {type(exc).__name__}: {exc}"})
    warnings = []
    if check.verdict == "worse":
        warnings.append(f"preprocessing: {check.message} {check.suggestion_line()}")
    return QuietCheck(warnings, check.to_dict())
