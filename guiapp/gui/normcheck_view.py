"""The normalization check on the Preprocessing page: it runs core's check in
the background through the job runner (cancellable), shows the ranking with
the numbers and the verdict in words, and applies a chosen setting."""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QProgressBar, QPushButton, QTableWidget, QTableWidgetItem,
    QVBoxLayout, QWidget,
)

from ..core.data.dataset import list_images
from ..core.errors import Cancelled, DatasetError, UserError
from ..core.model.feeds import make_feeds
from ..core.data.normcandidates import Candidate
from ..core.evaluate.normcheck import CheckInputs, NormCheck, check_normalization
from ..core.tasks import detect_task
from . import dialogs
from .widgets import message_label, numbers_text, sentence

COLUMNS = ("Group", "Score", "Setting", "Order", "Mean", "Std")
GROUP_COLOURS = ("#e3f1e3", "#f4f4f4")  # the best group, the others


def check_job(state, spec, images) -> Callable:
    """The check as a runner job, on the previewed ``images`` (or the
    calibration folder when fewer than 8 are open). Raises UserError when
    the settings are not complete."""
    info, model = state.info, state.model_path
    if info is None or spec is None or model is None:
        raise UserError("the preprocessing is not complete yet.", "Fix what the Preview tab's warning says first.")
    feeds = make_feeds(info, state.inputs)
    task = state.task_guess or detect_task(info, state.task.kind)
    images, folders = list(images), tuple(state.calibration.folders)

    def run(progress, cancel):
        files = images
        if len(files) < 8 and folders:
            files = list_images(folders, "calibration")
        if not files:
            raise DatasetError("no images to check with.", "Open an image folder on the Preview tab, or choose a calibration folder.")
        inputs = CheckInputs(model, info, task, feeds, spec, files, state.task.options_for(task.kind))
        return check_normalization(inputs, progress=progress, cancel=cancel)

    return run


