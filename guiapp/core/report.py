"""The run report: one JSON-ready dict, documented key by key in the README."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from .atomic import atomic_write_text


def environment(threads: int) -> dict:
    import numpy
    import onnx
    import onnxruntime

    from .cpu import current_cpu

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


def summary_rows(report: dict) -> list[tuple[str, str, str]]:
    """(what, FP32, INT8) rows for a short table."""
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
    acc = report.get("accuracy")
    if acc:
        n = acc["labeled_images"]
        for k in ("top1", "top5"):
            delta = (acc["int8"][k] - acc["fp32"][k]) * 100
            rows.append(
                (f"Accuracy {k} ({n} images)", f"{acc['fp32'][k] * 100:.1f}%", f"{acc['int8'][k] * 100:.1f}% ({delta:+.1f} points)")
            )
    agree = (report.get("agreement") or {}).get("top1")
    if agree is not None:
        rows.append(("Top-1 agreement with FP32", "", f"{agree * 100:.1f}%"))
    for out in report.get("outputs", []):
        if out.get("sqnr_db") is not None:
            rows.append((f"Output {out['name']}: SQNR / cosine", "", f"{out['sqnr_db']:.1f} dB / {out['cosine']:.4f}"))
    return rows


def latency_line(report: dict) -> str:
    """Where and how the latencies were measured, in one line ("" when not measured)."""
    from .latency import context_line

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
    text = (f"Calibration: {cal['method']} on {cal['images_used']} images ({cal['images_skipped']} unreadable skipped), "
            f"{source}; evaluated on {ev['images_used']} ({ev['source']}).")
    kept = report.get("kept_float") or []
    return text + (f" Kept in float: {', '.join(kept)}." if kept else "")


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
