"""The app's side of a toolkit worker: a process with its own Python that
reads one JSON job on stdin and writes JSON lines on stdout.

Cancel terminates the worker's whole process group (a toolkit may run its
work in threads that swallow exceptions, or in children): it is gone within
a second. A crash, a non-zero exit or an ``{"error"}`` line becomes a
WorkerError with the worker's last words; a worker that dies without a
result never leaves the caller waiting.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

from ..errors import Cancelled, StudioError
from ..progress import CancelToken

_EOF = object()


class WorkerError(StudioError):
    """The worker failed; ``detail`` holds its traceback or last stderr lines."""

    def __init__(self, message: str, detail: str = "") -> None:
        self.detail = detail
        super().__init__(message)


def clean_env() -> dict[str, str]:
    """The app's environment without what would make another Python load the
    app's packages."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def run_worker(
    argv: list[str],
    job: dict,
    cwd: Path,
    on_message: Callable[[dict], None],
    cancel: CancelToken,
    what: str = "the worker",
    poll_s: float = 0.05,
) -> dict:
    """Run ``argv`` in ``cwd`` with ``job`` on stdin; every JSON line but the
    result goes to ``on_message``. Returns the ``result``; raises WorkerError
    or Cancelled."""
    cancel.check()
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(cwd),
            env=clean_env(), start_new_session=(sys.platform != "win32"),
        )
    except OSError as exc:
        raise WorkerError(f"cannot start {what} ({argv[0]}): {exc.strerror or exc}") from None
    pipes = _Pipes(proc)
    try:
        try:
            proc.stdin.write(json.dumps(job).encode("utf-8"))
            proc.stdin.close()
        except OSError:
            pass  # it died at once: its exit code and stderr tell why
        result, error = pipes.read_all(on_message, cancel, poll_s)
        code = _wait(proc, cancel, poll_s)
    finally:
        terminate(proc)  # a no-op when it has ended
        pipes.close()
    if error is not None:
        raise WorkerError(str(error["error"]), error.get("trace", "") or "\n".join(pipes.stderr_tail))
    if result is None or code != 0:
        last = next((s for s in reversed(pipes.stderr_tail) if s.strip()), "")
        how = f"was killed by signal {-code}" if code < 0 else f"ended with exit code {code}"
        raise WorkerError(
            f"{what} {how} without a result" + (f"; its last words: {last[:300]}" if last else "") + ".",
            "\n".join(pipes.stderr_tail),
        )
    return result


class _Pipes:
    """The worker's stdout lines (in a queue) and the tail of its stderr,
    read on two threads so that neither pipe fills up and blocks it."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: queue.Queue = queue.Queue()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self.readers = [threading.Thread(target=f, daemon=True, name=f"guiapp-{f.__name__}")
                        for f in (self._read_stdout, self._read_stderr)]
        for t in self.readers:
            t.start()

    def _read_stdout(self) -> None:
        try:
            for raw in self.proc.stdout:
                self.lines.put(raw)
        except (OSError, ValueError):
            pass
        self.lines.put(_EOF)

    def _read_stderr(self) -> None:
        try:
            for raw in self.proc.stderr:
                text = raw.decode("utf-8", "replace").rstrip()
                if text:
                    self.stderr_tail.append(text[-500:])
        except (OSError, ValueError):
            pass

    def read_all(self, on_message: Callable[[dict], None], cancel: CancelToken, poll_s: float) -> tuple[dict | None, dict | None]:
        """Every line until stdout closes: (the result, an error line), each None when absent."""
        result, error = None, None
        while True:
            if cancel.cancelled:
                raise Cancelled()
            try:
                raw = self.lines.get(timeout=poll_s)
            except queue.Empty:
                continue
            if raw is _EOF:
                return result, error
            try:
                message = json.loads(raw)
            except ValueError:
                self.stderr_tail.append(raw.decode("utf-8", "replace").rstrip())
                continue
            if "result" in message:
                result = message["result"]
            elif "error" in message:
                error = message
            else:
                on_message(message)

    def close(self) -> None:
        for t in self.readers:
            t.join(1.0)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except (OSError, ValueError):
                pass


def _wait(proc: subprocess.Popen, cancel: CancelToken, poll_s: float) -> int:
    """stdout closed: the worker is ending. Its exit code."""
    while True:
        try:
            return proc.wait(poll_s)
        except subprocess.TimeoutExpired:
            if cancel.cancelled:
                raise Cancelled() from None


def terminate(proc: subprocess.Popen, grace_s: float = 0.5) -> None:
    """End the worker and everything it started: SIGTERM to its process
    group, then SIGKILL to whatever of the group is left after ``grace_s``
    (or as soon as the worker itself is gone)."""
    if proc.poll() is not None:
        return
    _signal(proc, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        pass
    _signal(proc, getattr(signal, "SIGKILL", signal.SIGTERM))
    proc.wait(2.0)


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        if sys.platform != "win32":
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass
