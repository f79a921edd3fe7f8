"""The normalization check on models whose right preprocessing is known by
construction (tests/colour_model.py), and its parts on synthetic outputs."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import onnx
import pytest

from builders import convnet, image_folder
from colour_model import colour_classifier, colour_images
from guiapp.core.data.dataset import labels_from_subfolders, list_images
from guiapp.core.errors import Cancelled, DatasetError
from guiapp.core.model.feeds import make_feeds
from guiapp.core.model.modelinfo import inspect_model
from guiapp.core.data.normcandidates import Candidate, candidates
from guiapp.core.evaluate.normcheck import CheckInputs, NormCheck, check_normalization, logit_taps, rank, verdict
from guiapp.core.context import resolve_spec
from guiapp.core.data.preprocess import PreprocessSpec, preset
from guiapp.core.progress import CancelToken, no_progress
from guiapp.core.tasks import TaskGuess, TaskSettings, detect_task
from guiapp.core.tasks.base import Judgement, PlausibilityInput, one_score, weighted_mean
from guiapp.core.tasks.classification import TopClasses
from guiapp.core.tasks.classification import plausibility as classification_plausibility
from guiapp.core.tasks.dense import DenseMap, DenseOptions
from guiapp.core.tasks.dense import plausibility as dense_plausibility
from guiapp.core.tasks.detection import DetectionOptions
from guiapp.core.tasks.detection import plausibility as detection_plausibility
from guiapp.core.tasks.detection_layout import DetectionLayout

IMAGENET = preset("imagenet", resize="stretch")
PM1_BGR = PreprocessSpec(mean=(127.5,) * 3, std=(127.5,) * 3, color="bgr", resize="stretch")


def mistakes(right: PreprocessSpec) -> dict[str, PreprocessSpec]:
    other = "bgr" if right.color == "rgb" else "rgb"
    return {
        "channel order swapped": replace(right, color=other),
        "0..1 scale where 0..255 is expected": replace(right, mean=tuple(v * 255 for v in right.mean), std=tuple(v * 255 for v in right.std)),
        "0..255 where 0..1 is expected": replace(right, mean=tuple(v / 255 for v in right.mean), std=tuple(v / 255 for v in right.std)),
        "raw pixels": preset("raw", resize="stretch"),
    }


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    d = tmp_path_factory.mktemp("colours")
    colour_images(d / "images", per_class=6)
    return d


def run(model, spec, folder, progress=no_progress, cancel=None, budget_s=None, **inputs):
    """The check of ``model`` under ``spec`` on ``folder``; ``inputs``: CheckInputs fields (labels, images, ...)."""
    info = inspect_model(model)
    task = detect_task(info)
    check = CheckInputs(model, info, task, make_feeds(info, {}), resolve_spec(spec, info), list_images([folder]),
                        TaskSettings().options_for(task.kind), **inputs)
    return check_normalization(check, progress=progress, cancel=cancel, budget_s=budget_s)


def same(c: Candidate, spec: PreprocessSpec) -> bool:
    return c.same_as(Candidate("", "", spec.mean, spec.std, spec.color))


# ---------------------------------------------------------------- candidates


def test_candidates_are_the_presets_in_both_orders_and_the_usual_mistakes_undone():
    cands = candidates(replace(preset("imagenet"), color="bgr"))
    assert cands[0].current and cands[0].key == "current"
    keys = {c.key for c in cands}
    assert {"unit-rgb", "unit-bgr", "pm1-rgb", "pm1-bgr", "raw-rgb", "raw-bgr", "caffe-bgr", "caffe-rgb", "imagenet-bgr"} <= keys
    # the user's numbers with RGB order back: exactly the imagenet preset, marked as an undo
    undo = next(c for c in cands if c.key == "imagenet-rgb")
    assert undo.undo and same(undo, preset("imagenet"))
    assert next(c for c in cands if c.key == "current-div255").mean == pytest.approx((0.485, 0.456, 0.406), abs=1e-6)
    assert len({(c.color, c.mean, c.std) for c in cands}) == len(cands)  # each normalization once


def test_the_users_preset_is_marked_and_a_gray_model_has_no_channel_order():
    cands = candidates(preset("unit", channels=1))
    assert cands[0].label == "unit (GRAY), your setting" and cands[0].preset == "unit"
    assert {c.color for c in cands} == {"gray"}
    assert not any("order" in c.label for c in cands)
    centred = candidates(PreprocessSpec(mean=(0, 0, 0), std=(58.0, 57.0, 57.0)))
    assert any(c.key == "current-centred" and c.mean == (127.5,) * 3 for c in centred)


# ---------------------------------------------------------------- grouping and verdict


def fake(score: float, classes, gap: float = 0.03, per_image=None) -> Judgement:
    """A judgement whose per-image values are ``per_image`` (score for all by default)."""
    n = len(classes)
    values = np.full(n, score) if per_image is None else np.asarray(per_image, float)

    def score_of(w):
        return weighted_mean(w, values)

    return Judgement(one_score(score_of, n), score_of, "test", {}, "", TopClasses(np.asarray(classes)), clear_gap=gap)


def cand(key, current=False, undo=False):
    return Candidate(key, key, (0.0,) * 3, (1.0,) * 3, "rgb", current=current, undo=undo)


def test_candidates_that_agree_form_one_group_and_the_current_one_there_is_fine():
    base = np.arange(40) % 7
    nearly = base.copy()
    nearly[0] = 6  # 39 of 40 the same: 97.5 % agreement
    other = (base + 1) % 7
    ranking = rank([(cand("mine", current=True), fake(0.5, nearly)), (cand("best"), fake(0.6, base)), (cand("odd"), fake(0.55, other))])
    assert [(s.candidate.key, s.group) for s in ranking] == [("best", 1), ("mine", 1), ("odd", 2)]
    assert verdict(ranking, 40) == ("ok", None, None)


def test_worse_needs_a_clear_gap_and_consistency_over_resamplings():
    a, b = np.zeros(40, int), np.ones(40, int)
    # consistently higher on every image, by 20 %: worse
    r = rank([(cand("mine", current=True), fake(0.5, a)), (cand("best"), fake(0.6, b))])
    kind, conf, pick = verdict(r, 40)
    assert kind == "worse" and conf == 1.0 and pick.candidate.key == "best"
    # higher on average only because of two images: not clearly
    lucky = np.full(40, 0.5)
    lucky[:2] = 1.5
    r = rank([(cand("mine", current=True), fake(0.5, a)), (cand("best"), fake(0, b, per_image=lucky))])
    kind, conf, _ = verdict(r, 40)
    assert kind == "close" and conf < 0.95
    # consistently higher, but by 1 %: not clearly
    r = rank([(cand("mine", current=True), fake(0.5, a)), (cand("best"), fake(0.505, b))])
    assert verdict(r, 40)[0] == "close"


def test_the_suggestion_prefers_undoing_a_usual_mistake_when_it_does_as_well():
    a, b, c = np.zeros(40, int), np.ones(40, int), np.full(40, 2)
    r = rank([(cand("mine", current=True), fake(0.3, a)), (cand("preset"), fake(0.61, b)), (cand("undo", undo=True), fake(0.6, c))])
    assert verdict(r, 40)[2].candidate.key == "undo"
    r = rank([(cand("mine", current=True), fake(0.3, a)), (cand("preset"), fake(0.8, b)), (cand("undo", undo=True), fake(0.6, c))])
    assert verdict(r, 40)[2].candidate.key == "preset"


# ---------------------------------------------------------------- the task scores


def classify(z, labels=None, logits=None):
    return classification_plausibility(TaskGuess("classification", ""), PlausibilityInput(
        {"out": np.asarray(z, np.float64)}, logits or {}, None, labels))


def test_classifier_score_rewards_decided_varied_predictions_and_not_a_collapse():
    rng = np.random.default_rng(0)
    n, k = 32, 50
    decided = rng.normal(0, 1, (n, k))
    decided[np.arange(n), rng.permutation(n) % k] += 8
    collapsed = rng.normal(0, 1, (n, k))
    collapsed[:, 3] += 8  # the same class for every image
    undecided = rng.normal(0, 0.05, (n, k))
    good, same, flat = classify(decided), classify(collapsed), classify(undecided)
    assert good.score > 0.3 and same.score < 0.05 and flat.score < 0.05
    assert same.evidence["distinct_classes"] == 1 and "the same class (3) for all 32 images" in same.words
    # probabilities are read through their logarithm: the same judgement
    e = np.exp(decided - decided.max(1, keepdims=True))
    assert classify(e / e.sum(1, keepdims=True)).score == pytest.approx(good.score, rel=1e-6)
    # with labels the score is top-1 accuracy
    labels = decided.argmax(1).copy()
    labels[:8] = (labels[:8] + 1) % k
    j = classify(decided, labels=labels)
    assert j.metric == "top-1 accuracy" and j.score == pytest.approx(24 / 32)


def test_detector_score_counts_detections_that_neighbouring_anchors_back():
    layout = DetectionLayout("pair", ("scores",), ("boxes",), classes=2, channels_first=False, box_format="xyxy")
    guess = TaskGuess("detection", "", detail=layout)
    a = 40
    boxes = np.tile(np.array([0.1, 0.1, 0.2, 0.2]), (2, a, 1))
    scores = np.zeros((2, a, 2))
    scores[..., 0] = 1.0
    # image 0: one object, five anchors around it agree
    for i in range(5):
        boxes[0, i] = [0.50 + 0.005 * i, 0.50, 0.70 + 0.005 * i, 0.70]
        scores[0, i] = [0.1, 0.9]
    # image 1: one lone anchor far from the others
    boxes[1, 7] = [0.8, 0.8, 0.9, 0.9]
    scores[1, 7] = [0.05, 0.95]
    j = detection_plausibility(guess, PlausibilityInput({"scores": scores, "boxes": boxes}, {}, DetectionOptions()))
    assert j.evidence["detections"] == 2 and j.evidence["backed_detections"] == 1
    assert j.score == pytest.approx(0.5) and "1 of them (50%) backed" in j.words
    only_backed = detection_plausibility(guess, PlausibilityInput({"scores": scores[:1], "boxes": boxes[:1]}, {}, DetectionOptions()))
    assert only_backed.score == 1.0
    assert j.signature.agreement(j.signature) == 1.0


def test_dense_score_rewards_decided_varied_maps():
    rng = np.random.default_rng(1)
    n, h, w = 4, 32, 32
    decided = np.where(rng.random((n, 1, h, w)) < 0.3, 6.0, -6.0)  # logits: some pixels on, most off
    undecided = rng.normal(0, 0.1, (n, 1, h, w))
    everything = np.full((n, 1, h, w), 6.0)
    guess = TaskGuess("dense", "", detail=DenseMap("map"))
    score = lambda m: dense_plausibility(guess, PlausibilityInput({"map": m}, {}, DenseOptions())).score  # noqa: E731
    assert score(decided) > 0.5 > 0.05 > max(score(undecided), score(everything))


# ---------------------------------------------------------------- end to end


@pytest.mark.parametrize("right", [IMAGENET, PM1_BGR], ids=["imagenet-rgb", "pm1-bgr"])
def test_the_setting_the_model_was_built_for_is_in_the_best_group(tmp_path, colours, right):
    model = tmp_path / "m.onnx"
    colour_classifier(model, right)
    check = run(model, right, colours / "images")
    assert check.verdict == "ok" and check.current_in_best_group and check.suggestion is None
    assert check.best.group == 1 and same(check.current.candidate, right)
    assert "is in the best group" in check.message
    assert check.images == 32 and len(check.ranking) >= 10
    d = check.to_dict()
    assert d["current_in_best_group"] is True and d["candidates"][0]["group"] == 1
    assert {"color", "mean", "std", "score", "group"} <= set(d["candidates"][0])


@pytest.mark.parametrize("right", [IMAGENET, PM1_BGR], ids=["imagenet-rgb", "pm1-bgr"])
@pytest.mark.parametrize("mistake", list(mistakes(IMAGENET)))
def test_each_usual_mistake_is_flagged_with_the_right_setting_named(tmp_path, colours, right, mistake):
    model = tmp_path / "m.onnx"
    colour_classifier(model, right)
    check = run(model, mistakes(right)[mistake], colours / "images")
    assert check.verdict == "worse" and check.current_in_best_group is False
    right_row = next(s for s in check.ranking if same(s.candidate, right))
    assert check.suggested.group == right_row.group == 1  # the right setting, or one giving the same results
    if mistake != "raw pixels":  # the user's own values with the mistake undone
        assert same(check.suggestion, right), check.suggestion
    assert check.confidence >= 0.95
    assert "more plausible with" in check.message and check.suggestion_line().startswith("Suggested: ")


def test_a_softmax_output_is_judged_on_its_logits_and_a_fixed_batch_is_padded(tmp_path, colours):
    model = tmp_path / "m.onnx"
    colour_classifier(model, IMAGENET, softmax=True, batch=5)
    assert logit_taps(onnx.load(str(model))) == {"probabilities": "logits"}
    check = run(model, IMAGENET, colours / "images", images=12)  # 12 = 5 + 5 + 2 padded
    assert check.verdict == "ok" and check.images == 12
    assert run(model, replace(IMAGENET, color="bgr"), colours / "images", images=12).verdict == "worse"


def test_labels_make_the_score_accuracy(tmp_path, colours):
    model = tmp_path / "m.onnx"
    colour_classifier(model, IMAGENET)
    files = list_images([colours / "images"])
    labels = labels_from_subfolders(files, [colours / "images"])
    check = run(model, IMAGENET, colours / "images", labels=labels)
    assert check.metric == "top-1 accuracy" and check.current.score == pytest.approx(1.0)
    assert check.verdict == "ok"
    assert run(model, preset("raw", resize="stretch"), colours / "images", labels=labels).verdict == "worse"


def test_progress_names_each_candidate_and_cancel_stops_the_check(tmp_path, colours):
    model = tmp_path / "m.onnx"
    colour_classifier(model, IMAGENET)
    events = []
    check = run(model, IMAGENET, colours / "images", progress=events.append)
    assert events[0].message == "reading images" and events[-1].done == events[-1].total
    assert sum("running the model with" in e.message for e in events) == len(check.ranking)
    token = CancelToken()

    def cancel_on_second(e):
        if e.done == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        run(model, IMAGENET, colours / "images", progress=cancel_on_second, cancel=token)


def test_no_readable_image_and_a_model_without_a_task_reading(tmp_path, colours):
    model = tmp_path / "m.onnx"
    colour_classifier(model, IMAGENET)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="no readable image"):
        run(model, IMAGENET, bad)
    generic = tmp_path / "g.onnx"
    m = convnet(classes=4)
    m.graph.output[0].type.tensor_type.shape.dim.add().dim_value = 3  # [N, 4, 3]: no task reading
    onnx.save(m, str(generic))
    info = inspect_model(generic)
    assert detect_task(info).kind == "generic"
    check = run(generic, IMAGENET, colours / "images")
    assert check.verdict == "unjudged" and check.ranking == () and "no task-specific reading" in check.message
    assert check.current_in_best_group is None and check.suggestion is None


def test_the_check_notes_a_model_that_normalizes_its_input(tmp_path):
    from test_graphnorm import prepend

    model = tmp_path / "n.onnx"
    onnx.save(prepend(convnet(), [("Sub", 127.5, False), ("Div", 127.5, False)]), str(model))
    image_folder(tmp_path / "img", 10)
    check = run(model, IMAGENET, tmp_path / "img")
    assert any("normalizes its input itself" in n and "raw preset" in n for n in check.notes)
    assert isinstance(check, NormCheck) and all(math.isfinite(s.score) for s in check.ranking)


def test_a_time_budget_takes_as_many_images_as_fit(tmp_path, colours, monkeypatch):
    from guiapp.core.evaluate import normcheck

    class Clock:  # every reading one second later: one batch run "takes" 1 s
        t = 0.0

        def perf_counter(self):
            self.t += 1.0
            return self.t

    model = tmp_path / "m.onnx"
    colour_classifier(model, IMAGENET)
    n = len(candidates(resolve_spec(IMAGENET, inspect_model(model))))
    monkeypatch.setattr(normcheck, "time", Clock())
    check = run(model, IMAGENET, colours / "images", budget_s=n * 10 / 16)  # 10 of a 16-image batch per candidate
    assert check.images == 10 and any("Checked on 10 images" in note for note in check.notes)
    with pytest.raises(normcheck.TooSlow):
        run(model, IMAGENET, colours / "images", budget_s=n * 7 / 16)
