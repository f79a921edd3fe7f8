"""The streaming calibration engine: bounded memory, cache, per-layer error."""

import tracemalloc

import numpy as np
import onnx
import pytest

from builders import convnet, deepnet, image_folder
from guiapp.core.calibrate import calibcache
from guiapp.core import run as pipeline
from guiapp.core.calibrate.calibration import collect, derivation_plan, tensors_to_calibrate
from guiapp.core.model.feeds import Feeds
from guiapp.core.errors import Cancelled
from guiapp.core.job import CalibrationSettings, EvalSettings, Job, QuantSettings
from guiapp.core.data.preprocess import preset
from guiapp.core.progress import CALIBRATE, CancelToken, no_progress
from guiapp.core.calibrate.strategies import METHODS, RangeTarget, StrategySettings, compute_ranges


def test_memory_stays_flat_as_batches_grow(tmp_path):
    model = onnx.shape_inference.infer_shapes(deepnet(tmp_path / "deep.onnx", depth=30))  # as quant_pre_process leaves it
    assert len(tensors_to_calibrate(model)) >= 60

    def peak_for(n_batches):
        rng = np.random.default_rng(0)
        batches = ((["x"] * 8, rng.standard_normal((8, 3, 16, 16)).astype(np.float32)) for _ in range(n_batches))
        tracemalloc.start()
        collect(model, Feeds("image"), batches, n_batches * 8, no_progress, CancelToken())
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    small, large = peak_for(5), peak_for(60)
    assert large <= small * 1.10 + 256 * 1024, (small, large)


def job_for(tmp_path, model, calib, method="minmax", **quant):
    return Job(
        model=model,
        output=tmp_path / f"{method}.int8.onnx",
        preprocess=preset("imagenet", resize="stretch"),
        calibration=CalibrationSettings(folders=(calib,), max_images=16, batch_size=4, method=method),
        quantization=QuantSettings(**quant),
        evaluation=EvalSettings(latency_runs=3, max_images=8, per_layer_images=4),
        cache=tmp_path / "job.calib.npz",
    )


def test_cache_round_trips_and_serves_every_strategy(tmp_path, model_path, calib_dir):
    first = pipeline.quantize(job_for(tmp_path, model_path, calib_dir, "entropy")).report
    assert first["calibration"]["cache_used"] is False and (tmp_path / "job.calib.npz").is_file()
    (calib_dir / "img_000.png").rename(calib_dir / "moved_away.bak")  # the images are not read again...
    (calib_dir / "moved_away.bak").rename(calib_dir / "img_000.png")  # ...but must be unchanged to match
    for method in METHODS:
        r = pipeline.quantize(job_for(tmp_path, model_path, calib_dir, method, format="qoperator"), overwrite=True).report
        assert r["calibration"]["cache_used"] is True, method
        assert r["calibration"]["images_used"] == 16
        assert r["agreement"]["top1"] is not None


def test_a_minmax_cache_has_no_histograms_for_histogram_methods(tmp_path, model_path, calib_dir):
    assert not pipeline.quantize(job_for(tmp_path, model_path, calib_dir, "minmax")).report["calibration"]["cache_used"]
    ema = pipeline.quantize(job_for(tmp_path, model_path, calib_dir, "ema-minmax")).report
    assert ema["calibration"]["cache_used"]
    mse = pipeline.quantize(job_for(tmp_path, model_path, calib_dir, "mse")).report
    assert not mse["calibration"]["cache_used"]  # calibrated again, with histograms...
    minmax = pipeline.quantize(job_for(tmp_path, model_path, calib_dir, "minmax"), overwrite=True).report
    assert minmax["calibration"]["cache_used"]  # ...which then serve every method


def test_cache_entries_round_trip_exactly(tmp_path, model_path):
    from guiapp.core.calibrate.histogram import TensorStats

    s = TensorStats()
    s.fold(np.random.default_rng(0).standard_normal((4, 100)).astype(np.float32))
    entry = calibcache.CacheEntry({"t": s}, 4, 1.5, ("a.png",), (("b.png", "damaged"),))
    calibcache.save(tmp_path / "c.npz", "key", entry)
    back = calibcache.load(tmp_path / "c.npz", "key")
    assert back.images == 4 and back.used == ("a.png",) and back.skipped == (("b.png", "damaged"),)
    got = back.stats["t"]
    assert (got.lo, got.hi, got.exp, got.zeros, got.count) == (s.lo, s.hi, s.exp, s.zeros, s.count)
    np.testing.assert_array_equal(got.hist, s.hist)
    assert calibcache.load(tmp_path / "c.npz", "other key") is None
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert calibcache.load(tmp_path / "bad.npz", "key") is None


