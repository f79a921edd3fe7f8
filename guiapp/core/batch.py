"""Many jobs (one per model) with one executor: a product line's models
converted in one go, each in a worker of its own.

A failing job never stops the others. Latency is never measured while
other jobs run: the workers skip it, and once every job has ended each
model pair is timed here, alone, and its report completed. The index (JSON
and an HTML table) lists every job with its task, headline number, size,
latency and status.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .atomic import atomic_write_text
from .errors import StudioError, UserError
from .evaluate.latency import context_line, time_models
from .job import Job
from .model.feeds import make_feeds
from .model.modelinfo import inspect_model
from .parallel import Executor, ExecutorSpec, Failed
from .progress import CancelToken
from .context import resolve_spec
from .data.preprocess import load_tensor
from .data.dataset import list_images
from .report.summary import headline_text, write_report
from .run import load_job, quantize

JOB_PATTERNS = ("*.qsjob", "*.json")


@dataclass(frozen=True)
class BatchItem:
    """One job of a batch: where it came from, and the job (None when it could not be read)."""

    source: Path
    job: Job | None
    error: str = ""


def collect_jobs(paths: list[Path]) -> list[BatchItem]:
    """Job files named, and those in folders named (sorted); each read, or its error kept."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted({f for pattern in JOB_PATTERNS for f in p.glob(pattern) if f.is_file()}))
        else:
            files.append(p)
    items = []
    for f in dict.fromkeys(files):
        try:
            items.append(BatchItem(f, load_job(f)))
        except StudioError as exc:
            items.append(BatchItem(f, None, str(exc)))
    return items


def run_one(item: tuple[Job, bool]) -> dict:
    """A worker's whole job, without latency (timed later, alone): its index row."""
    job, overwrite = item
    job = replace(job, evaluation=replace(job.evaluation, latency_runs=0))
    t0 = time.monotonic()
    # The batch already gives every worker its share of the cores: the job's own search
    # trials and evaluation run in this worker, not in a pool of its own.
    result = quantize(job, overwrite=overwrite, executor=ExecutorSpec("serial"))
    return {"report": result.report, "seconds": time.monotonic() - t0}


def run_batch(items: list[BatchItem], executor: Executor, cancel: CancelToken, overwrite: bool = False,
              on_line: Callable[[str], None] = print) -> list[dict]:
    """Run every readable job; returns one index row per item, in order."""
    runnable = [i for i, it in enumerate(items) if it.job is not None]
    rows = [_row(it, "failed", error=it.error) for it in items]
    for i, it in enumerate(items):
        on_line(f"[{i + 1}/{len(items)}] {it.source.name}: " + ("queued" if it.job is not None else f"FAILED: {it.error}"))

    def finished(k: int, outcome) -> None:
        i = runnable[k]
        rows[i] = _row(items[i], outcome)
        on_line(f"[{i + 1}/{len(items)}] {items[i].source.name}: {_said(rows[i])}")

    executor.map(run_one, [(items[i].job, overwrite) for i in runnable], cancel, finished, catch=True)
    on_line("timing each model alone (no other job runs meanwhile)")
    for i in runnable:
        if rows[i]["status"] == "ok":
            cancel.check()
            _time_alone(items[i].job, rows[i])
    return rows


def _row(item: BatchItem, outcome, error: str = "") -> dict:
    job = item.job
    row = {"job": str(item.source), "model": str(job.model) if job else None, "output": str(job.output) if job else None,
           "status": "failed", "error": error, "task": None, "headline": "", "fp32_bytes": None, "int8_bytes": None,
           "latency_ms": None, "latency": None, "seconds": None, "report": str(job.report) if job and job.report else None}
    if isinstance(outcome, Failed):
        row["error"] = outcome.reason if outcome.error is None else str(outcome.error)
    elif isinstance(outcome, dict):
        r = outcome["report"]
        row.update(status="ok", error="", task=r["task"]["kind"], headline=headline_text(r),
                   fp32_bytes=r["fp32"]["size_bytes"], int8_bytes=r["int8"]["size_bytes"], seconds=outcome["seconds"])
        row["_report"] = r
    return row


def _said(row: dict) -> str:
    if row["status"] != "ok":
        return f"FAILED: {row['error']}"
    size = row["int8_bytes"] / row["fp32_bytes"] if row["fp32_bytes"] else 0
    return f"done in {row['seconds']:.0f} s: {row['headline'] or row['task']}; size {size:.2f}x"


def _time_alone(job: Job, row: dict) -> None:
    """Both models on one evaluation image, each alone; the job's report is completed."""
    report = row.pop("_report")
    info = inspect_model(job.model, layout=job.preprocess.layout, size=job.preprocess.size)
    spec = resolve_spec(job.preprocess, info)
    image = next(iter(list_images(job.evaluation.folders or job.calibration.folders, "evaluation")), None)
    if image is None:
        return
    x = load_tensor(image, spec)[None]
    batch = info.image_input.fixed_batch or 1
    feed = make_feeds(info, job.inputs)(np.repeat(x, batch, axis=0))
    latency, context, warnings = time_models({"fp32": job.model, "int8": job.output}, feed, 50, batch=batch)
    report["fp32"]["latency_ms"], report["int8"]["latency_ms"] = latency["fp32"], latency["int8"]
    report["latency"] = context
    report["warnings"].extend(w.to_dict() for w in warnings)
    if job.report is not None:
        write_report(report, job.report)
    row["latency_ms"] = {"fp32": latency["fp32"]["median"], "int8": latency["int8"]["median"]}
    row["latency"] = context_line(context)  # the CPU, threads and load the figures were measured with


def write_index(rows: list[dict], path: Path) -> tuple[Path, Path]:
    """The index as JSON at ``path`` and as an HTML table beside it."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        raise UserError(f"the index {path} does not end in .json.", "Name it like batch-index.json.")
    atomic_write_text(path, json.dumps({"jobs": rows, "ok": sum(r["status"] == "ok" for r in rows), "total": len(rows)},
                                       indent=2) + "\n")
    page = path.with_suffix(".html")
    atomic_write_text(page, index_html(rows))
    return path, page


def index_html(rows: list[dict]) -> str:
    e = html.escape
    head = ("Model", "Task", "FP32 → INT8", "Size", "Latency FP32 / INT8 (ms)", "Status")
    body = []
    for r in rows:
        size = f"{r['int8_bytes'] / 1e6:.2f} MB ({r['int8_bytes'] / r['fp32_bytes']:.2f}x)" if r["int8_bytes"] else "-"
        lat = f"{r['latency_ms']['fp32']:.2f} / {r['latency_ms']['int8']:.2f}" if r["latency_ms"] else "-"
        status = "ok" if r["status"] == "ok" else f"FAILED: {r['error']}"
        cells = (Path(r["model"] or r["job"]).name, r["task"] or "-", r["headline"] or "-", size, lat, status)
        body.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in cells) + "</tr>")
    lines = sorted({r["latency"] for r in rows if r.get("latency")})
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    style = "body{font-family:system-ui,sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:4px 8px}table{border-collapse:collapse}"
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Batch</title><style>{style}</style></head><body>"
            f"<h1>Quantization Studio batch</h1><table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            + "".join(f"<p>{e(line)}</p>" for line in lines) + "</body></html>\n")
