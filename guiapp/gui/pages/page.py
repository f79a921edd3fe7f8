"""What every wizard page shares: the window's state, runner and settings."""

from __future__ import annotations

from PySide6.QtWidgets import QWizardPage


class Page(QWizardPage):
    def __init__(self, window, title: str, subtitle: str) -> None:
        super().__init__()
        self.window_ = window
        self.state = window.state  # the typed WizardState all pages share
        self.runner = window.runner  # the one job runner
        self.settings = window.settings
        self.setTitle(title)
        self.setSubTitle(subtitle)
