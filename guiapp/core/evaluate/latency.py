"""Latency as the deployed model gives it: each model timed alone.

A user times a model in a script of their own: one session, warmed up, run
in a loop. Two sessions in one process do not give that. ONNX Runtime's
worker threads spin for a while after every run (``session.intra_op.
allow_spinning``, on by default), so a session timed right after the other
one ran shares the cores with the other's spinning threads: measured on a
2-core machine, squeezenet1.1 FP32 took 7.6 ms that way and 3.6 ms alone.
The other session merely existing costs nothing (3.55 vs 3.58 ms); its
threads stop spinning within 50 ms of its last run.

So here only one session exists at a time: each round creates a session
for one model, warms it up, times a block of runs and drops it (which joins
its threads) before the next model's turn. Rounds alternate the models, so
drift (frequency, other programs) reaches both; the figures are medians
over all rounds. Every figure comes with the CPU, its INT8 instruction
sets, the thread count, the ONNX Runtime version and the load average.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ..notes import Note
from ..progress import CancelToken
from .cpu import current_cpu
from .sessions import make_session

ROUNDS = 5
HOW = "each model alone (one session at a time), warmed up, rounds alternating the models; medians"


@dataclass(frozen=True)
class Timing:
    """How long each model is timed: ``rounds`` rounds; in each, every model
    gets ``warmup_runs`` untimed runs (and at least ``warmup_s``), then a
    timed block of at least ``runs / rounds`` runs and at least ``block_s``."""

    runs: int = 50
    rounds: int = ROUNDS
    warmup_runs: int = 3
    warmup_s: float = 0.1
    block_s: float = 0.2


def measure_latency(
    models: Mapping[str, Path | bytes],
    feed: dict[str, np.ndarray],
    timing: Timing = Timing(),
    threads: int | None = None,
    cancel: CancelToken | None = None,
    on_step: Callable[[int, int], None] | None = None,
    session_factory: Callable = make_session,
    batch: int = 1,
) -> dict[str, dict]:
    """Latency of each of ``models`` (key -> model file) on ``feed``: in each
    round every model in turn gets a fresh session, the only one alive
    (:class:`Timing`). ``batch`` is the feed's batch size, for the report.
    ``threads`` None keeps ONNX Runtime's default, as a user's script does.
    ``on_step(done, total)`` reports blocks done."""
    rounds = max(1, timing.rounds)
    per_block = max(1, -(-timing.runs // rounds))
    times: dict[str, list[float]] = {k: [] for k in models}
    medians: dict[str, list[float]] = {k: [] for k in models}
    total, done = rounds * len(models), 0
    for _ in range(rounds):
        for key, model in models.items():
            if cancel is not None:
                cancel.check()
            block = _time_alone(session_factory, model, threads, feed, replace(timing, runs=per_block))
            times[key].extend(block)
            medians[key].append(float(np.median(block)))
            done += 1
            if on_step is not None:
                on_step(done, total)
    used = threads or current_cpu().physical_cores
    return {k: latency_summary(v, used, batch, medians[k]) for k, v in times.items()}


def time_models(
    models: Mapping[str, Path | bytes],
    feed: dict[str, np.ndarray],
    runs: int,
    threads: int | None = None,
    cancel: CancelToken | None = None,
    on_step: Callable[[int, int], None] | None = None,
    batch: int = 1,
    session_factory: Callable = make_session,
) -> tuple[dict[str, dict], dict, list[Note]]:
    """:func:`measure_latency` with what the figures depend on: (summaries
    by key, the report's ``latency`` context, warnings)."""
    load, meter = load_average(), OthersMeter()
    meter.start()
    summaries = measure_latency(models, feed, Timing(runs=runs), threads=threads, cancel=cancel, on_step=on_step, batch=batch,
                                session_factory=session_factory)
    context = latency_context(threads, batch, meter.share(), load, round_spread(summaries))
    warnings = [Note(code, w) for code, w in (("latency.busy", busy_warning(context)),
                                              ("latency.unsteady", unsteady_warning(context, summaries))) if w]
    return summaries, context, warnings


def round_spread(summaries: dict[str, dict]) -> float | None:
    """The largest ratio, over the models, of the slowest round's median to
    the fastest's: 1.0 on a steady machine. It also catches interference
    this machine cannot see (a hypervisor sharing the cores with other
    machines, clock changes)."""
    ratios = [max(m) / min(m) for s in summaries.values() if (m := s.get("round_medians")) and min(m) > 0]
    return round(max(ratios), 3) if ratios else None


UNSTEADY_SPREAD = 1.25


def unsteady_warning(ctx: dict, summaries: dict[str, dict]) -> str | None:
    spread = ctx.get("round_spread")
    if spread is None or spread <= UNSTEADY_SPREAD:
        return None
    parts = ", ".join(f"{k.upper()} {min(s['round_medians']):.2f}-{max(s['round_medians']):.2f} ms"
                      for k, s in summaries.items() if s.get("round_medians"))
    return (f"the latency changed by up to {(spread - 1) * 100:.0f}% from one round of timing to the next ({parts}): the "
            "machine was not steady (other programs or virtual machines sharing its cores). Compare figures from a steadier run.")


def _time_alone(factory, model, threads, feed, timing: Timing) -> list[float]:
    """One block of ``timing.runs``: a new session, warm-up, timed runs. The
    session is dropped on return, before any other session runs."""
    session = factory(model, threads)
    try:
        start = time.perf_counter()
        n = 0
        while n < timing.warmup_runs or time.perf_counter() - start < timing.warmup_s:
            session.run(None, feed)
            n += 1
        out: list[float] = []
        start = time.perf_counter()
        while len(out) < timing.runs or time.perf_counter() - start < timing.block_s:
            t = time.perf_counter()
            session.run(None, feed)
            out.append((time.perf_counter() - t) * 1000.0)
        return out
    finally:
        del session  # the last reference: ONNX Runtime joins the session's threads here


def latency_summary(ms: list[float], threads: int, batch: int, round_medians: list[float] | None = None) -> dict:
    a = np.asarray(ms)
    out = {
        "median": float(np.median(a)),
        "p90": float(np.percentile(a, 90)),
        "mean": float(a.mean()),
        "min": float(a.min()),
        "runs": int(a.size),
        "threads": threads,
        "batch": batch,
    }
    if round_medians is not None:
        out["rounds"] = len(round_medians)
        out["round_medians"] = [round(m, 4) for m in round_medians]
    return out


def load_average() -> float | None:
    """The 1-minute load average (None where the system has none). It
    includes this process's own recent work, so it says little about others."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def parse_proc_stat(text: str) -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs from /proc/stat's first line.
    Busy includes steal: time a hypervisor gave to other machines."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            v = [int(x) for x in parts[1:9]] + [0] * max(0, 9 - len(parts))
            user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
            busy = user + nice + system + irq + softirq + steal
            return busy, busy + idle + iowait
    return None


class OthersMeter:
    """How much of the machine other programs used during a measurement:
    all CPUs' busy time (from /proc/stat) minus this process's own CPU time
    (its ONNX Runtime threads included), as a share of the CPUs' time."""

    def __init__(self, read_stat: Callable[[], str | None] | None = None, own_cpu: Callable[[], float] = time.process_time,
                 ticks_per_s: float | None = None) -> None:
        self._read = read_stat or _read_proc_stat
        self._own = own_cpu
        self._hz = ticks_per_s or _ticks_per_second()
        self._start: tuple[tuple[int, int] | None, float] = (None, 0.0)

    def start(self) -> None:
        text = self._read()
        self._start = (parse_proc_stat(text) if text else None, self._own())

    def share(self) -> float | None:
        """Other programs' share of all CPUs since start() (0..1), None if unknown."""
        before, own0 = self._start
        text = self._read()
        after = parse_proc_stat(text) if text else None
        if before is None or after is None or after[1] <= before[1]:
            return None
        busy = (after[0] - before[0]) / self._hz
        total = (after[1] - before[1]) / self._hz
        others = busy - (self._own() - own0)
        return round(min(1.0, max(0.0, others / total)), 3)


def _read_proc_stat() -> str | None:
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            return fh.read(4096)
    except OSError:
        return None


def _ticks_per_second() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):
        return 100.0