def test_changed_images_invalidate_the_cache(tmp_path, model_path, calib_dir):
    pipeline.quantize(job_for(tmp_path, model_path, calib_dir))
    image_folder(calib_dir, 1, seed=99, prefix="new")
    r = pipeline.quantize(job_for(tmp_path, model_path, calib_dir, "entropy")).report
    assert r["calibration"]["cache_used"] is False


def test_cancel_during_calibration_writes_no_cache_and_no_model(tmp_path, model_path, calib_dir):
    token = CancelToken()

    def progress(e):
        if e.stage == CALIBRATE and e.done >= 4:
            token.cancel()

    with pytest.raises(Cancelled):
        pipeline.quantize(job_for(tmp_path, model_path, calib_dir), progress, token)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib", "net.onnx"]


def test_per_layer_error_lists_activations_and_weights_worst_first(tmp_path, model_path, calib_dir):
    r = pipeline.quantize(job_for(tmp_path, model_path, calib_dir)).report
    rows = r["per_layer"]
    kinds = {row["kind"] for row in rows}
    assert kinds == {"activation", "weight"}
    assert {"name", "op_type", "sqnr_db", "cosine"} <= set(rows[0])
    sqnr = [row["sqnr_db"] for row in rows]
    assert sqnr == sorted(sqnr)
    weights = {row["name"]: row for row in rows if row["kind"] == "weight"}
    assert set(weights) == {"w1", "w2", "wf"} and weights["w1"]["op_type"] == "Conv"
    assert all(row["cosine"] > 0.9 for row in rows)


def test_per_layer_weight_error_matches_a_direct_computation(tmp_path, model_path, calib_dir):
    pipeline.quantize(job_for(tmp_path, model_path, calib_dir, per_channel=False))
    rows = pipeline.quantize(job_for(tmp_path, model_path, calib_dir, per_channel=False), overwrite=True).report["per_layer"]
    w = next(t for t in onnx.load(str(model_path)).graph.initializer if t.name == "w2")
    ref = onnx.numpy_helper.to_array(w).astype(np.float64)
    scale = np.abs(ref).max() / 127.0  # symmetric int8, per tensor
    deq = np.clip(np.round(ref / scale), -127, 127) * scale
    want = 10 * np.log10(np.sum(ref**2) / np.sum((ref - deq) ** 2))
    got = next(r for r in rows if r["name"] == "w2")["sqnr_db"]
    assert got == pytest.approx(want, abs=0.05)


def test_keep_float_requantizes_with_the_worst_layers_in_float(tmp_path, model_path, calib_dir):
    r = pipeline.quantize(job_for(tmp_path, model_path, calib_dir, keep_float=1)).report
    assert len(r["kept_float"]) == 1
    node_name = r["kept_float"][0]
    g = onnx.load(str(tmp_path / "minmax.int8.onnx")).graph
    node = next(n for n in g.node if n.name == node_name)
    assert node.op_type in ("Conv", "Relu", "Gemm", "GlobalAveragePool", "Flatten")
    if node.op_type in ("Conv", "Gemm"):
        w = next(t for t in g.initializer if t.name == node.input[1])
        assert w.data_type == onnx.TensorProto.FLOAT


# ------------------------------------------------------------ ranges against a plain reference


