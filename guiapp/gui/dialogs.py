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


def open_file(parent: QWidget | None, title: str, folder: str, filters: str) -> str:
    return QFileDialog.getOpenFileName(parent, title, folder, filters)[0]


def save_file(parent: QWidget | None, title: str, path: str, filters: str) -> str:
    return QFileDialog.getSaveFileName(parent, title, path, filters)[0]


def open_folder(parent: QWidget | None, title: str, folder: str) -> str:
    return QFileDialog.getExistingDirectory(parent, title, folder)
