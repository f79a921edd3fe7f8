"""Search trials written without ONNX Runtime's quantizer (issue 21): a trial
that changes only the strategy of an earlier one patches the graph the
quantizer wrote. Each patched graph must be the very file the quantizer
writes for the same settings: same nodes, every initializer bit-identical,
the same outputs. Trials the quantizer writes (other float layers, weights)
reuse weights it quantized before (quantize/weightmemo.py): they are compared
with its runs without that memo."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from builders import convnet, save
from guiapp.core.calibrate.calibration import calibrate, tensors_to_calibrate
from guiapp.core.context import open_context
from guiapp.core.data.dataset import ReadLog, batches, iter_tensors, list_images
from guiapp.core.data.preprocess import PreprocessSpec
from guiapp.core.demo import demo_folder
from guiapp.core.job import CalibrationSettings, EvalSettings, Job, QuantSettings, Recipe, TuningSettings
from guiapp.core.parallel import ExecutorSpec
from guiapp.core.progress import CancelToken, no_progress
from guiapp.core.quantize import patching
from guiapp.core.quantize.prepare import prepare, quantize_file
from guiapp.core.quantize.protect import find_protections
from guiapp.core.quantize.variants import Variant, VariantBuilder
from guiapp.core.quantize.weightmemo import MEMO
from guiapp.core.resources import resource_path
from guiapp.core.run import load_job, quantize

@contextlib.contextmanager
def rig(job: Job, out: Path, images: int = 16):
    """A run's builder, as a search gets it (histogram statistics, output
    protection), and a few evaluation images as model inputs."""
    job = replace(job, output=out / "unused.onnx", report=None, cache=None,
                  calibration=replace(job.calibration, max_images=images, method="entropy"))
    with open_context(job) as ctx:
        cancel = CancelToken()
        prepared = prepare(job.model, ctx.info.opset, ctx.tmp, no_progress, cancel)
        cal = calibrate(prepared.model, ctx.calibration_inputs(), no_progress, cancel)
        q = job.quantization
        protected = ()
        if q.protect_outputs:
            found = find_protections(prepared.model, {n: (s.lo, s.hi) for n, s in cal.stats.items()})
            protected = tuple(dict.fromkeys(n for p in found for n in p.nodes))
        builder = VariantBuilder(Variant(prepared, cal.stats), replace(q, equalize=False), protected, job.calibration.percentile,
                                 ctx.calibration_inputs(cache_path=None), ctx.fixed_batch, ctx.tmp)
        files = list_images(job.evaluation.folders or job.calibration.folders, "evaluation")[:4]
        inputs = [ctx.feeds(x) for _, x in batches(iter_tensors(files, ctx.spec, 4, ReadLog()), 2)]
        yield builder, inputs, ctx.tmp


def fresh(builder: VariantBuilder, r: Recipe, out: Path) -> Path:
    """What ONNX Runtime's quantizer writes for ``r``, from the same graph and
    ranges, as it is: without the weights remembered from earlier runs."""
    v = builder.variant(r, CancelToken())
    settings = builder.settings_for(r)
    with MEMO.disabled():
        quantize_file(v.prepared.path, builder.final_ranges(v, r, settings), settings, out)
    return out


def assert_same_model(patched: Path, expected: Path, inputs: list[dict]) -> None:
    a, b = onnx.load(str(patched)), onnx.load(str(expected))
    assert [(n.op_type, n.name, list(n.input), list(n.output)) for n in a.graph.node] == \
           [(n.op_type, n.name, list(n.input), list(n.output)) for n in b.graph.node]
    assert [t.name for t in a.graph.initializer] == [t.name for t in b.graph.initializer]
    differ = [x.name for x, y in zip(a.graph.initializer, b.graph.initializer) if x.SerializeToString() != y.SerializeToString()]
    assert not differ, f"initializers not bit-identical: {differ[:10]}"
    assert patched.read_bytes() == expected.read_bytes()
    sa = ort.InferenceSession(str(patched), providers=["CPUExecutionProvider"])
    sb = ort.InferenceSession(str(expected), providers=["CPUExecutionProvider"])
    for feed in inputs:
        for x, y in zip(sa.run(None, feed), sb.run(None, feed)):
            assert np.array_equal(x, y)


def check_trials(builder: VariantBuilder, inputs: list[dict], tmp: Path, recipes: list[tuple[Recipe, bool]]) -> None:
    """Build each recipe in turn (``True``: expected patched) and compare it
    with a fresh quantizer run; a patched model must differ from the model
    it was patched from (else the comparison would prove nothing)."""
    last_by_structure: dict[tuple, Path] = {}
    for i, (r, expect_patched) in enumerate(recipes):
        before = builder.written.patched
        out = tmp / f"trial_{i}.onnx"
        builder.build(r, out, CancelToken())
        assert (builder.written.patched == before + 1) == expect_patched, r.describe()
        assert_same_model(out, fresh(builder, r, tmp / f"fresh_{i}.onnx"), inputs)
        structure = (r.per_channel, r.equalize, r.bias_correction, r.float_nodes)
        if expect_patched:
            assert out.read_bytes() != last_by_structure[structure].read_bytes(), "the strategy changed nothing"
        last_by_structure[structure] = out


def demo_job() -> Job:
    return load_job(demo_folder() / "demo.job.json")


def detector_job() -> Job:
    return load_job(resource_path("detector") / "detector.job.json")


def test_strategy_changes_on_the_demo_equal_the_quantizer(tmp_path):
    with rig(demo_job(), tmp_path) as (builder, inputs, tmp):
        last_conv = [n.name for n in builder.base.prepared.model.graph.node if n.op_type == "Conv"][-1]
        check_trials(builder, inputs, tmp, [
            (Recipe("minmax", True), False),
            (Recipe("entropy", True), True),
            (Recipe("mse", True), True),
            (Recipe("percentile", True), True),
            (Recipe("minmax", False), False),  # per-tensor weights: another structure, written by the quantizer
            (Recipe("entropy", False), True),
            (Recipe("minmax", False, float_nodes=(last_conv,)), False),  # a layer back to float: the quantizer
            (Recipe("percentile", False, float_nodes=(last_conv,)), True),
            (Recipe("minmax", False, True, True), False),  # equalized, bias-corrected: another graph
            (Recipe("ema-minmax", False, True, True), True),
        ])


@pytest.mark.parametrize("quant", [{"symmetric_activations": True}, {"activation_type": "int8"}, {"reduce_range": True},
                                   {"share_concat_ranges": False}], ids=["symmetric", "int8", "reduce_range", "no_concat_sharing"])
def test_other_quantizer_settings_on_the_detector_equal_the_quantizer(tmp_path, quant):
    job = detector_job()
    with rig(replace(job, quantization=replace(job.quantization, **quant)), tmp_path) as (builder, inputs, tmp):
        check_trials(builder, inputs, tmp, [(Recipe("minmax", True), False), (Recipe("percentile", True), True)])


def test_strategy_changes_on_the_detector_equal_the_quantizer(tmp_path):
    """The detector: output protection (its head's tail in float), a
    Softmax (its range fixed to [0, 1] by the quantizer), Concats sharing
    their ranges, Sigmoid and Mul activations, biases quantized to int32."""
    job = detector_job()
    with rig(job, tmp_path) as (builder, inputs, tmp):
        assert builder.protected
        muls = [n.name for n in builder.base.prepared.model.graph.node if n.op_type == "Mul"][:2]
        check_trials(builder, inputs, tmp, [
            (Recipe("minmax", True), False),
            (Recipe("percentile", True), True),
            (Recipe("ema-minmax", True), True),
            (Recipe("minmax", True, float_nodes=tuple(muls)), False),
            (Recipe("percentile", True, float_nodes=tuple(muls)), True),
        ])
    with rig(replace(job, quantization=replace(job.quantization, protect_outputs=False)), tmp_path) as (builder, inputs, tmp):
        check_trials(builder, inputs, tmp, [(Recipe("percentile", False), False), (Recipe("minmax", False), True)])


@pytest.mark.realmodels
def test_strategy_changes_on_squeezenet_equal_the_quantizer(assets, tmp_path):
    images = assets / "imagenet" / "images"
    spec = PreprocessSpec(mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375), resize="shorter", resize_shorter=256)
    job = Job(assets / "models" / "squeezenet1.1.onnx", None, spec, CalibrationSettings((images,)), QuantSettings(),
              EvalSettings((images,)))
    with rig(job, tmp_path) as (builder, inputs, tmp):
        convs = [n.name for n in builder.base.prepared.model.graph.node if n.op_type == "Conv"]
        check_trials(builder, inputs, tmp, [
            (Recipe("minmax", True), False),
            (Recipe("entropy", True), True),
            (Recipe("percentile", True), True),
            (Recipe("minmax", False), False),
            (Recipe("percentile", False), True),
            (Recipe("minmax", True, float_nodes=(convs[0], convs[5])), False),
            (Recipe("percentile", True, float_nodes=(convs[0], convs[5])), True),
        ])


# ---------------------------------------------------------------- when the quantizer must write


def typed_convnet(path: Path, model: onnx.ModelProto | None = None) -> onnx.ModelProto:
    """A small conv net with its intermediate shapes inferred (what calibration lists tensors from), saved to ``path``."""
    model = onnx.shape_inference.infer_shapes(model if model is not None else convnet())
    save(model, path)
    return model


def ranges_for(model: onnx.ModelProto, width: float) -> dict:
    return {n: (-width, width) for n in tensors_to_calibrate(model)}


def patch(written: patching.WrittenGraphs, model: onnx.ModelProto, path: Path, ranges: dict, q: QuantSettings, out: Path) -> bool:
    """A patch given every range (a search gives only those the patch reads)."""
    return written.patch(model, path, frozenset(ranges), ranges, q, out)


def test_a_graph_that_does_not_check_out_is_never_patched(tmp_path):
    """A remembered graph is a base only if rewriting it for its own ranges
    gives it back byte for byte: here one of its scales was tampered with."""
    model = typed_convnet(tmp_path / "net.onnx")
    q = QuantSettings()
    written = patching.WrittenGraphs()
    quantize_file(tmp_path / "net.onnx", ranges_for(model, 1.0), q, tmp_path / "a.onnx")
    written.remember(tmp_path / "net.onnx", ranges_for(model, 1.0), q, tmp_path / "a.onnx")
    assert patch(written, model, tmp_path / "net.onnx", ranges_for(model, 2.0), q, tmp_path / "b.onnx")
    quantize_file(tmp_path / "net.onnx", ranges_for(model, 2.0), q, tmp_path / "c.onnx")
    assert (tmp_path / "b.onnx").read_bytes() == (tmp_path / "c.onnx").read_bytes()

    tampered = onnx.load(str(tmp_path / "a.onnx"))
    scale = next(t for t in tampered.graph.initializer if t.name == "r1_scale")
    scale.CopyFrom(numpy_helper.from_array(np.array(0.5, np.float32), "r1_scale"))
    onnx.save(tampered, str(tmp_path / "t.onnx"))
    written = patching.WrittenGraphs()
    written.remember(tmp_path / "net.onnx", ranges_for(model, 1.0), q, tmp_path / "t.onnx")
    assert not patch(written, model, tmp_path / "net.onnx", ranges_for(model, 2.0), q, tmp_path / "d.onnx")


def test_other_structures_and_formats_are_not_patched(tmp_path):
    model = typed_convnet(tmp_path / "net.onnx")
    written = patching.WrittenGraphs()
    q = QuantSettings()
    quantize_file(tmp_path / "net.onnx", ranges_for(model, 1.0), q, tmp_path / "a.onnx")
    written.remember(tmp_path / "net.onnx", ranges_for(model, 1.0), q, tmp_path / "a.onnx")
    for other in (replace(q, exclude_nodes=("conv2",)), replace(q, per_channel=False), replace(q, format="qoperator")):
        assert not patch(written, model, tmp_path / "net.onnx", ranges_for(model, 2.0), other, tmp_path / "b.onnx")
    fewer = ranges_for(model, 2.0)
    fewer.pop("r1")  # a tensor without a range changes what the quantizer writes
    assert not patch(written, model, tmp_path / "net.onnx", fewer, q, tmp_path / "b.onnx")


def test_a_bias_that_would_move_its_weight_scale_goes_to_the_quantizer(tmp_path):
    """The quantizer raises a layer's weight scale when input scale x weight
    scale is too small for its int32 bias: that changes weights, so such
    trials are not patched (and what is written is still the quantizer's)."""
    model = convnet()
    inits = {t.name: t for t in model.graph.initializer}
    w1 = numpy_helper.to_array(inits["w1"]) * np.float32(1e-6)
    inits["w1"].CopyFrom(numpy_helper.from_array(w1.astype(np.float32), "w1"))
    inits["b1"].CopyFrom(numpy_helper.from_array(np.full(8, 3.0, np.float32), "b1"))
    path = tmp_path / "tiny.onnx"
    model = typed_convnet(path, model)
    q = QuantSettings()
    written = patching.WrittenGraphs()
    wide = ranges_for(model, 100.0)
    quantize_file(path, wide, q, tmp_path / "a.onnx")
    written.remember(path, wide, q, tmp_path / "a.onnx")
    assert patch(written, model, path, ranges_for(model, 50.0), q, tmp_path / "b.onnx")  # no adjustment either way
    narrow = ranges_for(model, 1e-4)
    assert not patch(written, model, path, narrow, q, tmp_path / "c.onnx")  # the quantizer would raise w1's scale
    quantize_file(path, narrow, q, tmp_path / "c.onnx")
    a, c = (onnx.load(str(tmp_path / n)) for n in ("a.onnx", "c.onnx"))
    w_scale = [numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == "w1_scale")) for m in (a, c)]
    assert not np.array_equal(w_scale[0], w_scale[1])  # it did: the weights changed with the input range