def branchy_net() -> onnx.ModelProto:
    """Every derivation collect() makes: a Conv behind both a Relu (derived
    from it) and a Clip(-1, 1) (read: one twin per tensor), a Clip(0, 6)
    behind a Conv whose range is far wider (its grid is finer than its
    input's), a Concat of derived tensors, a Flatten; shapes inferred."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)

    def conv(name, src, cin, cout, shift):
        w = (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))).astype(np.float32)
        b = (rng.standard_normal(cout) * 0.5 + shift).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, f"{name}_w"), numpy_helper.from_array(b, f"{name}_b")])
        return helper.make_node("Conv", [src, f"{name}_w", f"{name}_b"], [name], pads=[1, 1, 1, 1], name=name)

    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("zero", 0), ("six", 6), ("m1", -1), ("p1", 1))]
    nodes = [
        conv("c1", "image", 3, 8, -0.5),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Clip", ["c1", "m1", "p1"], ["k1"], name="clip1"),
        conv("c2", "r1", 8, 8, -3.0),
        helper.make_node("Mul", ["c2", "six"], ["c2x"], name="widen"),  # a Conv-like range far beyond 6
        helper.make_node("Clip", ["c2x", "zero", "six"], ["r2"], name="relu6"),
        helper.make_node("Concat", ["r1", "r2", "k1"], ["cat"], axis=1, name="cat"),
        conv("c3", "cat", 24, 4, 0.0),
        helper.make_node("Flatten", ["c3"], ["out"], name="flat"),
    ]
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 12, 12])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4 * 144])
    model = helper.make_model(helper.make_graph(nodes, "branchy", [x], [y], inits), opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def reference_stats(model: onnx.ModelProto, batches: list[np.ndarray], ema_constant: float = 0.01) -> dict:
    """The statistics written plainly: every calibrated tensor read from ONNX
    Runtime, all batches kept, one histogram each in float64 on the grid of its
    own max |x| (what collect() computed before derivations and chunking)."""
    import math

    import onnxruntime as ort

    from guiapp.core.calibrate.histogram import HALF, TensorStats

    names = tensors_to_calibrate(model)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    typed = {vi.name: vi for vi in (*m.graph.value_info, *m.graph.output)}
    del m.graph.output[:]
    m.graph.output.extend(typed[n] for n in names if n != "image")
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    seen: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for batch in batches:
        outs = dict(zip([o.name for o in m.graph.output], session.run(None, {"image": batch})), image=batch)
        for n in names:
            seen[n].append(outs[n].astype(np.float64))
    stats = {}
    for n, parts in seen.items():
        s = TensorStats()
        for p in parts:
            s.fold_extremes(float(p.min()), float(p.max()), ema_constant)
        x = np.concatenate([p.ravel() for p in parts])
        s.count, s.zeros = x.size, int(np.count_nonzero(x == 0))
        absmax = float(np.abs(x).max())
        if absmax == 0:
            s.zeros_pending = x.size
        else:
            s.exp = math.frexp(absmax)[1]
            s.hist = np.bincount((np.floor(x * 2.0 ** (12 - s.exp)) + HALF).astype(np.int64), minlength=2 * HALF)
        stats[n] = s
    return stats


@pytest.mark.parametrize("target", [RangeTarget(), RangeTarget("int8", symmetric=True)], ids=["uint8", "int8 symmetric"])
def test_every_method_gives_the_reference_ranges_within_a_bin(target):
    model = branchy_net()
    rng = np.random.default_rng(11)
    batches = [(rng.standard_normal((4, 3, 12, 12)) * s).astype(np.float32) for s in (0.5, 1.0, 3.0, 0.2, 2.0)]
    got = collect(model, Feeds("image"), ((["x"] * 4, b) for b in batches), 20, no_progress, CancelToken())
    ref = reference_stats(model, batches)
    plan = derivation_plan(model, list(ref), True)
    assert {plan[n].op for n in ("r1", "r2")} == {"Relu", "Clip"} and "k1" not in plan  # both twins in use
    assert plan["cat"].op == "Concat" and plan["out"].op == "Flatten"
    assert ref["c2x"].exp - ref["r2"].exp >= 2  # the Clip's grid is finer than its input's
    for method in METHODS:
        mine = compute_ranges(got.stats, StrategySettings(method), target)
        theirs = compute_ranges(ref, StrategySettings(method), target)
        assert mine.keys() == theirs.keys()
        for n, (lo, hi) in theirs.items():
            w = ref[n].width or abs(hi - lo)
            assert abs(mine[n][0] - lo) <= w and abs(mine[n][1] - hi) <= w, (method, n, mine[n], (lo, hi), w)
    for n, s in ref.items():
        g = got.stats[n]
        assert (g.exp, g.count, g.zeros) == (s.exp, s.count, s.zeros), n
        assert np.abs(g.hist - s.hist).sum() <= s.count // 1000, n  # ONNX Runtime's fusions may round a few values apart


def test_collect_reports_each_batch_once_folded_and_stops_at_cancel():
    model = branchy_net()
    rng = np.random.default_rng(3)
    token, events, served = CancelToken(), [], []

    def batches():
        for i in range(6):
            served.append(i)
            yield ["x"] * 4, rng.standard_normal((4, 3, 12, 12)).astype(np.float32)

    def progress(e):
        events.append(e.done)
        if e.done >= 8:
            token.cancel()

    with pytest.raises(Cancelled):
        collect(model, Feeds("image"), batches(), 24, progress, token)
    assert events == [0, 4, 8] and len(served) == 4  # cancel is checked per batch: the next one is not run
    done = []
    collect(model, Feeds("image"), ((["x"] * 4, b) for b in np.ones((3, 4, 3, 12, 12), np.float32)), 12,
            lambda e: done.append(e.done), CancelToken())
    assert done == [0, 4, 8, 12]


@pytest.mark.parametrize("method", METHODS)
def test_an_activation_input_sharing_its_output_statistics_gives_the_same_int8_graph(tmp_path, method):
    """With shared activation ranges the collector reads a Relu/Clip output
    instead of the convolution's output behind it (ONNX Runtime keeps them
    fused), and that input takes the output's statistics: ONNX Runtime's
    quantizer gives it the output's range anyway, so the INT8 graph must be
    byte for byte the one each tensor's own statistics give."""
    from guiapp.core.calibrate.calibration import Folding
    from guiapp.core.calibrate.histogram import SHARED
    from guiapp.core.quantize.prepare import build, prepare

    source = tmp_path / "branchy.onnx"
    onnx.save(branchy_net(), source)
    prepared = prepare(source, 13, tmp_path, no_progress, CancelToken())
    model, names = prepared.model, tensors_to_calibrate(prepared.model)
    shared = derivation_plan(model, names, True, share=True)
    assert shared["c2x"] == type(shared["c2x"])(SHARED, ["r2"]) and "r2" not in shared  # r2 is read, c2x is not
    assert "c1" not in shared  # read by a Relu and a Clip: it keeps its own statistics
    rng = np.random.default_rng(5)
    batches = [(rng.standard_normal((4, 3, 12, 12)) * s).astype(np.float32) for s in (0.5, 1.0, 3.0, 0.2, 2.0)]
    written = []
    for share in (False, True):
        got = collect(model, Feeds("image"), ((["x"] * 4, b) for b in batches), 20, no_progress, CancelToken(),
                      Folding(histograms=method != "minmax", share_activation_ranges=share))
        c2x, r2 = got.stats["c2x"], got.stats["r2"]
        if share:  # the Clip's output, as is
            assert (c2x.lo, c2x.hi, c2x.count) == (r2.lo, r2.hi, r2.count) and np.array_equal(c2x.hist, r2.hist)
        else:  # its own: the Conv's range goes far beyond the Clip's [0, 6]
            assert c2x.lo < 0 and c2x.hi > 6 >= r2.hi
        out = tmp_path / f"{method}.{share}.onnx"
        build(prepared, compute_ranges(got.stats, StrategySettings(method), RangeTarget()), QuantSettings(), out)
        written.append(onnx.load(out))
    own, same = written
    assert own.graph.SerializeToString() == same.graph.SerializeToString()
    scales = {t.name for t in own.graph.initializer if t.name.endswith("_scale")}
    assert {"r2_scale", "c1_scale"} <= scales  # the quantizer folds the Clip into c2 (on r2's range); c1 keeps its own


