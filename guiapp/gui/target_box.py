"""The deployment target on the Calibration page: the runtime, whether its
toolkit is here, and the target's own options (target_options.py)."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLabel, QWidget

from ..core.job import TargetSettings
from ..core.targets.registry import TARGETS
from .target_options import VIEWS
from .widgets import add_items, message_label


class TargetBox(QGroupBox):
    edited = Signal()

    def __init__(self, settings, parent: QWidget | None = None) -> None:
        super().__init__("Deployment target", parent)
        self.settings = settings
        self._target = TargetSettings()
        self._syncing = False
        form = QFormLayout(self)
        self.combo = QComboBox()
        add_items(self.combo, ((t.title, t.kind, t.summary) for t in TARGETS.values()))
        self.combo.setToolTip("The runtime the INT8 model is built for")
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #555")
        label = QLabel("Run&time")
        label.setBuddy(self.combo)
        form.addRow(label, self.combo)
        form.addRow("", self.note)
        self.views = {kind: view(settings) for kind, view in VIEWS.items()}
        for view in self.views.values():
            form.addRow(view)
            view.edited.connect(self._options_edited)
        self.found = QLabel()
        self.found.setWordWrap(True)
        self.found.setStyleSheet("color: #2d6a2d")
        form.addRow("", self.found)
        self.problem_label = message_label("warn")
        form.addRow(self.problem_label)
        self.combo.currentIndexChanged.connect(self._changed)
        self._problem = ""

    def set_target(self, target: TargetSettings) -> None:
        self._syncing = True
        try:
            self.combo.setCurrentIndex(self.combo.findData(target.kind))
            for kind, view in self.views.items():
                view.set_options(TARGETS[kind].options_of(target))
        finally:
            self._syncing = False
        self._target = self._with_remembered(target)
        self._refresh()

    def _with_remembered(self, target: TargetSettings) -> TargetSettings:
        """``target`` with what its view filled in from this machine's
        remembered values (RKNN's Python), for the chosen target only: a job
        for another target is saved as it was opened."""
        view = self.views.get(target.kind)
        if view is None or view.options() == TARGETS[target.kind].options_of(target):
            return target
        return target.with_options(target.kind, view.options())

    def target(self) -> TargetSettings:
        return self._target

    def problem(self) -> str:
        """What keeps this target from running here ('' when nothing)."""
        return self._problem

    def _changed(self) -> None:
        if self._syncing:
            return
        self._target = self._with_remembered(replace(self._target, kind=self.combo.currentData()))
        self._refresh()
        self.edited.emit()

    def _options_edited(self) -> None:
        view = self.sender()
        kind = next(k for k, v in self.views.items() if v is view)
        self._target = self._target.with_options(kind, view.options())
        self._refresh()
        self.edited.emit()

    def _refresh(self) -> None:
        kind = self._target.kind
        target = TARGETS[kind]
        for k, view in self.views.items():
            view.setVisible(k == kind)
        self.note.setText(target.note or target.summary)
        self._problem = target.unavailable(self._target)
        self.problem_label.setText(self._problem)
        self.problem_label.setVisible(bool(self._problem))
        found = "" if self._problem else target.found(target.options_of(self._target))
        self.found.setText(f"✓ {found}" if found else "")
        self.found.setVisible(bool(found))
