"""The deployment target on the Calibration page: the runtime, and for RKNN the
chip and the Python that has RKNN-Toolkit2 (remembered between runs)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLabel, QLineEdit, QWidget

from ..core.targets.base import RKNN_PLATFORMS, TargetSettings
from ..core.targets.registry import TARGETS
from . import dialogs
from .widgets import add_items, message_label, path_row

RKNN_PYTHON_KEY = "targets/rknn_python"

NOTES = {
    "rknn": "RKNN-Toolkit2 calibrates on the same preprocessed images with its own algorithm (minmax → normal, "
            "entropy → kl_divergence, mse → mmse, about 6 minutes); its PC simulator gives the accuracy. "
            "Activation type, format and nodes in float do not apply.",
    "tensorrt": "TensorRT takes symmetric int8 activations and per-channel int8 weights whatever is chosen below; "
                "no GPU here, so the model is checked in ONNX Runtime.",
    "openvino": "Latency and accuracy are measured in OpenVINO on this CPU, on the IR it will load.",
}


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
        form.addRow(_buddy("&Runtime", self.combo), self.combo)
        form.addRow("", self.note)
        self.platform = QComboBox()
        for p in RKNN_PLATFORMS:
            self.platform.addItem(p.upper(), p)
        self.platform.setToolTip("The Rockchip chip the .rknn model is compiled for")
        self.platform_label = _buddy("C&hip", self.platform)
        form.addRow(self.platform_label, self.platform)
        self.python = QLineEdit()
        self.python.setPlaceholderText("default: $GUIAPP_RKNN_PYTHON, else what scripts/rknn-env makes")
        self.python.setToolTip("RKNN-Toolkit2 runs in its own Python, never in the app's; remembered between runs")
        self.python_label = _buddy("RKNN &Python", self.python)
        self.python_row = QWidget()
        row = path_row(self.python, "Choose the Python that has rknn-toolkit2", self.choose_python)
        row.setContentsMargins(0, 0, 0, 0)
        self.python_row.setLayout(row)
        form.addRow(self.python_label, self.python_row)
        self.found = QLabel()
        self.found.setWordWrap(True)
        self.found.setStyleSheet("color: #2d6a2d")
        form.addRow("", self.found)
        self.problem_label = message_label("warn")
        form.addRow(self.problem_label)
        self.combo.currentIndexChanged.connect(self._changed)
        self.platform.currentIndexChanged.connect(self._changed)
        self.python.editingFinished.connect(self._changed)
        self._problem = ""

    def set_target(self, target: TargetSettings) -> None:
        if target.rknn_python is None and self.settings.value(RKNN_PYTHON_KEY):
            target = replace(target, rknn_python=Path(str(self.settings.value(RKNN_PYTHON_KEY))))
        self._target = target
        self._syncing = True
        try:
            self.combo.setCurrentIndex(self.combo.findData(target.kind))
            self.platform.setCurrentIndex(self.platform.findData(target.platform))
            self.python.setText(str(target.rknn_python) if target.rknn_python else "")
        finally:
            self._syncing = False
        self._refresh()

    def target(self) -> TargetSettings:
        return self._target

    def problem(self) -> str:
        """What keeps this target from running here ('' when nothing)."""
        return self._problem

    def _changed(self) -> None:
        if self._syncing:
            return
        text = self.python.text().strip()
        self._target = replace(self._target, kind=self.combo.currentData(), platform=self.platform.currentData(),
                               rknn_python=Path(text).expanduser() if text else None)
        if text:
            self.settings.set_value(RKNN_PYTHON_KEY, text)
        self._refresh()
        self.edited.emit()

    def _refresh(self) -> None:
        kind = self._target.kind
        rknn = kind == "rknn"
        for w in (self.platform_label, self.platform, self.python_label, self.python_row):
            w.setVisible(rknn)
        self.note.setText(NOTES.get(kind, TARGETS[kind].summary))
        self._problem = TARGETS[kind].availability(self._target)
        self.problem_label.setText(self._problem)
        self.problem_label.setVisible(bool(self._problem))
        found = "" if self._problem else TARGETS[kind].found(self._target)
        self.found.setText(f"✓ {found}" if found else "")
        self.found.setVisible(bool(found))

    def choose_python(self) -> None:
        start = self.python.text() or str(Path.home() / ".cache" / "guiapp" / "rknn-env" / "bin")
        path = dialogs.open_file(self, "Python with rknn-toolkit2", start, "All files (*)")
        if path:
            self.python.setText(path)
            self._changed()


def _buddy(text: str, widget: QWidget) -> QLabel:
    label = QLabel(text)
    label.setBuddy(widget)
    return label