class NormCheckPanel(QWidget):
    """``request()`` returns the job to run (``fn(progress, cancel) -> NormCheck``)
    or raises a UserError saying what is missing; ``on_apply(candidate)``
    makes a candidate the page's setting."""

    def __init__(self, runner, request: Callable[[], Callable], on_apply: Callable[[Candidate], None]) -> None:
        super().__init__()
        self.runner = runner
        self.request = request
        self.on_apply = on_apply
        self.check: NormCheck | None = None
        self.running = False
        self._tries = 0

        intro = QLabel(
            "Runs the model on up to 32 of your images under every preset in RGB and BGR order, and under your setting "
            "with the usual mistakes undone (channel order, 0..1 vs 0..255), and ranks them by how plausible its outputs "
            "are for its task. Candidates whose results agree form one group.")
        intro.setWordWrap(True)
        self.run_button = QPushButton("&Run the check")
        self.run_button.setToolTip("Run the check in the background (a few seconds); press again to cancel")
        self.run_button.clicked.connect(self.toggle)
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.bar.hide()
        top = QHBoxLayout()
        top.addWidget(self.run_button)
        top.addWidget(self.bar, 1)
        top.addStretch(0)

        self.ok_text = message_label("info")
        self.warn_text = message_label("warn")
        self.notes = QLabel()
        self.notes.setWordWrap(True)
        self.notes.hide()

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        for i in range(len(COLUMNS)):
            header.setSectionResizeMode(i, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.itemDoubleClicked.connect(lambda item: self.apply_selected())
        self.table.hide()

        self.detail = QLabel()
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.apply_button = QPushButton("&Use the selected setting")
        self.apply_button.setToolTip("Set mean, std and channel order to the selected row (double-click a row does the same)")
        self.apply_button.clicked.connect(self.apply_selected)
        self.apply_button.setEnabled(False)
        self.apply_button.hide()

        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addLayout(top)
        lay.addWidget(self.warn_text)
        lay.addWidget(self.ok_text)
        lay.addWidget(self.notes)
        lay.addWidget(self.table, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.detail, 1)
        bottom.addWidget(self.apply_button, 0, Qt.AlignmentFlag.AlignTop)
        lay.addLayout(bottom)
        lay.addStretch(0)

    # ---- running

    def toggle(self) -> None:
        if self.running:
            self.runner.cancel()
            return
        try:
            fn = self.request()
        except Exception as exc:  # noqa: BLE001 - a UserError saying what is missing
            self._say(sentence(dialogs.error_text(exc)), "warn")
            return
        self._tries = 0
        self._start(fn)

    def _start(self, fn) -> None:
        if not self.runner.start(fn, self._done, self._failed, self._progressed):
            # A preview decode is finishing: try again shortly.
            self._tries += 1
            if self._tries <= 30:
                QTimer.singleShot(100, lambda: self._start(fn))
            else:
                self._say("Another job is running: try again when it has finished.", "warn")
            return
        self.running = True
        self.run_button.setText("Cancel the check")
        self.bar.setRange(0, 0)
        self.bar.setFormat("starting…")
        self.bar.show()

    def _progressed(self, event) -> None:
        self.bar.setRange(0, max(1, event.total))
        self.bar.setValue(event.done)
        self.bar.setFormat(event.message[:80] or "%p%")

    def _finish(self) -> None:
        self.running = False
        self.run_button.setText("&Run the check")
        self.bar.hide()

    def _failed(self, exc: BaseException) -> None:
        self._finish()
        if isinstance(exc, Cancelled):
            self._say("Check cancelled.", "info")
        else:
            self._say(sentence(dialogs.error_text(exc)), "warn")

    def _done(self, check: NormCheck) -> None:
        self._finish()
        self.show_check(check)

    # ---- showing

    def _say(self, text: str, kind: str) -> None:
        self.warn_text.setVisible(kind == "warn")
        self.ok_text.setVisible(kind != "warn")
        (self.warn_text if kind == "warn" else self.ok_text).setText(text)

    def show_check(self, check: NormCheck) -> None:
        self.check = check
        text = check.message + ("\n" + check.suggestion_line() if check.suggestion else "")
        self._say(text, "warn" if check.verdict == "worse" else "info")
        notes = list(check.notes)
        if check.skipped:
            notes.append(f"{len(check.skipped)} unreadable image(s) skipped.")
        notes.append(f"{check.images} images, {len(check.ranking)} candidates, {check.seconds:.1f} s. "
                     f"Score: {check.metric} (higher is more plausible).")
        self.notes.setText("\n".join(notes))
        self.notes.show()
        self.table.setRowCount(len(check.ranking))
        pick = check.suggestion
        select = 0
        for row, s in enumerate(check.ranking):
            c = s.candidate
            label = ("▶ " if c.current else "") + c.label
            cells = (str(s.group), f"{s.score:.3f}", label, c.color.upper(), _numbers(c.mean), _numbers(c.std))
            for col, value in enumerate(cells):
                item = QTableWidgetItem(value)
                item.setToolTip(f"{c.label}\n{c.values_text()}\n{s.judgement.words}")
                item.setBackground(QColor(GROUP_COLOURS[0 if s.group == 1 else 1]))
                if c.current:
                    f = QFont(item.font())
                    f.setBold(True)
                    item.setFont(f)
                if col in (0, 1):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, col, item)
            if (pick is not None and c.key == pick.key) or (pick is None and c.current):
                select = row
        self.table.show()
        self.apply_button.show()
        self.table.selectRow(select)
        self._selection_changed()  # the same row index may stay selected: no signal

    def mark_stale(self) -> None:
        """The setting changed after the check: its '▶' row is no longer the
        user's setting."""
        if self.check is not None and not self.running:
            self._say("Your setting changed since this check; run it again to rank the new one.", "info")

    def _selected(self) -> Candidate | None:
        rows = self.table.selectionModel().selectedRows() if self.check else []
        return self.check.ranking[rows[0].row()].candidate if rows else None

    def _selection_changed(self) -> None:
        c = self._selected()
        self.apply_button.setEnabled(c is not None and not c.current)
        rows = self.table.selectionModel().selectedRows() if self.check else []
        if rows:
            s = self.check.ranking[rows[0].row()]
            self.detail.setText(f"{s.candidate.label}: {s.judgement.words}. Group {s.group}, score {s.score:.3f}.")
        else:
            self.detail.clear()

    def apply_selected(self) -> None:
        """Use the selected candidate, then check again: the ranking then
        shows the new setting where it stands."""
        c = self._selected()
        if c is not None and not c.current and not self.running:
            self.on_apply(c)
            self.toggle()


def _numbers(values) -> str:
    """As the form's mean and std boxes write them (the locale's decimal point)."""
    vals = [numbers_text((round(v, 3),)) for v in values]
    return vals[0] if len(set(vals)) == 1 else numbers_text([round(v, 3) for v in values])
