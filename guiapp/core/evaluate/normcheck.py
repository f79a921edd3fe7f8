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

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..data.dataset import ReadLog, iter_tensors, nothing_readable, seeded_order
from ..data.imagefile import open_rgb
from ..data.normcandidates import candidates
from ..data.preprocess import PreprocessSpec, model_pixels, normalize
from ..errors import Cancelled
from ..model.feeds import Feeds
from ..model.loading import load_proto
from ..model.modelinfo import ModelInfo
from ..notes import Note
from ..progress import PREPARE, CancelToken, ProgressEvent, ProgressFn, no_progress
from ..tasks import TASKS, TaskGuess
from ..tasks.base import PlausibilityInput
from .normranking import NormCheck, message, rank, verdict
from .sessions import make_session

STAGE = "check"
IMAGES = 32
MIN_IMAGES = 8  # under a time budget, fewer images than this are not worth a verdict
BATCH = 16
_PASS_THROUGH = ("Identity", "Flatten", "Reshape", "Squeeze", "Unsqueeze")


class TooSlow(Exception):
    """The check would take longer than its time budget."""


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


@dataclass
class _Model:
    """The model as the check runs it: its session (with the logits behind a
    final Softmax as extra outputs), how it is fed, its batch."""

    session: Any
    taps: dict[str, str]
    names: list[str]
    feeds: Feeds
    batch: int
    fixed: bool

    @classmethod
    def open(cls, model: Path, feeds: Feeds, fixed_batch: int | None) -> "_Model":
        proto = load_proto(model, load_external=True)
        taps = logit_taps(proto)
        known = {o.name for o in proto.graph.output}
        for t in sorted(set(taps.values()) - known):
            proto.graph.output.append(onnx.ValueInfoProto(name=t))
        session = make_session(proto.SerializeToString())
        return cls(session, taps, [o.name for o in session.get_outputs()], feeds, fixed_batch or BATCH, fixed_batch is not None)

    def run(self, spec: PreprocessSpec, chunks: list[np.ndarray], cancel: CancelToken) -> dict[str, np.ndarray]:
        """The outputs for every chunk of pixels (uint8 [k, H, W, C], RGB or
        gray) normalized by ``spec``, concatenated."""
        parts: dict[str, list[np.ndarray]] = {n: [] for n in self.names}
        for chunk in chunks:
            cancel.check()
            k = len(chunk)
            x = normalize(chunk[..., ::-1] if spec.color == "bgr" else chunk, spec)
            if self.fixed and k < self.batch:  # a fixed batch size: pad with copies, drop their outputs
                x = np.concatenate([x, np.repeat(x[-1:], self.batch - k, axis=0)])
            for n, out in zip(self.names, self.session.run(self.names, self.feeds(x))):
                out = np.asarray(out)
                if self.fixed and self.batch == 1 and (out.ndim == 0 or out.shape[0] != 1):
                    out = out[None]  # an output without a batch axis
                parts[n].append(out[:k])
        return {n: np.concatenate(v) for n, v in parts.items()}

    def images_in_budget(self, spec: PreprocessSpec, chunk: np.ndarray, cancel: CancelToken, seconds: float) -> int:
        """How many images one candidate can run in ``seconds``, timed on the
        second run of one batch (the first pays the session's warm-up)."""
        for _ in range(2):
            t = time.perf_counter()
            self.run(spec, [chunk], cancel)
            took = time.perf_counter() - t
        return int(seconds * len(chunk) / max(took, 1e-9))


def _geometry(spec: PreprocessSpec) -> PreprocessSpec:
    """``spec`` without its normalization: decoding and resizing only (RGB or gray)."""
    c = spec.channels
    return replace(spec, color="gray" if c == 1 else "rgb", mean=(0.0,) * c, std=(1.0,) * c)


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


@dataclass(frozen=True)
class CheckInputs:
    """What the check runs: the model, its task (and the task's options), the
    current preprocessing resolved for the model, and the images to use."""

    model: Path
    info: ModelInfo
    task: TaskGuess
    feeds: Feeds
    spec: PreprocessSpec
    files: list[Path]
    options: Any = None  # the task's options (detection's score threshold, ...)
    labels: Any = None
    class_offset: int = 0
    images: int = IMAGES
    seed: int = 0


@dataclass
class _Images:
    paths: list[Path]
    pixels: list[np.ndarray]
    labels: np.ndarray | None
    skipped: list


def _read(inputs: CheckInputs, spec: PreprocessSpec, cancel: CancelToken) -> _Images:
    log = ReadLog()
    stream = iter_tensors(seeded_order(inputs.files, inputs.seed), _geometry(spec), inputs.images, log, cancel,
                          loader=lambda p, s: model_pixels(open_rgb(p), s))
    read = list(stream)
    if not read:
        raise nothing_readable(log.skipped, "the image folder(s)", "Add readable JPEG or PNG images.")
    paths = [p for p, _ in read]
    return _Images(paths, [px for _, px in read], _labels_array(inputs.labels, paths), list(log.skipped))


