"""The run report: one JSON-ready dict, documented key by key in the README."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

from ... import __version__
from ..atomic import atomic_write_text
from ..notes import Note
from ..tasks import TASKS


def environment(threads: int) -> dict:
    import numpy
    import onnx
    import onnxruntime

    from ..evaluate.cpu import current_cpu

    cpu = current_cpu()
    return {
        "app_version": __version__,
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": cpu.model,
        "cpu_int8_features": list(cpu.int8_features) if cpu.flags is not None else None,
        "physical_cores": cpu.physical_cores,
        "threads": threads,
    }


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def write_report(report: dict, path: str | os.PathLike) -> None:
    atomic_write_text(Path(path), json.dumps(report, indent=2, default=str) + "\n")


def broken_warning(head: dict) -> list[Note]:
    """The warning a broken headline number deserves (empty when it is fine)."""
    if not head.get("broken"):
        return []
    value = head["value"]
    shown = f"{value:.1f} dB" if head["metric"].endswith("_db") else f"{value * 100:.1f} %"
    limit = head["broken_below"]
    limit_shown = f"{limit:.0f} dB" if head["metric"].endswith("_db") else f"{limit * 100:.0f} %"
    return [Note("evaluate.broken", f"the INT8 model looks broken for its task: {head['label']} is {shown} "
                                    f"(below {limit_shown}). {head['advice']}")]


def headline_text(report: dict) -> str:
    """The task's headline number in a few words (the Results page's title line)."""
    head = (report.get("fidelity") or {}).get("headline")
    if not head or head.get("value") is None:
        return ""
    v = head["value"]
    if head["metric"].endswith("_db"):
        return f"{head['label']}: {v:.1f} dB"
    if head.get("fp32") is not None:
        return f"{head['label']}: FP32 {head['fp32'] * 100:.1f}% → INT8 {v * 100:.1f}% ({(v - head['fp32']) * 100:+.1f} points)"
    text = f"{head['label']}: {v * 100:.1f}%"
    floor = head.get("noise_floor")
    if floor and floor.get("value") is not None:
        text += f" (FP32 against itself under {floor['pixel_levels']:g}-level input noise: {floor['value'] * 100:.1f}%)"
    m = head.get("map50")
    if m and m.get("fp32") is not None:
        text += f"  ·  mAP@0.5 FP32 {m['fp32'] * 100:.1f} → INT8 {m['int8'] * 100:.1f} ({(m['int8'] - m['fp32']) * 100:+.1f} points)"
    return text


def _task_rows(report: dict) -> list[tuple[str, str, str]]:
    """The task's own rows (its module knows its section of the report)."""
    kind = (report.get("task") or {}).get("kind")
    if kind not in TASKS or not report.get("fidelity"):
        return []
    return TASKS[kind].summary_rows(report)


def summary_rows(report: dict) -> list[tuple[str, str, str]]:
    """(what, FP32, INT8) rows for a short table: size, latency, the task's
    numbers, then each output's SQNR (and its worst channel group's)."""
    rows = []
    f, q = report.get("fp32", {}), report.get("int8", {})
    if "size_bytes" in f:
        rows.append(("Size", f"{f['size_bytes'] / 1e6:.2f} MB", f"{q['size_bytes'] / 1e6:.2f} MB ({q['size_bytes'] / f['size_bytes']:.2f}x)"))
    if f.get("latency_ms"):
        lf, lq = f["latency_ms"], q["latency_ms"]
        ratio = lf["median"] / lq["median"]
        speed = f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"
        rows.append(
            (
                "Latency (median / p90)",
                f"{lf['median']:.2f} / {lf['p90']:.2f} ms",
                f"{lq['median']:.2f} / {lq['p90']:.2f} ms ({speed})",
            )
        )
    rows.extend(_task_rows(report))
    for out in report.get("outputs", []):
        if out.get("sqnr_db") is not None:
            rows.append((f"Output {out['name']}: SQNR / cosine", "", f"{out['sqnr_db']:.1f} dB / {out['cosine']:.4f}"))
            w = out.get("worst_group")
            if w and w.get("sqnr_db") is not None:
                rows.append((f"  worst part: {w['group']}", "", f"{w['sqnr_db']:.1f} dB / {w['cosine']:.4f}"))
    return rows


def latency_line(report: dict) -> str:
    """Where and how the latencies were measured, in one line ("" when not measured)."""
    from ..evaluate.latency import context_line

    return context_line(report.get("latency"))


def format_table(rows: list[tuple[str, str, str]]) -> str:
    head = ("", "FP32", "INT8")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), "  ".join("-" * w for w in widths), *map(line, rows)])


def run_summary(report: dict) -> str:
    """How the run calibrated and evaluated, in one sentence (or two)."""
    cal, ev = report["calibration"], report["eval"]
    source = f"statistics from the cache {cal['cache']}" if cal["cache_used"] else f"calibrated in {cal['seconds']:.1f} s"
    # The overlap counts unreadable calibration files too when evaluation
    # draws on the calibration folders; the images calibration used are at most
    # images_used.
    left_out = min(ev.get("excluded_calibration_overlap") or 0, cal["images_used"])
    held_out = f", leaving out {left_out} image{'s' * (left_out != 1)} that calibration used" if left_out else ""
    text = (f"Calibration: {cal['method']} on {cal['images_used']} images ({cal['images_skipped']} unreadable skipped), "
            f"{source}; evaluated on {ev['images_used']} ({ev['source']}){held_out}.")
    kept = report.get("kept_float") or []
    text += f" Kept in float: {', '.join(kept)}." if kept else ""
    target = report.get("target")
    if target:
        text += f" Target {target['title']}: checked in {target['checked_in']}."
    for p in report.get("protected_outputs") or []:
        text += f" Output {p['output']} protected ({len(p['nodes'])} node(s) kept in float: {p['reason']})."
    return text


def per_layer_cells(row: dict) -> tuple[str, str, str, str, str]:
    """One per-layer row as text: tensor, kind, op, SQNR dB, cosine."""
    sqnr, cos = row["sqnr_db"], row["cosine"]
    return (row["name"], row["kind"], row["op_type"], "-" if sqnr is None else f"{sqnr:.1f}", "-" if cos is None else f"{cos:.5f}")


def per_layer_table(rows: list[dict], limit: int = 25) -> str:
    """The per-layer error, worst first, as text."""
    if not rows:
        return "Per-layer error: not measured."
    head = ("layer (tensor)", "kind", "op", "SQNR dB", "cosine")
    body = [per_layer_cells(r) for r in rows[:limit]]
    widths = [min(48, max(len(x[i]) for x in [head, *body])) for i in range(5)]
    line = lambda r: "  ".join(str(c)[:w].ljust(w) if i < 3 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    out = ["Per-layer error, worst first:", line(head), "  ".join("-" * w for w in widths), *map(line, body)]
    if len(rows) > limit:
        out.append(f"... {len(rows) - limit} more in the report (per_layer)")
    return "\n".join(out)