# ---------------------------------------------------------------- the search itself


def test_the_search_makes_the_same_trials_with_and_without_patching(tmp_path, monkeypatch):
    job = detector_job()
    job = replace(job, report=None, cache=None, quantization=replace(job.quantization, protect_outputs=False),
                  calibration=replace(job.calibration, max_images=40),
                  evaluation=replace(job.evaluation, max_images=40, latency_runs=3, per_layer_images=2),
                  tuning=TuningSettings(max_drop=0.5, minutes=30))
    real_patch = patching.WrittenGraphs.patch
    patched = []

    def counting(self, *a, **k):
        done = real_patch(self, *a, **k)
        patched.append(done)
        return done

    monkeypatch.setattr(patching.WrittenGraphs, "patch", counting)
    with_patches = quantize(replace(job, output=tmp_path / "a.onnx"), executor=ExecutorSpec("serial")).report
    assert sum(patched) >= 3
    monkeypatch.setattr(patching.WrittenGraphs, "patch", lambda self, *a, **k: False)
    without = quantize(replace(job, output=tmp_path / "b.onnx"), executor=ExecutorSpec("serial")).report

    def trials(report):
        return [{k: v for k, v in t.items() if k not in ("seconds", "latency_ms")} for t in report["tuning"]["trials"]]

    assert trials(with_patches) == trials(without) and len(trials(without)) >= 4
    assert with_patches["tuning"]["chosen"] == without["tuning"]["chosen"]
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