def _chunks(pixels: list[np.ndarray], batch: int) -> list[np.ndarray]:
    return [np.stack(pixels[i:i + batch]) for i in range(0, len(pixels), batch)]


def check_normalization(inputs: CheckInputs, progress: ProgressFn = no_progress, cancel: CancelToken | None = None,
                        budget_s: float | None = None) -> NormCheck:
    """Rank the candidate preprocessings of ``inputs.spec`` by how plausible
    the model's outputs are on up to ``inputs.images`` of its files. Raises
    DatasetError when no image is readable, or Cancelled. With ``budget_s``, a
    timed first batch decides how many images fit in the budget; TooSlow when
    fewer than MIN_IMAGES do."""
    t0 = time.perf_counter()
    cancel = cancel or CancelToken()
    task, spec, info = inputs.task, inputs.spec, inputs.info
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
    imgs = _read(inputs, spec, cancel)
    model = _Model.open(inputs.model, inputs.feeds, info.image_input.fixed_batch)
    chunks = _chunks(imgs.pixels, model.batch)
    if budget_s is not None:
        fit = model.images_in_budget(cands[0].apply(spec), chunks[0], cancel, budget_s / len(cands))
        if fit < min(MIN_IMAGES, len(imgs.paths)):
            raise TooSlow(f"over {budget_s:.0f} s for {len(cands)} candidates")
        if fit < len(imgs.paths):
            imgs = _Images(imgs.paths[:fit], imgs.pixels[:fit], imgs.labels[:fit] if imgs.labels is not None else None,
                           imgs.skipped)
            chunks = _chunks(imgs.pixels, model.batch)
            notes.append(f"Checked on {fit} images to stay within {budget_s:.0f} s.")
    declared = {o.name for o in info.outputs}
    scored = []
    for i, c in enumerate(cands):
        progress(ProgressEvent(STAGE, i + 1, total, f"running the model with {c.label}"))
        out = model.run(c.apply(spec), chunks, cancel)
        logits = {o: out[t_] for o, t_ in model.taps.items()}
        judgement = judge(task, PlausibilityInput({n: out[n] for n in model.names if n in declared}, logits, inputs.options,
                                                  imgs.labels, inputs.class_offset))
        if not _finite(out):
            judgement = replace(judgement, words=judgement.words + "; the outputs overflowed (inf or NaN)",
                                evidence={**judgement.evidence, "non_finite_outputs": True})
        scored.append((c, judgement))
    progress(ProgressEvent(STAGE, total, total, "comparing"))
    ranking = rank(scored)
    kind, conf, pick = verdict(ranking, len(imgs.paths))
    if imgs.labels is None and inputs.labels is not None:
        notes.append("None of the checked images has a class label: the check judged without labels.")
    return NormCheck(task.kind, ranking[0].judgement.metric, tuple(ranking), kind, conf,
                     message(ranking, kind, conf, len(imgs.paths), pick), len(imgs.paths), tuple(imgs.skipped),
                     time.perf_counter() - t0, tuple(notes), pick)


# ---------------------------------------------------------------- before every quantization

QUIET_BUDGET_S = 15.0  # the check before a quantization uses fewer images, or none, to stay within this


@dataclass(frozen=True)
class QuietCheck:
    warnings: list[Note]
    summary: dict  # the report's "normalization_check"


def quiet_check(inputs: CheckInputs, progress: ProgressFn = no_progress, cancel: CancelToken | None = None) -> QuietCheck:
    """The check on the calibration images before a quantization: a warning
    when the preprocessing is clearly worse than another candidate. It never
    stops the run: when it cannot run (too slow, unreadable images, a model
    the task cannot judge), the summary says why."""
    def forward(e: ProgressEvent) -> None:
        progress(ProgressEvent(PREPARE, 0, 3, f"checking the preprocessing against the model: {e.message}"))

    try:
        check = check_normalization(inputs, progress=forward, cancel=cancel, budget_s=QUIET_BUDGET_S)
    except Cancelled:
        raise
    except TooSlow as exc:
        return QuietCheck([], {"verdict": "skipped", "message": f"not run: it would take {exc} (check-norm runs it on demand)"})
    except Exception as exc:  # noqa: BLE001 - a check must never fail the quantization
        return QuietCheck([], {"verdict": "skipped", "message": f"not run: {type(exc).__name__}: {exc}"})
    warnings = []
    if check.verdict == "worse":
        warnings.append(Note("preprocess.check", f"preprocessing: {check.message} {check.suggestion_line()}"))
    return QuietCheck(warnings, check.to_dict())
