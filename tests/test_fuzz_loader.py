"""Property: a mutated real model either loads or is refused with ModelError.
A few hundred cases here; bench/fuzz_loader.py runs tens of thousands."""

import pytest
from hypothesis import HealthCheck, given, settings

import fuzzing

MODELS: list[bytes] = []


@pytest.fixture(scope="module", autouse=True)
def seed_models(tmp_path_factory):
    MODELS[:] = fuzzing.seeds(tmp_path_factory.mktemp("seeds"))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "m.onnx"


# derandomize: the same cases on every run (CI must not pass or fail by luck); bench/fuzz_loader.py explores.
_settings = settings(max_examples=250, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@_settings
@given(data=fuzzing.byte_mutation(MODELS))
def test_byte_mutations_load_or_are_refused(scratch, data):
    assert fuzzing.load(data, scratch) in (fuzzing.OK, fuzzing.REFUSED)


@_settings
@given(data=fuzzing.proto_mutation(MODELS))
def test_protobuf_mutations_load_or_are_refused(scratch, data):
    assert fuzzing.load(data, scratch) in (fuzzing.OK, fuzzing.REFUSED)
