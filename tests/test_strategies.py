"""Calibration strategies and streaming statistics against numpy references."""

import math

import numpy as np
import pytest

from guiapp.core.calibrate.histogram import HALF, TensorStats, TwinStats, derived_extremes
from guiapp.core.calibrate.strategies import StrategySettings, RangeTarget, entropy_threshold, kl_best_bins, mse_range, percentile_range, tensor_range


def heavy_tailed(seed=0, relu=False, shape=(32, 20000)):
    x = np.random.default_rng(seed).standard_t(3, size=shape).astype(np.float32)
    return np.maximum(x, 0) if relu else x


def stats_of(x, batches=1):
    s = TensorStats()
    for part in np.array_split(x, batches):
        s.fold(part)
    return s


# ------------------------------------------------------------ streaming statistics


def test_rebinning_when_the_range_widens_equals_collecting_at_once():
    rng = np.random.default_rng(3)
    parts = [rng.standard_normal((4, 5000)).astype(np.float32) * scale for scale in (0.01, 0.3, 40.0, 2.0, 900.0)]
    streamed = TensorStats()
    for p in parts:
        streamed.fold(p)
    at_once = stats_of(np.concatenate(parts))
    assert streamed.exp == at_once.exp
    np.testing.assert_array_equal(streamed.hist, at_once.hist)
    for method in ("percentile", "entropy", "mse"):
        assert tensor_range(streamed, StrategySettings(method), RangeTarget()) == tensor_range(at_once, StrategySettings(method), RangeTarget())


def test_histogram_counts_every_value_in_the_right_bin():
    x = np.array([[-3.0, -0.5, 0.0, 0.0, 0.25, 2.9, 3.0]], np.float32)
    s = stats_of(x)
    assert s.exp == 2 and s.width == 4 / HALF  # grid [-4, 4]
    assert s.hist.sum() == x.size and s.zeros == 2
    for v in x.ravel():
        assert s.hist[int(np.floor(v / s.width)) + HALF] >= 1
    assert (s.lo, s.hi) == (-3.0, 3.0)


def test_all_zero_then_values():
    s = TensorStats()
    s.fold(np.zeros((2, 10), np.float32))
    s.fold(np.ones((1, 5), np.float32))
    assert s.hist[HALF] == 20 and s.hist.sum() == 25 and s.zeros == 20


def test_nan_and_inf_do_not_poison_the_range():
    s = stats_of(np.array([[1.0, np.nan, -2.0, np.inf]], np.float32))
    assert (s.lo, s.hi) == (-2.0, 1.0)


def reference_hist(x):
    """One histogram of all of ``x`` in float64 on the grid of its max |x|."""
    x = np.asarray(x, np.float64).ravel()
    exp = math.frexp(float(np.abs(x).max()))[1]
    return exp, np.bincount((np.floor(x * 2.0 ** (12 - exp)) + HALF).astype(np.int64), minlength=2 * HALF)


def test_batches_of_many_chunks_widening_inside_a_batch_bin_as_a_float64_reference():
    rng = np.random.default_rng(8)
    small = rng.standard_normal(300_000).astype(np.float32) * 0.01  # over two chunks before the range widens
    wide = rng.standard_t(2, 200_000).astype(np.float32) * 50.0
    edges = np.array([-4.0, -2.0, -0.5, 0.0, 0.0, 2.0 - 2.0**-20, 1.0, -(2.0**-130)], np.float32)  # bin edges, a subnormal
    batches = [np.concatenate([small, wide[:100_000]]), edges, wide[100_000:].reshape(4, -1)]
    s = TensorStats()
    for b in batches:
        s.fold(b)
    x = np.concatenate([b.ravel() for b in batches])
    exp, hist = reference_hist(x)
    assert s.exp == exp and s.count == x.size and s.zeros == int(np.count_nonzero(x == 0))
    np.testing.assert_array_equal(s.hist, hist)


