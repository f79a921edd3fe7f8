"""Remembered between runs: recent files, last folders, window geometry."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

MAX_RECENT = 8


class Settings:
    def __init__(self) -> None:
        self._q = QSettings()

    def recent(self, kind: str) -> list[str]:
        """Recent 'models' or 'jobs' that still exist, newest first."""
        value = self._q.value(f"recent/{kind}", []) or []
        if isinstance(value, str):
            value = [value]
        return [p for p in value if Path(p).exists()]

    def add_recent(self, kind: str, path: Path) -> None:
        items = [str(path)] + [p for p in self.recent(kind) if p != str(path)]
        self._q.setValue(f"recent/{kind}", items[:MAX_RECENT])

    def folder(self, key: str) -> str:
        return str(self._q.value(f"folders/{key}", str(Path.home())))

    def set_folder(self, key: str, path: Path) -> None:
        self._q.setValue(f"folders/{key}", str(path))

    def value(self, key: str, default=None):
        return self._q.value(key, default)

    def set_value(self, key: str, value) -> None:
        self._q.setValue(key, value)
