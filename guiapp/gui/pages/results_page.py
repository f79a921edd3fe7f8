"""Step 5: FP32 vs INT8, per-layer error, re-run with the worst layers in float,
and the report as JSON or HTML."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QSpinBox, QVBoxLayout

from ...core.atomic import atomic_write_text
from ...core.errors import Cancelled, StudioError
from ...core.pipeline import quantize
from ...core.report import latency_line, run_summary, summary_rows, write_report
from ...core.report_html import render_html
from .. import dialogs
from ..charts import ResultCharts
from .page import Page
from ..widgets import button, message_label


class ResultsPage(Page):
    def __init__(self, window) -> None:
        super().__init__(
            window,
            "Results",
            "FP32 vs INT8 on held-out images. Red bars are layers that lost the most precision.",
        )
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.charts = ResultCharts()
        self.warnings = message_label("warn")
        self.keep_box = QSpinBox()
        self.keep_box.setRange(1, 50)
        self.keep_box.setValue(3)
        self.keep_box.setToolTip("How many of the worst layers (lowest SQNR) to keep in float32")
        self.rerun_button = button(
            "Re-run with the worst layers in &float",
            "Quantize again with that many of the worst layers in float (uses the calibration cache)",
            self.rerun,
        )
        self.rerun_bar = QProgressBar()
        self.rerun_bar.setRange(0, 100)
        self.rerun_bar.hide()
        self.json_button = button("Export &JSON…", "The full report, as guiapp quantize --report writes it", self.export_json)
        self.html_button = button("Export &HTML…", "A self-contained page with the charts embedded", self.export_html)
        self.folder_button = button("Open output &folder", "Show the INT8 model in the file manager", self.open_folder)
        actions = QHBoxLayout()
        actions.addWidget(QLabel("Keep"))
        actions.addWidget(self.keep_box)
        actions.addWidget(self.rerun_button)
        actions.addWidget(self.rerun_bar, 1)
        actions.addStretch(1)
        for b in (self.json_button, self.html_button, self.folder_button):
            actions.addWidget(b)
        lay = QVBoxLayout(self)
        lay.addWidget(self.summary)
        lay.addWidget(self.charts, 1)
        lay.addWidget(self.warnings)
        lay.addLayout(actions)

    def initializePage(self) -> None:
        self.show_report()

    def show_report(self) -> None:
        r = self.state.report
        if not r:
            return
        self.charts.show_report(r)
        rows = summary_rows(r)
        text = "  ·  ".join(f"{what}: FP32 {a} → INT8 {b}" if a else f"{what}: {b}" for what, a, b in rows[:4])
        text += "\n" + "\n".join(filter(None, (latency_line(r), run_summary(r))))
        self.summary.setText(text)
        self.warnings.setText("\n".join("⚠ " + w for w in r.get("warnings", [])))
        self.warnings.setVisible(bool(r.get("warnings")))

    def rerun(self) -> None:
        if self.runner.busy:
            return
        job = self.state.to_job()  # the re-run's keep_float is not a setting of the wizard's job
        job = replace(job, quantization=replace(job.quantization, keep_float=self.keep_box.value()))
        self.rerun_bar.setValue(0)
        self.rerun_bar.show()
        self.rerun_button.setEnabled(False)
        self.window_.set_busy(True)
        # Replacing the output this run wrote is the point of a re-run.
        self.runner.start(lambda p, c: quantize(job, p, c, overwrite=True), self._rerun_done, self._rerun_failed, self._rerun_progress)

    def _rerun_progress(self, event) -> None:
        self.rerun_bar.setValue(int(event.fraction * 100))
        self.rerun_bar.setFormat(f"{event.stage}: {event.message}")

    def _rerun_done(self, result) -> None:
        self.state.report = result.report
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
        return str(out.with_name(out.name.removesuffix(".onnx") + suffix))

    def export_json(self) -> None:
        path = dialogs.save_file(self, "Save the report (JSON)", self._report_path(".report.json"), "JSON (*.json)")
        if path:
            self._write(lambda: write_report(self.state.report, path))

    def export_html(self) -> None:
        path = dialogs.save_file(self, "Save the report (HTML)", self._report_path(".report.html"), "HTML (*.html)")
        if path:
            self._write(lambda: atomic_write_text(Path(path), render_html(self.state.report, self.charts.png_bytes())))

    def _write(self, write) -> None:
        try:
            write()
        except StudioError as exc:
            dialogs.show_error(self, "Cannot save", str(exc))

    def open_folder(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(self.state.report["output"]).parent)))
