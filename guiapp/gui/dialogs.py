"""Every modal dialog the app shows goes through these few functions, so that
tests can replace them (monkeypatch) and answer without a human."""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget


def ask(parent: QWidget | None, title: str, text: str) -> bool:
    """A yes/no question; True for yes."""
    box = QMessageBox(QMessageBox.Icon.Question, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, parent)
    box.setDefaultButton(QMessageBox.StandardButton.No)
    return box.exec() == QMessageBox.StandardButton.Yes


def show_error(parent: QWidget | None, title: str, text: str, details: str = "") -> None:
    """An error in words, with technical details folded away."""
    from .widgets import sentence

    box = QMessageBox(QMessageBox.Icon.Warning, title, sentence(text), QMessageBox.StandardButton.Ok, parent)
    if details:
        box.setDetailedText(details)
    box.exec()


def error_text(exc: BaseException) -> str:
    """What a failure says to the user: our errors as they are, others named
    as internal errors."""
    from ..core.errors import StudioError

    return str(exc) if isinstance(exc, StudioError) else f"Internal error: {type(exc).__name__}: {exc}"


def error_details(exc: BaseException) -> str:
    """The traceback, for the dialog's folded details."""
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def open_file(parent: QWidget | None, title: str, folder: str, filters: str) -> str:
    return QFileDialog.getOpenFileName(parent, title, folder, filters)[0]


def save_file(parent: QWidget | None, title: str, path: str, filters: str) -> str:
    return QFileDialog.getSaveFileName(parent, title, path, filters)[0]


def open_folder(parent: QWidget | None, title: str, folder: str) -> str:
    return QFileDialog.getExistingDirectory(parent, title, folder)
