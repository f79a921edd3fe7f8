"""Progress reporting and cancellation for long operations.

A long operation takes ``progress`` (a plain callable receiving
:class:`ProgressEvent`) and ``cancel`` (a :class:`CancelToken`). It never knows
who listens: the CLI draws a bar on stderr, the GUI forwards events by signal.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from .errors import Cancelled

# Stage names, in the order a quantization job runs them (TUNE only with an accuracy target).
PREPARE = "prepare"
CALIBRATE = "calibrate"
TUNE = "tune"
QUANTIZE = "quantize"
EVALUATE = "evaluate"
STAGES = (PREPARE, CALIBRATE, QUANTIZE, EVALUATE)


@dataclass(frozen=True)
class ProgressEvent:
    stage: str
    done: int
    total: int
    message: str = ""
    data: dict | None = None  # a payload for listeners that show more than a bar (a finished trial)
    log: str = ""  # a line for the run's log (a toolkit's own messages); not progress

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0


ProgressFn = Callable[[ProgressEvent], None]


def no_progress(event: ProgressEvent) -> None:
    """The progress callback for callers that do not listen."""


class CancelToken:
    """Set from any thread (a Cancel button, SIGINT); checked by the worker
    between units of work, which then raises :class:`Cancelled`."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled()


class Eta:
    """Estimates the time left in one stage from its rate so far.

    The first unit of a stage often includes warm-up (session creation, first
    decode), so the estimate starts from the first reported unit.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._stage = None
        self._t0 = 0.0
        self._done0 = 0

    def update(self, event: ProgressEvent) -> float | None:
        """Seconds left in ``event``'s stage, or None while unknown."""
        now = self._clock()
        if event.stage != self._stage or event.done < self._done0:
            self._stage, self._t0, self._done0 = event.stage, now, event.done
            return None
        units = event.done - self._done0
        if units <= 0 or event.total <= 0:
            return None
        rate = (now - self._t0) / units
        return max(0.0, rate * (event.total - event.done))


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