@pytest.mark.parametrize("exp", [3, -40, -100, -120])
def test_values_far_below_the_grid_are_binned_as_floor_would(exp):
    """The compiled binning adds the half-range in float64: a negative value
    more than 2**53 times smaller than the grid then rounds into the zero bin.
    Every such value, either side of the edge, lands where floor puts it."""
    a = 2.0**exp
    near = [-(a * 2.0**-k) for k in (28, 29, 30, 53, 54, 55, 60, 70)] + [a * 2.0**-k for k in (29, 54, 60)]
    x = np.array([0.75 * a, -0.6 * a, -0.0, 0.0, *near, np.nextafter(np.float32(0), np.float32(-1))], np.float32)
    x = x[np.isfinite(x)]
    s = stats_of(x)
    exp_ref, hist = reference_hist(x)
    assert s.exp == exp_ref == exp and s.zeros == int(np.count_nonzero(x == 0))
    np.testing.assert_array_equal(s.hist, hist)
    assert hist[HALF - 1] >= sum(1 for v in near if v < 0 and np.float32(v) != 0)  # the test reaches the edge case


@pytest.mark.parametrize("bounds", [(0.0, math.inf), (0.0, 6.0), (-1.0, 1.0), (-math.inf, 2.0), (0.0, 0.0)],
                         ids=["relu", "relu6", "clip(-1,1)", "clip(max=2)", "clip(0,0)"])
def test_a_twin_gives_both_tensors_as_collecting_each_would(bounds):
    rng = np.random.default_rng(6)
    # all-negative first (the clipped output all zeros), then zeros, a widening range, a range far wider than 6
    parts = [-np.abs(rng.standard_normal((2, 3000))).astype(np.float32), np.zeros((1, 500), np.float32),
             *_parts(rng, (0.3, 4.0, 0.01), -1.0), (rng.standard_normal((3, 70_000)) * 40).astype(np.float32)]
    parts[-1][0, :999] = 0.0
    y, z = TensorStats(), TensorStats()
    direct_y, direct_z = TensorStats(), TensorStats()
    twin = TwinStats(y, bounds)
    for p in parts:
        extremes = twin.fold(p, 0.3)
        z.fold_extremes(*derived_extremes("Clip", [extremes], bounds), 0.3)
        direct_y.fold(p, 0.3)
        direct_z.fold(np.clip(p, *bounds), 0.3)
    twin.finish(z)
    for got, want in ((y, direct_y), (z, direct_z)):
        for f in ("lo", "hi", "ema_lo", "ema_hi", "exp", "count", "zeros", "zeros_pending"):
            assert getattr(got, f) == pytest.approx(getattr(want, f)), f
        np.testing.assert_array_equal(got.hist, want.hist)


# ------------------------------------------------------------ strategies


def test_minmax_is_the_observed_range():
    x = heavy_tailed()
    assert tensor_range(stats_of(x), StrategySettings("minmax"), RangeTarget()) == (float(x.min()), float(x.max()))


@pytest.mark.parametrize("histogram", [True, False], ids=["with histogram", "extremes only"])
def test_ema_minmax_follows_the_per_batch_moving_average(histogram):
    # The pipeline collects ema-minmax without histograms: the moving average
    # must not depend on them.
    x = heavy_tailed(shape=(40, 1000))
    s = TensorStats()
    lo = hi = None
    for part in np.array_split(x, 10):
        s.fold(part, ema_constant=0.1, histogram=histogram)
        blo, bhi = float(part.min()), float(part.max())
        lo, hi = (blo, bhi) if lo is None else (lo + 0.1 * (blo - lo), hi + 0.1 * (bhi - hi))
    got = tensor_range(s, StrategySettings("ema-minmax"), RangeTarget())
    assert got == pytest.approx((lo, hi))
    assert got != (float(x.min()), float(x.max()))


