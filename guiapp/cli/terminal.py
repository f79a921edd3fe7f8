"""Progress on a terminal: a bar with ETA on stderr, redrawn in place when
stderr is a terminal, one line per stage (and every 10%) otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from ..core.progress import Eta, ProgressEvent, format_seconds


class ProgressBar:
    def __init__(self, stream: TextIO | None = None, width: int = 28) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.eta = Eta()
        self._stage = None
        self._last_draw = 0.0
        self._last_decile = -1
        self._stage_start = time.monotonic()

    def __call__(self, event: ProgressEvent) -> None:
        if self.stream is None or event.log:  # a toolkit's log line, not progress
            return
        left = self.eta.update(event)
        new_stage = event.stage != self._stage
        if new_stage:
            self._finish_line()
            self._stage, self._last_decile, self._stage_start = event.stage, -1, time.monotonic()
        if self.tty:
            now = time.monotonic()
            if new_stage or now - self._last_draw > 0.1 or event.done >= event.total:
                self._last_draw = now
                self._write("\r" + self._line(event, left) + "\x1b[K")
        else:
            decile = int(event.fraction * 10)
            if new_stage or decile > self._last_decile:
                self._last_decile = decile
                self._write(self._line(event, left) + "\n")

    def _line(self, e: ProgressEvent, left: float | None) -> str:
        filled = int(round(e.fraction * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        eta = f"{format_seconds(left)} left" if e.done < e.total else f"{time.monotonic() - self._stage_start:.1f} s"
        return f"{e.stage:<9} [{bar}] {e.fraction * 100:3.0f}%  {eta:<10} {e.message}"[:160]

    def _finish_line(self) -> None:
        if self.tty and self._stage is not None:
            self._write("\n")

    def close(self) -> None:
        self._finish_line()
        self._stage = None

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.stream = None  # closed or gone (windowed builds): stop drawing
