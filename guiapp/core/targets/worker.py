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
    lines: queue.Queue = queue.Queue()
    stderr_tail: collections.deque[str] = collections.deque(maxlen=40)

    def read_stdout() -> None:
        try:
            for raw in proc.stdout:
                lines.put(raw)
        except (OSError, ValueError):
            pass
        lines.put(_EOF)

    def read_stderr() -> None:
        try:
            for raw in proc.stderr:
                text = raw.decode("utf-8", "replace").rstrip()
                if text:
                    stderr_tail.append(text[-500:])
        except (OSError, ValueError):
            pass

    readers = [threading.Thread(target=f, daemon=True, name=f"guiapp-{f.__name__}") for f in (read_stdout, read_stderr)]
    for t in readers:
        t.start()
    try:
        try:
            proc.stdin.write(json.dumps(job).encode("utf-8"))
            proc.stdin.close()
        except OSError:
            pass  # it died at once: its exit code and stderr tell why
        result, error = None, None
        while True:
            if cancel.cancelled:
                raise Cancelled()
            try:
                raw = lines.get(timeout=poll_s)
            except queue.Empty:
                continue
            if raw is _EOF:
                break
            try:
                message = json.loads(raw)
            except ValueError:
                stderr_tail.append(raw.decode("utf-8", "replace").rstrip())
                continue
            if "result" in message:
                result = message["result"]
            elif "error" in message:
                error = message
            else:
                on_message(message)
        while True:  # stdout closed: it is ending
            try:
                code = proc.wait(poll_s)
                break
            except subprocess.TimeoutExpired:
                if cancel.cancelled:
                    raise Cancelled() from None
    finally:
        terminate(proc)  # a no-op when it has ended
        for t in readers:
            t.join(1.0)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
    if error is not None:
        raise WorkerError(str(error["error"]), error.get("trace", "") or "\n".join(stderr_tail))
    if result is None or code != 0:
        last = next((s for s in reversed(stderr_tail) if s.strip()), "")
        how = f"was killed by signal {-code}" if code < 0 else f"ended with exit code {code}"
        raise WorkerError(
            f"{what} {how} without a result" + (f"; its last words: {last[:300]}" if last else "") + ".",
            "\n".join(stderr_tail),
        )
    return result


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