def latency_context(
    threads: int | None, batch: int, others_share: float | None, load_before: float | None, spread: float | None = None
) -> dict:
    """What every latency figure depends on, for the report (``latency``)."""
    import onnxruntime

    cpu = current_cpu()
    return {
        "how": HOW,
        "cpu": cpu.model,
        "int8_features": list(cpu.int8_features) if cpu.flags is not None else None,
        "int8_dot_product": cpu.has_int8_dot_product,
        "threads": threads or cpu.physical_cores,
        "batch": batch,
        "onnxruntime": onnxruntime.__version__,
        "others_cpu_share": others_share,
        "load_average": load_before,
        "round_spread": spread,
    }


def context_line(ctx: dict | None) -> str:
    """The one line shown under latency figures."""
    if not ctx:
        return ""
    features = ctx.get("int8_features")
    feats = "instruction sets unknown" if features is None else (", ".join(features) or "no AVX2/VNNI/AMX")
    share = ctx.get("others_cpu_share")
    busy = "" if share is None else f"; other programs used {share * 100:.0f}% of the CPUs meanwhile"
    runtime = ctx.get("runtime") or f"ONNX Runtime {ctx['onnxruntime']}"
    return (f"Latency: each model timed alone, batch {ctx['batch']}, {ctx['threads']} threads, {runtime}, "
            f"on {ctx['cpu']} ({feats}){busy}.")


BUSY_SHARE = 0.2


def busy_warning(ctx: dict) -> str | None:
    """A warning when other programs took a noticeable share of the CPUs while timing."""
    share = ctx.get("others_cpu_share")
    if share is not None and share > BUSY_SHARE:
        return (f"other programs used {share * 100:.0f}% of the CPUs while the latency was measured, so the "
                "latencies are higher than on a quiet machine; measure again when it is idle before comparing.")
    return None
