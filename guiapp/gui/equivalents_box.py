""""The same settings elsewhere": the preprocessing as RKNN's mean_values/
std_values, torchvision's Normalize and OpenCV's blobFromImage, to copy."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QGroupBox, QPlainTextEdit, QTabWidget, QVBoxLayout, QWidget

from ..core.data.preprocess import PreprocessSpec
from ..core.data.preview import equivalents
from .widgets import button


class EquivalentsBox(QGroupBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("The same settings elsewhere", parent)
        self.tabs = QTabWidget()
        self.texts: dict[str, QPlainTextEdit] = {}
        for tool in ("RKNN", "torchvision", "OpenCV"):
            text = QPlainTextEdit()
            text.setReadOnly(True)
            text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
            text.setMaximumHeight(120)
            text.setAccessibleName(f"the preprocessing in {tool}'s terms")
            self.tabs.addTab(text, tool)
            self.texts[tool] = text
        copy = button("Cop&y", "Copy the shown settings to the clipboard",
                      lambda: QGuiApplication.clipboard().setText(self.tabs.currentWidget().toPlainText()))
        lay = QVBoxLayout(self)
        lay.addWidget(self.tabs)
        lay.addWidget(copy, 0, Qt.AlignmentFlag.AlignRight)

    def show_spec(self, spec: PreprocessSpec) -> None:
        for tool, text in equivalents(spec).items():
            box = self.texts[tool]
            if box.toPlainText() != text:  # a set text relays out: not on every keystroke
                box.setPlainText(text)