@pytest.mark.parametrize("p", [99.0, 99.9, 99.99])
def test_percentile_matches_numpy_within_a_bin(p):
    x = heavy_tailed()
    s = stats_of(x, batches=4)
    # The inverse of the empirical CDF (no interpolation between samples): the
    # range ends on the edge of the bin holding that sample.
    lo, hi = percentile_range(s, p, symmetric=False)
    assert 0 <= hi - np.percentile(x, p, method="inverted_cdf") <= s.width
    assert 0 <= np.percentile(x, 100 - p, method="inverted_cdf") - lo <= s.width
    _, t = percentile_range(s, p, symmetric=True)
    assert 0 <= t - np.percentile(np.abs(x), p, method="inverted_cdf") <= s.width


def test_heavy_tails_clip_well_inside_the_maximum_for_entropy_and_percentile():
    x = heavy_tailed()
    s = stats_of(x)
    absmax = float(np.abs(x).max())
    assert max(map(abs, tensor_range(s, StrategySettings("minmax"), RangeTarget()))) == absmax
    for method in ("entropy", "percentile"):
        lo, hi = tensor_range(s, StrategySettings(method), RangeTarget())
        assert max(-lo, hi) < 0.5 * absmax, method


def reference_kl_bins(h, nq):
    """TensorRT's KL-divergence search written plainly, one threshold at a time."""
    h = h.astype(np.float64)
    best, best_i = np.inf, len(h)
    for i in range(nq, len(h) + 1):
        p = h[:i].copy()
        p[i - 1] += h[i:].sum()
        step = i // nq
        starts = np.arange(nq) * step  # the last level also takes the remainder
        sums = np.add.reduceat(h[:i], starts)
        counts = np.add.reduceat((h[:i] > 0).astype(float), starts)
        level = np.minimum(np.arange(i) // step, nq - 1)
        q = np.where(h[:i] > 0, sums[level] / np.maximum(counts[level], 1), 0.0)
        p, q = p / p.sum(), q / q.sum()
        m = p > 0
        kl = np.inf if np.any(q[m] == 0) else float(np.sum(p[m] * np.log(p[m] / q[m])))
        if kl < best:
            best, best_i = kl, i
    return best_i


@pytest.mark.parametrize("relu", [False, True])
def test_entropy_matches_the_plain_tensorrt_search(relu):
    s = stats_of(heavy_tailed(seed=5, relu=relu, shape=(8, 20000)))
    h = s.abs_hist().astype(np.float64)
    h[0] -= s.zeros
    h = h[: np.flatnonzero(h)[-1] + 1]
    assert len(h) >= 2048  # the search runs over at least 2048 bins
    nq = 256 if relu else 128
    assert entropy_threshold(s, RangeTarget()) == reference_kl_bins(h, nq) * s.width


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("nq", [128, 256])
def test_kl_search_by_steps_matches_the_plain_search_on_ragged_histograms(seed, nq):
    # Gaps (empty bins, empty levels, empty last bins with mass beyond them),
    # empty leading bins, counts over orders of magnitude, lengths with every
    # remainder: where a level-by-level shortcut would go wrong.
    rng = np.random.default_rng(seed)
    n = int(rng.integers(nq + 1, 5 * nq))
    h = np.floor(rng.pareto(1.5, n) * rng.choice([1, 10, 1000], n))
    h[rng.random(n) < rng.uniform(0.1, 0.7)] = 0
    h[: int(rng.integers(0, nq // 2))] = 0
    h[-1] = max(h[-1], 1)
    assert kl_best_bins(h, nq) == reference_kl_bins(h, nq)


def reference_mse(x, lo, hi, qmin=0, qmax=255):
    """Quantize-dequantize as ONNX Runtime does (uint8, asymmetric), plainly."""
    rmin, rmax = min(lo, 0.0), max(hi, 0.0)
    scale = (rmax - rmin) / (qmax - qmin)
    zp = round(qmin - rmin / scale)
    q = np.clip(np.round(x / scale) + zp, qmin, qmax)
    return float(np.mean((x - (q - zp) * scale) ** 2))


@pytest.mark.parametrize("relu", [False, True])
def test_mse_range_minimizes_the_quantization_error_among_nearby_ranges(relu):
    x = heavy_tailed(seed=9, relu=relu).astype(np.float64)
    s = stats_of(x.astype(np.float32))
    lo, hi = mse_range(s, RangeTarget())
    best = reference_mse(x, lo, hi)
    for f in (0.8, 0.9, 0.95, 1.05, 1.1, 1.25):
        assert best <= reference_mse(x, f * lo, f * hi) * 1.002, f
    assert best < reference_mse(x, float(x.min()), float(x.max()))  # better than the full range
    assert hi < float(x.max())


# ------------------------------------------------------------ exact derivations


def _derive_vs_direct(op, a, b, bounds=None, histograms=True):
    from guiapp.core.calibrate.histogram import derived_extremes, derived_hist

    sa, sb, derived, direct = TensorStats(), TensorStats(), TensorStats(), TensorStats()
    for xa, xb in zip(a, b):
        ea, eb = sa.fold(xa, 0.3), sb.fold(xb, 0.3)
        if op == "Relu":
            out, ext = np.maximum(xa, 0), [ea]
        elif op == "Clip":
            out, ext = np.clip(xa, *bounds), [ea]
        elif op == "Concat":
            out, ext = np.concatenate([xa, xb], axis=1), [ea, eb]
        else:
            out, ext = xa.reshape(-1), [ea]
        direct.fold(out, 0.3)
        derived.fold_extremes(*derived_extremes(op, ext, bounds), 0.3)
    if histograms:
        derived_hist(op, [sa, sb] if op == "Concat" else [sa], derived)
    return derived, direct


def _parts(rng, scales, offset=0.0):
    return [(rng.standard_normal((2, 300)) * s + offset).astype(np.float32) for s in scales]


@pytest.mark.parametrize("op", ["Concat", "Flatten"])
def test_derived_histograms_equal_collecting_the_output(op):
    rng = np.random.default_rng(4)
    # lopsided ranges on purpose: one input mostly negative, one small
    derived, direct = _derive_vs_direct(op, _parts(rng, (0.5, 3.0, 1.0), -4.0), _parts(rng, (9.0, 0.1, 2.0)))
    for field in ("lo", "hi", "ema_lo", "ema_hi", "exp", "count", "zeros"):
        assert getattr(derived, field) == pytest.approx(getattr(direct, field)), field
    np.testing.assert_array_equal(derived.hist, direct.hist)


@pytest.mark.parametrize("op, bounds", [("Relu", None), ("Clip", (0.0, 6.0)), ("Clip", (-1.0, 1.0))])
def test_derived_extremes_equal_collecting_the_output(op, bounds):
    rng = np.random.default_rng(5)
    derived, direct = _derive_vs_direct(op, _parts(rng, (0.5, 3.0, 10.0), -4.0), _parts(rng, (1, 1, 1)), bounds, histograms=False)
    for field in ("lo", "hi", "ema_lo", "ema_hi"):
        assert getattr(derived, field) == pytest.approx(getattr(direct, field)), field


@pytest.mark.parametrize("method", ["entropy", "mse"])  # mse's searches run in threads
def test_equal_statistics_get_their_range_computed_once(monkeypatch, method):
    """A Relu input sharing its output's statistics costs no second
    search, within one call or across calls that share ``known``; each
    tensor gets its own statistics' range."""
    import copy

    from guiapp.core.calibrate import strategies

    a = stats_of(heavy_tailed(1, relu=True))
    twin, other = copy.deepcopy(a), stats_of(heavy_tailed(2))
    calls = []
    real = strategies.tensor_range
    monkeypatch.setattr(strategies, "tensor_range", lambda s, *args: calls.append(s) or real(s, *args))
    settings, target, known = StrategySettings(method), RangeTarget(), {}
    first = strategies.compute_ranges({"z": a, "w": other}, settings, target, known)
    second = strategies.compute_ranges({"y": twin}, settings, target, known)
    assert len(calls) == 2 and second["y"] == first["z"] == real(a, settings, target)
    assert first["w"] == real(other, settings, target) != first["z"]
    twin.hist[HALF + 1] += 1  # any difference is seen
    assert strategies.compute_ranges({"y": twin}, settings, target, known)["y"] == real(twin, settings, target) and len(calls) == 3
