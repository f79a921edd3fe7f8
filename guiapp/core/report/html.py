"""The report as one self-contained HTML page: tables from the report dict,
charts as embedded PNGs (the GUI renders them; no file references)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from ... import APP_NAME
from ..notes import texts
from ..tasks import TASKS
from ..tasks.pictures import png_bytes
from .summary import headline_text, latency_line, per_layer_cells, summary_rows


def _table(head: tuple[str, ...], rows: list[tuple]) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: dict, charts: dict[str, bytes] | None = None, per_layer_rows: int = 40,
                pictures: list[tuple[str, bytes]] | None = None) -> str:
    """``charts``: title -> PNG bytes; ``pictures``: (caption, PNG bytes) of
    evaluation images with both models' boxes or maps."""
    model = report.get("model", {})
    title = f"{APP_NAME} report: {html.escape(str(model.get('path', '')).split('/')[-1])}"
    parts = [f"<h1>{title}</h1>", f"<p class='meta'>{html.escape(report.get('created', ''))} &middot; output "
             f"<code>{html.escape(str(report.get('output', '')))}</code></p>"]
    task = report.get("task") or {}
    if task:
        parts.append(f"<p><b>Task: {html.escape(task.get('kind', ''))}</b> ({html.escape(task.get('reason', ''))})</p>")
    head = (report.get("fidelity") or {}).get("headline") or {}
    if headline_text(report):
        style = " style='color:#a01010'" if head.get("broken") else ""
        parts.append(f"<h2{style}>{html.escape(headline_text(report))}</h2>")
    parts.append("<h2>FP32 vs INT8</h2>" + _table(("", "FP32", "INT8"), summary_rows(report)))
    if latency_line(report):
        parts.append(f"<p class='meta'>{html.escape(latency_line(report))}</p>")
    for caption, png in pictures or []:
        b64 = base64.b64encode(png).decode("ascii")
        parts.append(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{b64}'><figcaption>{html.escape(caption)}</figcaption></figure>")
    for name, png in (charts or {}).items():
        b64 = base64.b64encode(png).decode("ascii")
        parts.append(f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{b64}'><figcaption>{html.escape(name)}</figcaption></figure>")
    warnings = report.get("warnings") or []
    if warnings:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in texts(warnings)) + "</ul>")
    cal, ev = report.get("calibration", {}), report.get("eval", {})
    parts.append("<h2>Calibration and evaluation</h2>" + _table(
        ("", ""),
        [
            ("Method", cal.get("method", "")),
            ("Calibration images", f"{cal.get('images_used')} used, {cal.get('images_skipped')} unreadable skipped"),
            ("Statistics", "from the cache" if cal.get("cache_used") else f"collected in {cal.get('seconds', 0):.1f} s"),
            ("Evaluation images", f"{ev.get('images_used')} ({ev.get('source', '')})"),
            ("Kept in float", ", ".join(report.get("kept_float") or []) or "none"),
            ("Outputs protected", "; ".join(f"{p['output']}: {', '.join(p['nodes'])} ({p['reason']})"
                                           for p in report.get("protected_outputs") or []) or "none"),
            *([("Target", f"{report['target']['title']}, checked in {report['target']['checked_in']}")] if report.get("target") else []),
        ],
    ))
    rows = report.get("per_layer") or []
    if rows:
        shown = [per_layer_cells(r) for r in rows[:per_layer_rows]]
        more = f"<p>{len(rows) - per_layer_rows} more in the JSON report.</p>" if len(rows) > per_layer_rows else ""
        parts.append("<h2>Per-layer error, worst first</h2>" + _table(("Tensor", "Kind", "Op", "SQNR dB", "Cosine"), shown) + more)
    skipped = (cal.get("skipped_files") or []) + (ev.get("skipped_files") or [])
    if skipped:
        parts.append("<h2>Unreadable images (skipped)</h2>" + _table(("File", "Reason"), [(s["file"], s["reason"]) for s in skipped]))
    parts.append("<h2>Preparation</h2><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in report.get("preparation", [])) + "</ul>")
    parts.append("<h2>Job</h2><pre>" + html.escape(json.dumps(report.get("job", {}), indent=2)) + "</pre>")
    env = report.get("environment", {})
    parts.append("<p class='meta'>" + html.escape(", ".join(f"{k} {v}" for k, v in env.items())) + "</p>")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "th{background:#f3f3f3}figure{display:inline-block;margin:8px}img{max-width:480px}"
        ".meta{color:#666;font-size:90%}pre{background:#f7f7f7;padding:8px;overflow:auto}"
    )
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n"


def sample_pngs(report: dict, samples: list[dict], spec, names: list[str] | None = None,
                limit: int = 6) -> list[tuple[str, bytes]]:
    """(caption, PNG) of the first ``limit`` pictures of a run, drawn by its task."""
    kind = (report.get("task") or {}).get("kind")
    kit = TASKS[kind].pictures if kind in TASKS else None
    section = (report.get("fidelity") or {}).get(kind) or {}
    if kit is None or not kit.usable(section):
        return []
    return [(f"{Path(s['file']).name}: {kit.caption(s)}", png_bytes(kit.draw(s, section, spec, names))) for s in samples[:limit]]
