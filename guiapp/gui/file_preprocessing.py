"""What the model's file states about its preprocessing (Ultralytics: RGB,
x/255, letterbox 114), on the Preprocessing page: followed, or one click
away."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from ..core.data.preprocess import same_values
from .widgets import button


class FilePreprocessing(QWidget):
    use_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.use_button = button("Use the fil&e's preprocessing", "Set what the model's file states (its exporter's "
                                 "normalization, channel order and resize)", self.use_requested.emit)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.note)
        lay.addWidget(self.use_button)

    def show_state(self, state) -> None:
        """Hidden when the file states nothing; else whether the page follows it."""
        stated = state.file_preprocessing()
        if stated is None:
            self.hide()
            return
        p = state.preprocess
        same = (same_values(p.mean, stated.mean) and same_values(p.std, stated.std)
                and (p.color, p.resize, p.pad_value) == (stated.color, stated.resize, stated.pad_value))
        source = state.info.exporter.preprocessing.source
        self.note.setText(("✓ As the file states: " if same else "The file states another: ") + source)
        self.note.setStyleSheet("color: #2d6a2d" if same else "color: #7a4b00")
        self.use_button.setVisible(not same)
        self.show()
