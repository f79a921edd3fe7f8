"""The small form that edits one options dataclass: a task's (Model page) or
a target's (Calibration page). Each kind's view is found through its
module's ``VIEWS`` registry."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QWidget


class OptionsView(QWidget):
    """Holds one options dataclass. ``set_options`` shows another without
    emitting ``edited``; ``edited`` fires when the user changes a field, and
    ``options()`` is then the edited dataclass.

    A view puts the dataclass into its widgets in ``_show(options)``,
    connects its widgets' change signals to ``_widget_changed``, and in
    ``_changed`` sets ``self._options`` from its widgets and emits
    ``edited``. While ``set_options`` shows values, ``_changed`` does not run
    (a view's ``_changed`` may also remember a value in the app's settings)."""

    edited = Signal()

    def __init__(self, options: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._options = options
        self._showing = False

    def options(self) -> Any:
        return self._options

    def set_options(self, options: Any) -> None:
        self._showing = True
        try:
            self._show(options)
        finally:
            self._showing = False
        self._options = options  # exactly what was given, not what the widgets rounded it to

    def _widget_changed(self, *_args: Any) -> None:
        if not self._showing:
            self._changed()

    def _show(self, options: Any) -> None:  # each view's own widgets; the base has none
        pass

    def _changed(self) -> None:  # each view's own widgets; the base has none
        pass
