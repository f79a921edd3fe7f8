"""Step 5: FP32 vs INT8, per-layer error, re-run with the worst layers in float,
and the report as JSON or HTML."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QSpinBox, QSplitter, QTabWidget, QVBoxLayout

from ...core.atomic import atomic_write_text
from ...core.context import resolve_spec
from ...core.errors import Cancelled, StudioError
from ...core.job import QuantOption, Recipe
from ...core.notes import texts
from ...core.report.html import render_html, sample_pngs
from ...core.report.summary import headline_text, latency_line, run_summary, summary_rows, write_report
from ...core.run import quantize_in_process
from ...core.targets.registry import TARGETS
from ...core.tasks.pictures import class_names
from .. import dialogs
from ..charts import ResultCharts
from ..pictures import SamplePictures
from ..tuning_view import ParetoView
from .page import Page
from ..widgets import button, message_label


class ResultsPage(Page):
    def __init__(self, window) -> None:
        super().__init__(
            window,
            "Results",
            "FP32 vs INT8 on held-out images, and the layers that lost the most precision.",
        )
        self.headline = QLabel()
        self.headline.setWordWrap(True)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.charts = ResultCharts()
        self.pictures = SamplePictures(self._render)
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.addWidget(self.charts)
        self.split.addWidget(self.pictures)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 2)
        self.trials = ParetoView(self.pick_trial)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.split, "FP32 vs INT8")
        self.tabs.addTab(self.trials, "Trials")
        self.warnings = message_label("warn")
        self.keep_box = QSpinBox()
        self.keep_box.setRange(1, 50)
        self.keep_box.setValue(3)
        self.keep_box.setToolTip("How many of the worst layers (lowest SQNR) to keep in float32")
        self.rerun_button = button(
            "Re-run with the worst layers in f&loat",
            "Quantize again with that many of the worst layers in float (uses the calibration cache)",
            self.rerun,
        )
        self.rerun_bar = QProgressBar()
        self.rerun_bar.setRange(0, 100)
        self.rerun_bar.hide()
        self.json_button = button("Export &JSON…", "The full report, as guiapp quantize --report writes it", self.export_json)
        self.html_button = button("Export HT&ML…", "A self-contained page with the charts embedded", self.export_html)
        self.folder_button = button("Open output f&older", "Show the INT8 model in the file manager", self.open_folder)
        actions = QHBoxLayout()
        self.keep_label = QLabel("&Keep")
        self.keep_label.setBuddy(self.keep_box)
        actions.addWidget(self.keep_label)
        actions.addWidget(self.keep_box)
        actions.addWidget(self.rerun_button)
        actions.addWidget(self.rerun_bar, 1)
        actions.addStretch(1)
        for b in (self.json_button, self.html_button, self.folder_button):
            actions.addWidget(b)
        lay = QVBoxLayout(self)
        lay.addWidget(self.headline)
        lay.addWidget(self.summary)
        lay.addWidget(self.tabs, 1)
        lay.addWidget(self.warnings)
        lay.addLayout(actions)

    def initializePage(self) -> None:
        self.show_report()

    def show_report(self) -> None:
        r = self.state.report
        if not r:
            return
        self.charts.show_report(r)
        head = (r.get("fidelity") or {}).get("headline") or {}
        broken = bool(head.get("broken"))
        color = "#a01010" if broken else "#1d3d5c"
        self.headline.setStyleSheet(f"font-size: 15px; font-weight: bold; color: {color}")
        text = headline_text(r)
        tuning = r.get("tuning")
        if tuning:
            t = tuning["target"]
            if tuning["met"]:
                text = f"✓ Target met (at least {t['required'] * 100:.1f}% needed). " + text
            else:
                broken = True
                text = (f"Target missed by {tuning['missed_by_points']:.1f} points (at least {t['required'] * 100:.1f}% "
                        "needed); the best model found was written. " + text)
        self.headline.setText(("⚠ INT8 looks broken for this task. " if head.get("broken") else "") + text)
        self.headline.setStyleSheet(f"font-size: 15px; font-weight: bold; color: {'#a01010' if broken else '#1d3d5c'}")
        self.headline.setVisible(bool(text))
        self.tabs.setTabVisible(1, bool(tuning))
        if tuning:
            self.trials.show_trials(tuning)
            self.tabs.setTabText(1, f"Trials ({len(tuning['trials'])})")
        rerun = QuantOption.KEEP_FLOAT in TARGETS[self.state.target.kind].honours and bool(r.get("per_layer"))
        for w in (self.keep_label, self.keep_box, self.rerun_button):
            w.setVisible(rerun)
        rows = summary_rows(r)
        text = "  ·  ".join(f"{what}: FP32 {a} → INT8 {b}" if a else f"{what}: {b}" for what, a, b in rows[:3])
        text += "\n" + "\n".join(filter(None, (latency_line(r), run_summary(r))))
        self.summary.setText(text)
        self._show_pictures(r)
        self.warnings.setText("\n".join("⚠ " + w for w in texts(r.get("warnings", []))))
        self.warnings.setVisible(bool(r.get("warnings")))

    def _show_pictures(self, r: dict) -> None:
        info = self.state.info
        spec = None
        if info is not None:
            try:
                spec = resolve_spec(self.state.preprocess, info)
            except StudioError:
                spec = None
        names = class_names(info.metadata) if info is not None else None
        shown = spec is not None and self.pictures.show_samples(r, self.state.samples, spec, names)
        self.pictures.setVisible(shown)
        if shown:  # the charts keep room for three bars in a row; the pictures get the rest
            width = max(self.split.width(), 900)
            self.split.setSizes([int(width * 0.64), int(width * 0.36)])

    def _render(self, work, on_done) -> None:
        self.runner.start(work, on_done, None, light=True)

    def pick_trial(self, index: int) -> None:
        """Write another trial's model instead of the one the search chose."""
        r = self.state.report
        tuning = (r or {}).get("tuning")
        if not tuning or index == tuning["chosen"] or self.window_.busy:
            return
        trial = next((t for t in tuning["trials"] if t["index"] == index), None)
        if trial is None:
            return
        value = "-" if trial["metric"] is None else f"{trial['metric'] * 100:.1f}%"
        if not dialogs.ask(self, "Write this trial's model?",
                           f"Trial {index} ({trial['method']}, {len(trial['float_nodes'])} layer(s) in float, {value}) "
                           f"will replace {r['output']}. The calibration statistics are reused."):
            return
        job = Recipe.from_dict(trial).applied_to(self.state.to_job())
        self.runner.stop(10)  # a picture being drawn
        self._picked = (tuning, index)
        self.rerun_bar.setValue(0)
        self.rerun_bar.show()
        self.rerun_button.setEnabled(False)
        self.window_.set_busy(True)
        self.runner.start(quantize_in_process(job, overwrite=True), self._rerun_done, self._rerun_failed, self._rerun_progress)

    def rerun(self) -> None:
        if self.window_.busy:
            return
        self.runner.stop(10)  # a picture being drawn
        job = self.state.to_job()  # the re-run's keep_float is not a setting of the wizard's job
        job = replace(job, quantization=replace(job.quantization, keep_float=self.keep_box.value()))
        self.rerun_bar.setValue(0)
        self.rerun_bar.show()
        self.rerun_button.setEnabled(False)
        self.window_.set_busy(True)
        # Replacing the output this run wrote is the point of a re-run.
        self.runner.start(quantize_in_process(job, overwrite=True), self._rerun_done, self._rerun_failed, self._rerun_progress)

    def _rerun_progress(self, event) -> None:
        self.rerun_bar.setValue(int(event.fraction * 100))
        self.rerun_bar.setFormat(f"{event.stage}: {event.message}")

    def _rerun_done(self, result) -> None:
        picked = getattr(self, "_picked", None)
        self._picked = None
        if picked is not None:  # keep the search's trials, with the user's pick as the written one
            tuning, index = picked
            trial = next(t for t in tuning["trials"] if t["index"] == index)
            head = result.report["fidelity"]["headline"]
            met = tuning["target"]["required"] <= (head["value"] or 0) + 1e-12
            result.report["tuning"] = {**tuning, "chosen": index, "picked_by_user": True, "met": met,
                                       "missed_by_points": None if met else (tuning["target"]["required"] - trial["metric"]) * 100}
        self.state.report = result.report
        self.state.samples = result.samples
        self._rerun_end()
        self.show_report()

    def _rerun_failed(self, exc) -> None:
        self._rerun_end()
        if not isinstance(exc, Cancelled):
            dialogs.show_error(
                self, "Re-run failed", dialogs.error_text(exc) + "\n\nThe previous INT8 model is unchanged.",
                dialogs.error_details(exc),
            )

    def _rerun_end(self) -> None:
        self.rerun_bar.hide()
        self.rerun_button.setEnabled(True)
        self.window_.set_busy(False)

    def _report_path(self, suffix: str) -> str:
        out = Path(self.state.report["output"])
        return str(out.with_name(out.name.removesuffix(out.suffix) + suffix))

    def export_json(self) -> None:
        path = dialogs.save_file(self, "Save the report (JSON)", self._report_path(".report.json"), "JSON (*.json)")
        if path:
            self._write(lambda: write_report(self.state.report, path))

    def export_html(self) -> None:
        path = dialogs.save_file(self, "Save the report (HTML)", self._report_path(".report.html"), "HTML (*.html)")
        if path:
            pictures = self._picture_pngs()
            self._write(lambda: atomic_write_text(Path(path), render_html(self.state.report, self.charts.png_bytes(),
                                                                          pictures=pictures)))

    def _picture_pngs(self) -> list:
        info = self.state.info
        if info is None or not self.state.samples:
            return []
        try:
            spec = resolve_spec(self.state.preprocess, info)
            return sample_pngs(self.state.report, self.state.samples, spec, class_names(info.metadata))
        except StudioError:
            return []

    def _write(self, write) -> None:
        try:
            write()
        except StudioError as exc:
            dialogs.show_error(self, "Cannot save", str(exc))

    def open_folder(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(self.state.report["output"]).parent)))
