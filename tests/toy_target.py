"""A target of the tests' own: ONNX Runtime's QDQ model plus a text file
beside it. It shows what adding a target takes: this module, and one line
in the registry (``TARGETS["toy"] = TARGET``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from guiapp.core.atomic import place_files
from guiapp.core.context import QuantResult, RunContext
from guiapp.core.job import QuantOption
from guiapp.core.notes import Note
from guiapp.core.report.document import base_report
from guiapp.core.report.summary import write_report
from guiapp.core.targets.base import Target
from guiapp.core.targets.ortflow import build_qdq


@dataclass(frozen=True)
class ToyOptions:
    greeting: str = "hello"


def note_path(output: Path) -> Path:
    return output.with_suffix(".toy.txt")


def run(ctx: RunContext) -> QuantResult:
    job = ctx.job
    options = TARGET.options_of(job.target)
    built = build_qdq(ctx)
    text = ctx.tmp / "note.txt"
    head = built.evaluation["fidelity"]["headline"]
    text.write_text(f"{options.greeting}: {head['label']} {head['value']}\n", encoding="utf-8")
    target = {"kind": "toy", "title": TARGET.title, "checked_in": "ONNX Runtime", "greeting": options.greeting}
    report = base_report(ctx.facts(built.model.stat().st_size), built.evaluation, {**built.sections, "target": target},
                         [*ctx.notes, *built.notes, Note("target.toy", "a toy target wrote this")])
    built.cancel.check()
    place_files([(built.model, job.output), (text, note_path(job.output))])
    if job.report is not None:
        write_report(report, job.report)
    return QuantResult(job.output, report, built.evaluation["samples"], tuple(built.eval_files))


TARGET = Target(
    kind="toy", title="Toy runtime", suffix=".onnx", summary="ONNX Runtime's model and a note beside it.", run=run,
    options=ToyOptions, honours=frozenset({QuantOption.PER_CHANNEL, QuantOption.EXCLUDE_NODES}),
    companions=lambda output: [note_path(output)],
)
