"""Latency measurement: the CPU it is reported with, how sessions take turns,
and the report's latency context. No timing assertions: the behaviour is
checked with stand-in sessions and sample /proc texts."""

import numpy as np
import pytest

from guiapp.core.evaluate import latency
from guiapp.core.evaluate.cpu import parse_cpuinfo
from guiapp.core.errors import Cancelled
from guiapp.core.progress import CancelToken

EPYC = """processor	: 0
vendor_id	: AuthenticAMD
model name	: AMD EPYC
physical id	: 0
core id		: 0
flags		: fpu sse sse2 avx avx2 fma avx512f avx512_bf16 avx512_vnni
bogomips	: 5192.27

processor	: 1
vendor_id	: AuthenticAMD
model name	: AMD EPYC
physical id	: 0
core id		: 1
flags		: fpu sse sse2 avx avx2 fma avx512f avx512_bf16 avx512_vnni
"""


def intel_ht(flags: str) -> str:
    """Four logical processors on two hyper-threaded cores."""
    blocks = []
    for p, core in enumerate((0, 1, 0, 1)):
        blocks.append(f"processor\t: {p}\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nphysical id\t: 0\ncore id\t\t: {core}\n"
                      f"flags\t\t: {flags}\n")
    return "\n".join(blocks)


ARM = """processor	: 0
BogoMIPS	: 50.00
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer	: 0x41

processor	: 1
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
"""


def test_cpuinfo_amd_epyc_with_vnni():
    cpu = parse_cpuinfo(EPYC)
    assert cpu.model == "AMD EPYC"
    assert cpu.int8_features == ("AVX2", "AVX512-VNNI")
    assert cpu.physical_cores == 2
    assert cpu.has_int8_dot_product is True


def test_cpuinfo_intel_amx_counts_physical_cores_not_hyperthreads():
    cpu = parse_cpuinfo(intel_ht("avx2 avx512f avx512_vnni avx_vnni amx_tile amx_int8 amx_bf16"))
    assert cpu.int8_features == ("AVX2", "AVX512-VNNI", "AVX-VNNI", "AMX-INT8", "AMX-TILE")
    assert cpu.physical_cores == 2  # ONNX Runtime's default thread count
    assert cpu.model.startswith("Intel(R) Xeon(R)")


def test_cpuinfo_counts_only_the_processors_this_process_may_use():
    text = intel_ht("avx2")
    assert parse_cpuinfo(text, allowed={0, 2}).physical_cores == 1  # both threads of core 0
    assert parse_cpuinfo(text, allowed={0, 1}).physical_cores == 2


def test_cpuinfo_without_vnni_has_no_dot_product():
    cpu = parse_cpuinfo(intel_ht("sse4_2 avx avx2 fma"))
    assert cpu.int8_features == ("AVX2",)
    assert cpu.has_int8_dot_product is False
    old = parse_cpuinfo(intel_ht("sse4_2 avx"))
    assert old.features_text() == "no AVX2/VNNI/AMX"


def test_cpuinfo_arm_features_and_unknown():
    arm = parse_cpuinfo(ARM)
    assert arm.int8_features == ("NEON-DOT",)
    assert arm.physical_cores == 2  # no core ids: one per processor
    unknown = parse_cpuinfo("processor : 0\n")
    assert unknown.flags is None and unknown.int8_features == ()
    assert unknown.has_int8_dot_product is None
    assert unknown.features_text() == "instruction sets unknown"


# ---------------------------------------------------------------- one session at a time


class Recorder:
    """Stand-in sessions that record their lives and their runs."""

    def __init__(self):
        self.alive: set[int] = set()
        self.events: list[tuple] = []
        self.max_alive = 0
        self.made = 0

    def factory(self, model, threads):
        rec = self
        rec.made += 1
        ident = rec.made

        class Session:
            def __init__(self):
                rec.alive.add(ident)
                rec.max_alive = max(rec.max_alive, len(rec.alive))
                rec.events.append(("open", model, ident))

            def run(self, names, feed):
                # Another session alive while this one runs is exactly what
                # inflated the old figures (its threads spin).
                assert rec.alive == {ident}, rec.alive
                rec.events.append(("run", model, ident))
                return [np.zeros(1)]

            def __del__(self):
                rec.alive.discard(ident)
                rec.events.append(("close", model, ident))

        return Session()


def fast(runs: int, rounds: int) -> latency.Timing:
    return latency.Timing(runs, rounds, warmup_runs=2, warmup_s=0.0, block_s=0.0)


def test_only_one_session_exists_while_any_model_runs():
    rec = Recorder()
    out = latency.measure_latency({"fp32": "a.onnx", "int8": "b.onnx"}, {"x": np.zeros((1, 3))}, fast(12, 3),
                                  session_factory=rec.factory)
    assert rec.max_alive == 1
    assert rec.alive == set()  # every session dropped at the end
    assert rec.made == 6  # a fresh session per model per round
    opened = [m for kind, m, _ in rec.events if kind == "open"]
    assert opened == ["a.onnx", "b.onnx"] * 3  # rounds alternate the models
    # Each session's warm-up and timed runs come between its open and its close.
    for kind, model, ident in rec.events:
        if kind == "run":
            assert ("open", model, ident) in rec.events
    assert out["fp32"]["runs"] == 12 and out["int8"]["runs"] == 12  # 3 rounds x 4 timed runs
    assert out["fp32"]["rounds"] == 3 and len(out["fp32"]["round_medians"]) == 3
    runs_per_session = [sum(1 for k, _, i in rec.events if k == "run" and i == ident) for ident in range(1, 7)]
    assert runs_per_session == [2 + 4] * 6  # warm-up, then the timed block


