"""Small widgets the pages share."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QWidget


class ChannelEdits(QWidget):
    """One number per channel (mean or std), labelled by channel name.

    The values are kept in pixel units; the boxes show them divided by the
    unit, so switching units never rounds them."""

    edited = Signal()

    def __init__(self, what: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.what = what
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._boxes: list[QDoubleSpinBox] = []
        self._labels: list[QLabel] = []
        self._unit = 1.0
        self._values: tuple[float, ...] = ()
        self.set_channels(("R", "G", "B"))

    def set_channels(self, names: tuple[str, ...]) -> None:
        if [lbl.text() for lbl in self._labels] == list(names):
            return
        for w in self._boxes + self._labels:
            w.deleteLater()
        self._boxes, self._labels = [], []
        self._values = (0.0,) * len(names)
        for i, name in enumerate(names):
            label = QLabel(name)
            box = QDoubleSpinBox()
            self._format(box)
            box.setRange(-100000, 100000)
            box.setKeyboardTracking(True)
            box.setButtonSymbols(QDoubleSpinBox.ButtonSymbols.NoButtons)
            box.setMinimumWidth(64)
            box.setAccessibleName(f"{self.what} {name}")
            box.setToolTip(f"{self.what} of the {name} channel")
            box.valueChanged.connect(lambda v, i=i: self._box_changed(i, v))
            self._layout.addWidget(label)
            self._layout.addWidget(box, 1)
            self._labels.append(label)
            self._boxes.append(box)

    def set_unit(self, unit: float) -> None:
        """Show values divided by ``unit`` (255 for 0..1 units)."""
        self._unit = unit
        for box in self._boxes:
            self._format(box)
        self.set_values(self._values)

    def values(self) -> tuple[float, ...]:
        return self._values

    def set_values(self, values: tuple[float, ...]) -> None:
        new = list(self._values)
        for i, (box, v) in enumerate(zip(self._boxes, values)):
            new[i] = float(v)
            box.blockSignals(True)
            box.setValue(v / self._unit)
            box.blockSignals(False)
        self._values = tuple(new)

    def boxes(self) -> list[QDoubleSpinBox]:
        return list(self._boxes)

    def _format(self, box: QDoubleSpinBox) -> None:
        fraction = self._unit != 1.0
        box.blockSignals(True)  # setDecimals rounds the shown value and would report it as an edit
        box.setDecimals(6 if fraction else 4)
        box.setSingleStep(0.001 if fraction else 0.5)
        box.blockSignals(False)

    def _box_changed(self, i: int, shown: float) -> None:
        new = list(self._values)
        new[i] = shown * self._unit
        self._values = tuple(new)
        self.edited.emit()


def sentence(text: str) -> str:
    """Engine messages start lowercase (they follow 'error: ' on the command
    line); in the GUI they stand alone."""
    return text[:1].upper() + text[1:]


def message_label(kind: str = "info") -> QLabel:
    """A word-wrapped label styled for warnings or errors."""
    label = QLabel()
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    colors = {"warn": ("#7a4b00", "#fff4d6", "#e6b84a"), "error": ("#8a1010", "#fde8e8", "#e08080"), "info": ("#1d3d5c", "#eaf2fb", "#9cbddb")}
    fg, bg, border = colors[kind]
    label.setStyleSheet(f"QLabel {{ color: {fg}; background: {bg}; border: 1px solid {border}; border-radius: 4px; padding: 6px; }}")
    label.hide()
    return label


def button(text: str, tip: str, slot, shortcut: str | None = None) -> QPushButton:
    """A push button with its tooltip, click handler and optional shortcut."""
    b = QPushButton(text)
    b.setToolTip(tip)
    if shortcut:
        b.setShortcut(shortcut)
    b.clicked.connect(slot)
    return b


def path_row(edit: QLineEdit, tip: str, choose) -> QHBoxLayout:
    """A path field with a "…" button that opens a chooser."""
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    row.addWidget(button("…", tip, choose))
    return row


def add_items(combo: QComboBox, items) -> None:
    """Fill ``combo`` from (text, data, tooltip) triples."""
    for text, data, tip in items:
        combo.addItem(text, data)
        combo.setItemData(combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
