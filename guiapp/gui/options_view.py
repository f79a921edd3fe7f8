"""The small form that edits one options dataclass: a task's (Model page) or
a target's (Calibration page). Each kind's view is found through its
module's ``VIEWS`` registry."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSignalBlocker, Signal
from PySide6.QtWidgets import QWidget


class OptionsView(QWidget):
    """Holds one options dataclass. ``set_options`` shows another without
    emitting ``edited``; ``edited`` fires when the user changes a field, and
    ``options()`` is then the edited dataclass.

    A view puts the dataclass into its widgets in ``_show(options)`` and sets
    ``self._options`` from its widgets before emitting ``edited``."""

    edited = Signal()

    def __init__(self, options: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._options = options

    def options(self) -> Any:
        return self._options

    def set_options(self, options: Any) -> None:
        blocker = QSignalBlocker(self)  # the widgets' own handlers may run; edited does not fire
        self._show(options)
        self._options = options  # exactly what was given, not what the widgets rounded it to
        del blocker

    def _show(self, options: Any) -> None:  # each view's own widgets; the base has none
        pass
