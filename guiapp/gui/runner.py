"""The one job runner: every piece of background work goes through it.

A job is a plain core function ``fn(progress, cancel) -> result``. It runs on a
worker thread; its progress, result or error come back by queued signals to
this object, which lives on the GUI thread, and from here to the callbacks the
caller gave (bound methods of GUI objects). Nothing of Qt reaches the worker.
One job at a time: a new light job (a preview decode) replaces a pending one.

A heavy job (a quantization, a normalization check) is a ``ProcessJob``: the
worker thread runs it in a spawned child process and relays its progress, so
that a native crash, a kill or running out of memory ends the child and is
reported in words, and the window stays usable for the next run.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from PySide6.QtCore import QObject, Qt, Signal

from ..core.parallel.process_job import ProcessJob, run_in_process
from ..core.progress import CancelToken, ProgressEvent

Callback = Callable[[Any], None]


class JobRunner(QObject):
    _progressed = Signal(int, object)
    _finished = Signal(int, object)
    _failed = Signal(int, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._id = 0
        self._thread: threading.Thread | None = None
        self._cancel: CancelToken | None = None
        self._callbacks: dict[int, tuple[Callback, Callback | None, Callback | None]] = {}
        self._pending: tuple | None = None
        self._light = False
        self._progressed.connect(self._on_progressed, Qt.ConnectionType.QueuedConnection)
        self._finished.connect(self._on_finished, Qt.ConnectionType.QueuedConnection)
        self._failed.connect(self._on_failed, Qt.ConnectionType.QueuedConnection)

    @property
    def busy(self) -> bool:
        return self._thread is not None

    def start(
        self,
        fn: Callable[[Callable[[ProgressEvent], None], CancelToken], Any],
        on_done: Callback,
        on_error: Callback | None = None,
        on_progress: Callback | None = None,
        light: bool = False,
    ) -> bool:
        """Run ``fn`` off the GUI thread. A ``light`` job (a preview decode, a
        folder scan) replaces a running light job: that one is cancelled and
        its result dropped, the latest request wins. Otherwise, when busy,
        refuse (returns False)."""
        if self.busy:
            if not (light and self._light):
                return False
            self._cancel.cancel()
            self._pending = (fn, on_done, on_error, on_progress, light)
            return True
        self._light = light
        self._id += 1
        job_id = self._id
        token = CancelToken()
        self._cancel = token
        self._callbacks[job_id] = (on_done, on_error, on_progress)
        progress = _Throttle(lambda e: self._progressed.emit(job_id, e))

        def work() -> None:
            try:
                result = run_in_process(fn, progress, token) if isinstance(fn, ProcessJob) else fn(progress, token)
            except BaseException as exc:  # noqa: BLE001 - handed to the GUI thread
                self._failed.emit(job_id, exc)
            else:
                self._finished.emit(job_id, result)

        self._thread = threading.Thread(target=work, name="guiapp-job", daemon=True)
        self._thread.start()
        return True

    def cancel(self) -> None:
        self._pending = None
        if self._cancel is not None:
            self._cancel.cancel()

    def stop(self, timeout: float | None = None) -> bool:
        """Cancel the current job and wait for it; its callbacks are dropped.
        True when the runner is idle afterwards (closing the window, or
        clearing a preview decode before a quantization)."""
        self._pending = None
        if self._thread is None:
            return True
        self._cancel.cancel()
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        self._callbacks.pop(self._id, None)
        self._thread, self._cancel = None, None
        return True

    # ---- GUI thread

    def _on_progressed(self, job_id: int, event: ProgressEvent) -> None:
        cb = self._callbacks.get(job_id)
        if cb and cb[2] and job_id == self._id and self._cancel is not None and not self._cancel.cancelled:
            cb[2](event)

    def _on_finished(self, job_id: int, result: Any) -> None:
        self._end(job_id, result, ok=True)

    def _on_failed(self, job_id: int, exc: BaseException) -> None:
        self._end(job_id, exc, ok=False)

    def _end(self, job_id: int, payload: Any, ok: bool) -> None:
        callbacks = self._callbacks.pop(job_id, None)
        if job_id != self._id or callbacks is None:
            return  # a job stop() already ended; the runner may have a newer one
        on_done, on_error, _ = callbacks
        superseded = self._pending is not None
        self._thread = None
        self._cancel = None
        if not superseded:
            if ok and on_done is not None:
                on_done(payload)
            elif not ok and on_error is not None:
                on_error(payload)
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.start(*pending)


class _Throttle:
    """Forwards a progress event only when it would change what is shown
    (stage, whole percent, message), at most every 30 ms within a stage."""

    def __init__(self, emit: Callable[[ProgressEvent], None]) -> None:
        self._emit = emit
        self._last = None
        self._t = 0.0

    def __call__(self, event: ProgressEvent) -> None:
        if event.log:  # log lines are never dropped
            self._emit(event)
            return
        key = (event.stage, int(event.fraction * 100), event.message)
        now = time.monotonic()
        stage_changed = self._last is None or self._last[0] != event.stage
        if event.data is not None:  # a payload (a finished trial) is never dropped
            self._last, self._t = key, now
            self._emit(event)
        elif key != self._last and (stage_changed or event.done >= event.total or now - self._t > 0.03):
            self._last, self._t = key, now
            self._emit(event)
