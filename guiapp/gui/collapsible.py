"""A section that opens and closes by its title, remembering its state
between runs (the Calibration page's advanced options)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QToolButton, QVBoxLayout, QWidget


class Collapsible(QWidget):
    toggled = Signal(bool)

    def __init__(self, title: str, content: QWidget, settings, key: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings, self.key = settings, key
        self.button = QToolButton()
        self.button.setText(title)
        self.button.setCheckable(True)
        self.button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.button.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        self.button.setAccessibleName(title.replace("&", ""))
        self.content = content
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.button)
        lay.addWidget(content)
        opened = str(settings.value(key, "false")).lower() == "true"
        self.button.setChecked(opened)
        self._show(opened)
        self.button.toggled.connect(self._toggled)

    @property
    def opened(self) -> bool:
        return self.button.isChecked()

    def set_opened(self, opened: bool) -> None:
        self.button.setChecked(opened)

    def _toggled(self, opened: bool) -> None:
        self._show(opened)
        self.settings.set_value(self.key, "true" if opened else "false")
        self.toggled.emit(opened)

    def _show(self, opened: bool) -> None:
        self.button.setArrowType(Qt.ArrowType.DownArrow if opened else Qt.ArrowType.RightArrow)
        self.button.setToolTip(("Hide" if opened else "Show") + " these options")
        self.content.setVisible(opened)