def test_summary_keys_stay_what_other_code_reads():
    rec = Recorder()
    out = latency.measure_latency({"fp32": "a", "int8": "b"}, {"x": np.zeros((4, 3))}, fast(5, 5), threads=3,
                                  session_factory=rec.factory, batch=4)
    for key in ("median", "p90", "mean", "min", "runs", "threads", "batch"):
        assert key in out["fp32"] and key in out["int8"]
    assert out["int8"]["threads"] == 3 and out["int8"]["batch"] == 4


def test_cancel_stops_between_blocks_and_leaves_no_session():
    rec = Recorder()
    token = CancelToken()
    steps = []

    def on_step(done, total):
        steps.append((done, total))
        if done == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        latency.measure_latency({"fp32": "a", "int8": "b"}, {"x": np.zeros((1,))}, fast(4, 4), cancel=token,
                                on_step=on_step, session_factory=rec.factory)
    assert steps == [(1, 8), (2, 8), (3, 8)]
    assert rec.alive == set()


def test_a_failing_session_is_still_dropped():
    rec = Recorder()

    def broken(model, threads):
        s = rec.factory(model, threads)
        s.run = lambda *a: (_ for _ in ()).throw(RuntimeError("kernel failed"))
        return s

    with pytest.raises(RuntimeError):
        latency.measure_latency({"fp32": "a"}, {"x": np.zeros((1,))}, fast(1, 1), session_factory=broken)
    assert rec.alive == set()


# ---------------------------------------------------------------- the machine meanwhile


def test_proc_stat_and_the_share_other_programs_used():
    stat = iter([
        "cpu  1000 0 500 8000 100 0 0 0 0 0\ncpu0 1 2 3\n",
        # +300 busy ticks (+100 of them steal), +100 idle: 400 ticks = 4 s of CPU time
        "cpu  1150 0 550 8100 100 0 0 100 0 0\ncpu0 1 2 3\n",
    ])
    own = iter([10.0, 11.0])  # this process used 1 s of those 3 busy seconds
    meter = latency.OthersMeter(read_stat=lambda: next(stat), own_cpu=lambda: next(own), ticks_per_s=100)
    meter.start()
    assert meter.share() == pytest.approx(0.5)  # (3 s busy - 1 s ours) / 4 s
    assert latency.parse_proc_stat("intr 1 2 3") is None
    unreadable = latency.OthersMeter(read_stat=lambda: None)
    unreadable.start()
    assert unreadable.share() is None


def context(**kw):
    base = {"how": latency.HOW, "cpu": "AMD EPYC", "int8_features": ["AVX2", "AVX512-VNNI"], "int8_dot_product": True,
            "threads": 2, "batch": 1, "onnxruntime": "1.32.0", "others_cpu_share": 0.03, "load_average": 0.2}
    return {**base, **kw}


def test_context_line_names_cpu_features_threads_and_runtime():
    line = latency.context_line(context())
    for part in ("AMD EPYC", "AVX2, AVX512-VNNI", "2 threads", "ONNX Runtime 1.32.0", "alone", "batch 1", "3%"):
        assert part in line
    assert "instruction sets unknown" in latency.context_line(context(int8_features=None))
    assert latency.context_line(None) == ""


def test_busy_machine_is_a_warning():
    assert latency.busy_warning(context(others_cpu_share=0.05)) is None
    assert latency.busy_warning(context(others_cpu_share=None)) is None
    text = latency.busy_warning(context(others_cpu_share=0.6))
    assert "60%" in text and "idle" in text


def test_real_sessions_report_with_context(model_path):
    import onnxruntime as ort

    i = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"]).get_inputs()[0]
    feed = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)}
    summaries, ctx, warnings = latency.time_models({"fp32": model_path, "int8": model_path}, feed, runs=4)
    assert summaries["fp32"]["runs"] >= 4 and summaries["fp32"]["median"] > 0
    assert ctx["onnxruntime"] == ort.__version__ and ctx["cpu"] and ctx["threads"] >= 1
    assert all(w.code in ("latency.busy", "latency.unsteady") for w in warnings)


def test_rounds_that_disagree_are_a_warning():
    steady = {"fp32": {"round_medians": [3.5, 3.6, 3.55]}, "int8": {"round_medians": [1.4, 1.42, 1.41]}}
    assert latency.round_spread(steady) == pytest.approx(3.6 / 3.5, abs=1e-3)
    assert latency.unsteady_warning(context(round_spread=latency.round_spread(steady)), steady) is None
    shaken = {"fp32": {"round_medians": [3.5, 5.3, 3.6]}, "int8": {"round_medians": [1.4, 1.41, 1.42]}}
    spread = latency.round_spread(shaken)
    assert spread == pytest.approx(5.3 / 3.5, abs=1e-3)
    text = latency.unsteady_warning(context(round_spread=spread), shaken)
    assert "51%" in text and "FP32 3.50-5.30 ms" in text
    assert latency.round_spread({"fp32": {}}) is None
