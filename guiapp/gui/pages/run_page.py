"""Step 4 (commit page): quantize in the background with progress, ETA, a log
and a Cancel that stops within about a second and leaves no output."""

from __future__ import annotations


from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPlainTextEdit, QProgressBar, QSplitter, QVBoxLayout, QWizard,
)

from ...core.errors import Cancelled
from ...core.notes import texts
from ...core.run import quantize_in_process
from ...core.progress import CALIBRATE, STAGES, TUNE, Eta, ProgressEvent, format_seconds
from ...core.targets.registry import TARGETS
from .. import dialogs
from ..tuning_view import TrialsView
from ..widgets import button
from .page import Page

STAGE_TEXT = {"prepare": "Pre-process the graph", "calibrate": "Calibrate", "tune": "Search for the accuracy target",
              "quantize": "Quantize", "evaluate": "Evaluate FP32 vs INT8"}
MARK = {"pending": "○", "running": "◐", "done": "●", "failed": "✕"}


class RunPage(Page):
    def __init__(self, window) -> None:
        super().__init__(
            window,
            "Run",
            "Quantizing in the background. Nothing is written until every stage has succeeded.",
        )
        self.setCommitPage(True)
        self.setButtonText(QWizard.WizardButton.CommitButton, "See &results ›")
        self.stages = QListWidget()
        self.stages.setMaximumHeight(5 * 22 + 8)
        self.stages.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.eta_label = QLabel()
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setToolTip("What happened, step by step")
        self.cancel_button = button("&Cancel", "Stop after the current batch; nothing is written (Esc)", self.cancel, "Esc")
        self.retry_button = button("Run &again", "Start the run again with the current settings", self.start)
        row = QHBoxLayout()
        row.addWidget(self.bar, 1)
        row.addWidget(self.eta_label)
        row.addWidget(self.cancel_button)
        row.addWidget(self.retry_button)
        self.trials = TrialsView()
        self.trials.hide()
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.log)
        split.addWidget(self.trials)
        split.setStretchFactor(1, 3)
        lay = QVBoxLayout(self)
        lay.addWidget(self.stages)
        lay.addLayout(row)
        lay.addWidget(split, 1)
        self.running = False
        self.tuning = False
        self.stage_list = STAGES
        self.done = False
        self._eta = Eta()
        self._stage = None

    # ---- wizard

    def initializePage(self) -> None:
        # Start once the wizard has finished switching pages (it enables Back
        # after this returns); from then on Back stays off while running.
        QTimer.singleShot(0, self.start)

    def isComplete(self) -> bool:
        return self.done

    def cleanupPage(self) -> None:  # Back: only reachable when not running
        self.runner.cancel()

    # ---- run

    def start(self) -> None:
        if self.running:
            return
        job = self.state.to_job()
        overwrite = False
        if job.output.exists():
            if not dialogs.ask(self, "Replace the output?", f"{job.output} already exists. Replace it?"):
                self.log.appendPlainText("Not started: choose another output name on the Calibration page (Back).")
                return
            overwrite = True
        self.runner.stop(10)  # a preview decode or folder scan still running
        self.done = False
        self.tuning = job.tuning.max_drop is not None
        i = STAGES.index(CALIBRATE) + 1
        self.stage_list = STAGES[:i] + (TUNE,) + STAGES[i:] if self.tuning else STAGES
        self.trials.clear()
        self.trials.setVisible(self.tuning)
        self.stages.clear()
        for s in self.stage_list:
            item = QListWidgetItem(f"{MARK['pending']}  {STAGE_TEXT[s]}")
            item.setData(Qt.ItemDataRole.UserRole, s)
            self.stages.addItem(item)
        self.bar.setValue(0)
        self.log.appendPlainText(f"Quantizing {job.model.name} → {job.output} ({TARGETS[job.target.kind].title})")
        self._eta, self._stage = Eta(), None
        started = self.runner.start(
            quantize_in_process(job, overwrite), self._finished, self._failed, self._progressed
        )
        if not started:
            self.log.appendPlainText("Another job is still running; try again in a moment.")
            return
        self._set_running(True)

    def cancel(self) -> None:
        if self.running:
            if self._stage == TUNE:
                self.log.appendPlainText("Stopping the search after the current trial; the best model so far will be written…")
            else:
                self.log.appendPlainText("Cancelling after the current batch…")
            self.cancel_button.setEnabled(False)
            self.runner.cancel()

    def _set_running(self, running: bool) -> None:
        self.running = running
        self.cancel_button.setEnabled(running)
        self.retry_button.setVisible(not running and not self.done)
        self.completeChanged.emit()
        self._sync_back()
        self.window_.set_busy(running)

    def _sync_back(self) -> None:
        back = self.wizard().button(QWizard.WizardButton.BackButton) if self.wizard() else None
        if back is not None:
            back.setEnabled(not self.running)

    def _mark(self, stage: str, mark: str) -> None:
        for i in range(self.stages.count()):
            item = self.stages.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == stage:
                item.setText(f"{MARK[mark]}  {STAGE_TEXT[stage]}")

    def _progressed(self, event: ProgressEvent) -> None:
        if event.log:  # a toolkit's own message (RKNN-Toolkit2)
            self.log.appendPlainText(event.log)
            return
        if event.stage not in self.stage_list:
            return
        if event.data is not None and "trial" in event.data:
            self.trials.add(event.data)
        self._sync_back()
        if event.stage != self._stage:
            if self._stage is not None:
                self._mark(self._stage, "done")
            self._stage = event.stage
            self._mark(event.stage, "running")
            self.log.appendPlainText(f"{STAGE_TEXT[event.stage]}: {event.message}")
        index = self.stage_list.index(event.stage)
        self.bar.setValue(int(1000 * (index + event.fraction) / len(self.stage_list)))
        self.bar.setFormat(f"{STAGE_TEXT[event.stage]}: {event.message}")
        self.eta_label.setText(f"{format_seconds(self._eta.update(event))} left in this stage")

    def _finished(self, result) -> None:
        self.state.report = result.report
        self.state.samples = result.samples
        for s in self.stage_list:
            self._mark(s, "done")
        self.bar.setValue(1000)
        self.bar.setFormat("Done")
        self.eta_label.clear()
        r = result.report
        for w in texts(r["warnings"]):
            self.log.appendPlainText(f"Warning: {w}")
        self.log.appendPlainText(f"Wrote {result.output}. Next: the results.")
        self.done = True
        self._set_running(False)

    def _failed(self, exc: BaseException) -> None:
        if self._stage:
            self._mark(self._stage, "failed")
        self.eta_label.clear()
        if isinstance(exc, Cancelled):
            self.bar.setFormat("Cancelled")
            self.log.appendPlainText("Cancelled; nothing was written.")
        else:
            text = dialogs.error_text(exc)
            self.bar.setFormat("Failed")
            self.log.appendPlainText(f"Failed: {text}")
            self._set_running(False)
            dialogs.show_error(
                self, "Quantization failed", text + "\n\nNothing was written. Go back to change the settings.",
                dialogs.error_details(exc),
            )
            return
        self._set_running(False)
