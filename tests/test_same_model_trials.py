"""Two recipes that write the same file (a layer sent to float whose Q/DQ
pairs the quantizer keeps anyway) are scored once: the later trial takes the
earlier one's numbers and says so, one after another and on workers alike.
The builder and the scoring are stand-ins here; what is tested is the
bookkeeping of guiapp.core.tuning.scorer."""

from __future__ import annotations

from pathlib import Path

import pytest

from guiapp.core.job import Recipe
from guiapp.core.progress import CancelToken
from guiapp.core.tuning import scorer as scorer_module
from guiapp.core.tuning.scorer import Scorer
from guiapp.core.tuning.trials import Goal

NO_OP = "Add_3"  # sending it to float changes nothing in the written file


def written(r: Recipe) -> bytes:
    kept = [n for n in r.float_nodes if n != NO_OP]
    return f"{r.method}|{','.join(kept)}".encode()


class Builder:
    notes: list[str] = []

    def build(self, r, out, cancel):
        out.write_bytes(written(r))

    def build_job(self, r, out, cancel):
        def job() -> Path:
            out.write_bytes(written(r))
            return out
        return job

    def adopt(self, job):
        pass


class InProcessPool:
    workers = 2

    def map(self, fn, items, cancel):
        return [fn(item) for item in items]


@pytest.fixture
def scored(monkeypatch):
    """The files scored, in order; a file's metric follows from its bytes."""
    calls: list[bytes] = []

    def score(evalset, path, plan, cancel, progress=None):
        data = Path(path).read_bytes()
        calls.append(data)
        return {"fidelity": {"headline": {"value": 0.5 + len(data) / 1000}}}, object()

    monkeypatch.setattr(scorer_module, "score", score)
    timed = iter(range(1, 1000))  # each timing gives another latency
    monkeypatch.setattr(scorer_module, "latency_ms", lambda session, evalset, fixed: float(next(timed)))
    monkeypatch.setattr(scorer_module, "make_session", lambda path: object())
    monkeypatch.setattr(scorer_module, "save_evalset", lambda evalset, folder: folder)
    monkeypatch.setattr(scorer_module, "load_evalset", lambda folder: None)
    return calls


class Plan:
    fixed_batch = None


RECIPES = [(Recipe("minmax", True), "plain"), (Recipe("minmax", True, float_nodes=("Conv_1",)), "+Conv_1"),
           (Recipe("minmax", True, float_nodes=(NO_OP,)), "+Add_3"),
           (Recipe("minmax", True, float_nodes=("Conv_1", NO_OP)), "+Conv_1 +Add_3")]


def make_scorer(tmp_path, executor=None) -> Scorer:
    return Scorer(Builder(), evalset=[], plan=Plan(), goal=Goal("m", "m", 1.0, 100.0), tmp=tmp_path, fixed=frozenset(),
                  executor=executor)


def test_one_after_another_a_repeated_file_is_not_scored_again(tmp_path, scored):
    ws = make_scorer(tmp_path)
    trials = [ws.run("fallback", r, CancelToken(), note) for r, note in RECIPES]
    assert len(scored) == 2  # the plain file and the one with Conv_1 in float
    assert trials[2].metric == trials[0].metric and trials[2].latency_ms == trials[0].latency_ms
    assert trials[3].metric == trials[1].metric and trials[3].latency_ms == trials[1].latency_ms
    assert trials[2].note.endswith("the same model as trial 1") and trials[3].note.endswith("the same model as trial 2")
    assert "same model" not in trials[1].note


def test_on_workers_the_same_trials_are_recorded_as_one_after_another(tmp_path, scored):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ws = make_scorer(tmp_path / "a")
    serial = [ws.run("fallback", r, CancelToken(), note) for r, note in RECIPES]
    spread = make_scorer(tmp_path / "b", InProcessPool()).run_many("fallback", RECIPES, CancelToken())
    key = lambda t: (t.index, t.recipe, t.metric, t.meets, t.size_bytes, t.note)  # noqa: E731
    assert [key(t) for t in spread] == [key(t) for t in serial]
    assert spread[2].note.endswith("the same model as trial 1")
    assert spread[2].latency_ms == spread[0].latency_ms != spread[1].latency_ms  # not timed again