def test_the_onnx_runtime_target_collects_activation_outputs_and_shares_them(tmp_path, model_path, calib_dir):
    """The app's run takes the faster path: conv1's output (read only by its
    Relu) carries relu1's statistics in the cache, never negative values.
    (The TensorRT target keeps each tensor's own: tests/test_target_tensorrt.py.)"""
    pipeline.quantize(job_for(tmp_path, model_path, calib_dir, "entropy"))
    stats = calibcache.load_unchecked(tmp_path / "job.calib.npz").stats
    c1, r1 = stats["c1"], stats["r1"]
    assert (c1.lo, c1.hi, c1.exp, c1.count, c1.zeros) == (r1.lo, r1.hi, r1.exp, r1.count, r1.zeros) and c1.lo >= 0
    np.testing.assert_array_equal(c1.hist, r1.hist)


def test_an_activation_input_also_read_inside_a_subgraph_keeps_its_own_statistics():
    from onnx import TensorProto, helper

    then = helper.make_graph([helper.make_node("Identity", ["c"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Identity", ["r"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], name="conv"), helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Conv", ["image", "w"], ["c2"], name="conv2"), helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("If", ["flag"], ["out"], then_branch=then, else_branch=other, name="if")]
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 4, 4])
    model = helper.make_model(helper.make_graph(
        nodes, "g", [x, helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None), helper.make_tensor_value_info("r2", TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")]))
    plan = derivation_plan(model, ["image", "c", "r", "c2", "r2"], True, share=True)
    assert "c" not in plan and plan["r"].op == "Relu"  # c is read by the If's branch too: r derives from c
    assert plan["c2"].inputs == ["r2"] and "r2" not in plan
