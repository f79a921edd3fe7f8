"""Small widgets the pages share."""

from __future__ import annotations

from PySide6.QtCore import QLocale, Qt, Signal
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSizePolicy, QWidget


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
        self._count = 0
        self._values: tuple[float, ...] = ()
        self.set_channels(("R", "G", "B"))

    def set_channels(self, names: tuple[str, ...]) -> None:
        """One box per name. Boxes are made once and then relabelled, shown or
        hidden, never replaced: a replaced box lingers in the layout until the
        event loop deletes it (six fields for a BGR job), and new boxes would
        come last in the tab order."""
        if self.names() == tuple(names):
            return
        while len(self._boxes) < len(names):
            self._add_box()
        for i, (label, box) in enumerate(zip(self._labels, self._boxes)):
            used = i < len(names)
            label.setVisible(used)
            box.setVisible(used)
            if used:
                label.setText(names[i])
                box.setAccessibleName(f"{self.what} {names[i]}")
                box.setToolTip(f"{self.what} of the {names[i]} channel")
        self._count = len(names)
        self._values = (0.0,) * len(names)
        self.setFocusProxy(self._boxes[0] if names else None)

    def names(self) -> tuple[str, ...]:
        return tuple(label.text() for label in self._labels[:self._count])

    def _add_box(self) -> None:
        i = len(self._boxes)
        label = QLabel()
        box = QDoubleSpinBox()
        self._format(box)
        box.setRange(-100000, 100000)
        box.setKeyboardTracking(True)
        box.setButtonSymbols(QDoubleSpinBox.ButtonSymbols.NoButtons)
        box.setMinimumWidth(64)
        box.valueChanged.connect(lambda v, i=i: self._box_changed(i, v))
        label.setBuddy(box)
        self._layout.addWidget(label)
        self._layout.addWidget(box, 1)
        if self._boxes:
            QWidget.setTabOrder(self._boxes[-1], box)
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
        for i, (box, v) in enumerate(zip(self.boxes(), values)):
            new[i] = float(v)
            box.blockSignals(True)
            box.setValue(v / self._unit)
            box.blockSignals(False)
        self._values = tuple(new)

    def boxes(self) -> list[QDoubleSpinBox]:
        """The boxes in use (one per channel)."""
        return self._boxes[:self._count]

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


class ElidedLabel(QLabel):
    """One line that never widens the window: what does not fit is elided in
    the middle (a long path keeps its file name); the whole text is the tooltip."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        super().setText(text)
        self.setToolTip(text)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        rect = self.contentsRect()
        painter = QPainter(self)
        painter.drawText(rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideMiddle, rect.width()))


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
    chooser = button("…", tip, choose)
    chooser.setAccessibleName(tip)  # "…" says nothing to a screen reader
    chooser.setMaximumWidth(chooser.fontMetrics().horizontalAdvance("…") * 3 + 24)
    row.addWidget(chooser)
    return row


def add_items(combo: QComboBox, items) -> None:
    """Fill ``combo`` from (text, data, tooltip) triples."""
    for text, data, tip in items:
        combo.addItem(text, data)
        combo.setItemData(combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)


def buddy(text: str, widget: QWidget) -> QLabel:
    """A label for ``widget``: its mnemonic focuses it, and screen readers
    read it as the widget's name."""
    label = QLabel(text)
    label.setBuddy(widget)
    return label


def chain_tab_order(*widgets: QWidget) -> None:
    """Tab visits ``widgets`` in this order (the order a reader sees them in)."""
    for a, b in zip(widgets, widgets[1:]):
        QWidget.setTabOrder(a, b)


def kept(box: QDoubleSpinBox, held: float | None) -> float:
    """``held`` while ``box`` still shows it (a job's 99.995 shown as 99.99 is
    not an edit), else what the user set."""
    # Rounded as the box rounds (QDoubleSpinBox::round: printf's "%.*f"); not
    # through box.valueFromText, which resets the box's parse of what is being typed.
    if held is not None and box.value() == float(f"{held:.{box.decimals()}f}"):
        return held
    return box.value()


def _locale(locale: QLocale | None) -> QLocale:
    loc = QLocale(locale) if locale is not None else QLocale()
    # No thousands separators: in German "1.000" would be a thousand, and a
    # point that a pasted "0.5" has must read as the decimal point.
    loc.setNumberOptions(QLocale.NumberOption.OmitGroupSeparator | QLocale.NumberOption.RejectGroupSeparator)
    return loc


def numbers_text(values, locale: QLocale | None = None) -> str:
    """Numbers for an editable field, with the locale's decimal point
    ("0,5; 1" where the comma is the decimal point, else "0.5, 1")."""
    loc = _locale(locale)
    separator = "; " if loc.decimalPoint() == "," else ", "
    return separator.join(loc.toString(float(v), "g", 12) for v in values)


def parse_numbers(text: str, locale: QLocale | None = None) -> tuple[float, ...] | None:
    """The numbers :func:`numbers_text` writes (a point is read as the decimal
    point too, as pasted code has it); None when one is not a number."""
    loc = _locale(locale)
    separators = ";" if loc.decimalPoint() == "," else ";,"
    for sep in separators[1:]:
        text = text.replace(sep, separators[0])
    values = []
    for part in (p.strip() for p in text.split(separators[0])):
        if not part:
            continue
        value, ok = loc.toDouble(part)
        if not ok:
            value, ok = QLocale.c().toDouble(part)
        if not ok:
            return None
        values.append(value)
    return tuple(values)
