"""The normalization check on the real models of ../shared/assets, with 32
unlabeled images each: the preprocessing in models/specs.json against the
usual mistakes (bench/normcheck.py prints the scores behind these)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from guiapp.core.data.dataset import list_images
from guiapp.core.model.feeds import make_feeds
from guiapp.core.model.modelinfo import inspect_model
from guiapp.core.data.normcandidates import Candidate
from guiapp.core.evaluate.normcheck import CheckInputs, check_normalization
from guiapp.core.context import resolve_spec
from guiapp.core.data.preprocess import PreprocessSpec
from guiapp.core.tasks import TaskSettings, detect_task

pytestmark = pytest.mark.realmodels

CLASSIFIERS = ("squeezenet1.1", "mobilenetv2_1.0_224", "squeezenet1.0_nhwc")


def spec_of(entry: dict) -> PreprocessSpec:
    pp = entry["preprocess"]
    kw = {"resize": "shorter", "resize_shorter": 256} if pp["resize"].startswith("shorter") else {"resize": "stretch"}
    return PreprocessSpec(mean=tuple(pp["mean_pixel"]), std=tuple(pp["std_pixel"]), color=pp["color"].lower(), **kw)


def mistakes(s: PreprocessSpec) -> dict[str, PreprocessSpec]:
    out = {
        "0..1 scale where 0..255 is expected": replace(s, mean=tuple(v * 255 for v in s.mean), std=tuple(v * 255 for v in s.std)),
        "0..255 where 0..1 is expected": replace(s, mean=tuple(v / 255 for v in s.mean), std=tuple(v / 255 for v in s.std)),
    }
    if s.channels == 3:
        out["channel order swapped"] = replace(s, color="bgr" if s.color == "rgb" else "rgb")
    if any(s.mean):
        out["mean left out"] = replace(s, mean=(0.0,) * s.channels)
    return out


def folder(assets, name):
    return {"mnist": assets / "mnist" / "images", "ultraface_rfb320": assets / "photos"}.get(name, assets / "imagenet" / "images")


def check(assets, name, spec):
    entry = json.loads((assets / "models" / "specs.json").read_text())[name]
    info = inspect_model(assets / entry["file"])
    task = detect_task(info)
    return check_normalization(CheckInputs(assets / entry["file"], info, task, make_feeds(info, {}), resolve_spec(spec, info),
                                           list_images([folder(assets, name)]), TaskSettings().options_for(task.kind)))


_RIGHT: dict = {}


def right_check(assets, name):
    """The check with the specs' setting (the same images as every other run)."""
    if name not in _RIGHT:
        _RIGHT[name] = check(assets, name, right_spec(assets, name))
    return _RIGHT[name]


def right_spec(assets, name):
    return spec_of(json.loads((assets / "models" / "specs.json").read_text())[name])


def is_right(c: Candidate, spec: PreprocessSpec) -> bool:
    return c.same_as(Candidate("", "", spec.mean, spec.std, spec.color))


@pytest.mark.parametrize("name", CLASSIFIERS + ("mnist",))
def test_the_specs_preprocessing_is_in_the_top_group(assets, name):
    c = right_check(assets, name)
    assert c.images == 32 and c.verdict == "ok" and c.current_in_best_group


@pytest.mark.parametrize("name", CLASSIFIERS)
@pytest.mark.parametrize("mistake", ["channel order swapped", "0..1 scale where 0..255 is expected",
                                     "0..255 where 0..1 is expected", "mean left out"])
def test_classifier_mistakes_are_flagged_with_the_right_setting_named(assets, name, mistake):
    right = right_spec(assets, name)
    c = check(assets, name, mistakes(right)[mistake])
    assert c.verdict == "worse", c.message
    # the right setting, or one with its top-1 on >= 95 % of the images
    assert c.suggested.judgement.signature.agreement(right_check(assets, name).current.judgement.signature) >= 0.95
    if mistake != "mean left out":  # the mistake undone gives the specs' values exactly
        assert is_right(c.suggestion, right), c.suggestion


def test_mnist(assets):
    right = right_spec(assets, "mnist")
    wrong = mistakes(right)
    small = check(assets, "mnist", wrong["0..1 scale where 0..255 is expected"])
    assert small.verdict == "worse" and is_right(small.suggestion, right)
    # Raw 0..255 where 0..1 is expected: this network gives the same top-1 on
    # every image (it only scales its logits), so the check rightly sees one group.
    large = check(assets, "mnist", wrong["0..255 where 0..1 is expected"])
    assert large.verdict == "ok"
    right_row = next(s for s in large.ranking if is_right(s.candidate, right))
    assert right_row.group == 1 and right_row.judgement.signature.agreement(large.current.judgement.signature) == 1.0


def test_ultraface(assets):
    right = right_spec(assets, "ultraface_rfb320")
    wrong = mistakes(right)
    # The face detector gives much the same faces under every sane setting:
    # the check does not call its own setting wrong...
    assert check(assets, "ultraface_rfb320", right).verdict in ("ok", "close")
    for mistake in ("channel order swapped", "mean left out"):
        assert check(assets, "ultraface_rfb320", wrong[mistake]).verdict != "worse"
    # ...and flags the scale mistakes, which leave it nothing or isolated single-anchor hits.
    for mistake in ("0..1 scale where 0..255 is expected", "0..255 where 0..1 is expected"):
        c = check(assets, "ultraface_rfb320", wrong[mistake])
        assert c.verdict == "worse" and is_right(c.suggestion, right), c.message
