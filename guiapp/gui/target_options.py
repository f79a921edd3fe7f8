"""The options of a deployment target, as the Calibration page shows them
under the target: one small form per target that has options, found
through ``VIEWS`` (RKNN: the chip and the Python with RKNN-Toolkit2;
TensorRT: the version named in its calibration cache)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtWidgets import QComboBox, QFormLayout, QLineEdit, QWidget

from ..core.targets.rknn import PLATFORMS, RknnOptions
from ..core.targets.tensorrt import TensorRTOptions
from . import dialogs
from .options_view import OptionsView
from .widgets import buddy, path_row

RKNN_PYTHON_KEY = "targets/rknn_python"


class RknnOptionsView(OptionsView):
    def __init__(self, settings, parent: QWidget | None = None) -> None:
        super().__init__(RknnOptions(), parent)
        self.settings = settings  # the app's remembered values
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        self.platform = QComboBox()
        for p in PLATFORMS:
            self.platform.addItem(p.upper(), p)
        self.platform.setToolTip("The Rockchip chip the .rknn model is compiled for")
        form.addRow(buddy("&Chip", self.platform), self.platform)
        self.python = QLineEdit()
        self.python.setPlaceholderText("default: $GUIAPP_RKNN_PYTHON, else what scripts/rknn-env makes")
        self.python.setToolTip("RKNN-Toolkit2 runs in its own Python, never in the app's; remembered between runs")
        row = QWidget()
        layout = path_row(self.python, "Choose the Python that has rknn-toolkit2", self.choose_python)
        layout.setContentsMargins(0, 0, 0, 0)
        row.setLayout(layout)
        form.addRow(buddy("RKNN P&ython", self.python), row)
        self.platform.currentIndexChanged.connect(self._widget_changed)
        self.python.editingFinished.connect(self._widget_changed)

    def set_options(self, options: RknnOptions) -> None:
        remembered = self.settings.value(RKNN_PYTHON_KEY)
        if options.python is None and remembered:
            options = replace(options, python=Path(str(remembered)))
        super().set_options(options)

    def _show(self, options: RknnOptions) -> None:
        self.platform.setCurrentIndex(self.platform.findData(options.platform))
        self.python.setText(str(options.python) if options.python else "")

    def _changed(self) -> None:
        text = self.python.text().strip()
        self._options = RknnOptions(self.platform.currentData(), Path(text).expanduser() if text else None)
        if text:
            self.settings.set_value(RKNN_PYTHON_KEY, text)
        self.edited.emit()

    def choose_python(self) -> None:
        start = self.python.text() or str(Path.home() / ".cache" / "guiapp" / "rknn-env" / "bin")
        path = dialogs.open_file(self, "Python with rknn-toolkit2", start, "All files (*)")
        if path:
            self.python.setText(path)
            self._changed()


class TensorRTOptionsView(OptionsView):
    def __init__(self, settings, parent: QWidget | None = None) -> None:
        super().__init__(TensorRTOptions(), parent)  # no remembered values
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        self.version = QComboBox()
        self.version.setEditable(True)
        for v in ("10.3.0", "10.0.1", "8.6.1"):
            self.version.addItem(v)
        self.version.setToolTip("The TensorRT version named in the calibration cache's header (TensorRT rejects another's)")
        form.addRow(buddy("TensorRT version", self.version), self.version)
        self.version.currentTextChanged.connect(self._widget_changed)

    def _show(self, options: TensorRTOptions) -> None:
        self.version.setCurrentText(options.version)

    def _changed(self) -> None:
        try:
            self._options = TensorRTOptions(self.version.currentText().strip())
        except Exception:  # noqa: BLE001 - a version still being typed; kept when complete
            return
        self.edited.emit()


VIEWS: dict[str, type[OptionsView]] = {"rknn": RknnOptionsView, "tensorrt": TensorRTOptionsView}
