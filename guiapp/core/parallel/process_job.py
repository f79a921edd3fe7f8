"""One long job in a child process of its own, with its progress, cancel and
death reported: the wizard runs every quantization this way, so that a
native crash (an odd model in ONNX Runtime), a kill or running out of memory
ends the child, never the window.

The child is spawned (a forked child of a Qt app would inherit Qt's state)
and keeps its temporary files in a folder the parent made and removes, so a
child that dies leaves nothing behind (nor half-copied outputs: the
``.partial`` files beside the job's outputs are swept). Cancel is passed on
and the job stops at its next check (and cleans up as it always does); a
child that neither stops nor answers is ended.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing import connection, get_context
from pathlib import Path
from typing import Any, Callable

from ..errors import Cancelled, StudioError
from ..progress import CancelToken, ProgressEvent
from .local import death, portable_error

HEARTBEAT_S = 1.0
SILENT_S = 60.0  # no word from the child for this long: it is ended
CANCEL_GRACE_S = 10.0  # after a cancel, the child's own clean-up may take this long
CRASH_ENV = "GUIAPP_TEST_WORKER_CRASH"  # tests: "abort" makes the child die at once (as a native crash would)


class WorkerDied(StudioError):
    """The child process ended without an answer (a crash, a kill, out of memory)."""


@dataclass(frozen=True)
class ProcessJob:
    """A picklable job: ``fn(*args, progress=..., cancel=..., **kwargs)``."""

    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: tuple = ()  # (name, value) pairs
    outputs: tuple[Path, ...] = ()  # files it writes (atomically): their half-copies are swept when it dies

    def __call__(self, progress, cancel) -> Any:
        return self.fn(*self.args, progress=progress, cancel=cancel, **dict(self.kwargs))


def _child(conn, job: ProcessJob, tmpdir: str, log_level: int = logging.WARNING) -> None:
    if os.environ.get(CRASH_ENV) == "abort":
        os.abort()
    logging.getLogger().setLevel(log_level)  # as quiet as the caller
    tempfile.tempdir = tmpdir  # the parent removes it, whatever happens here
    token = CancelToken()
    lock = threading.Lock()

    def send(message) -> None:
        with lock:
            conn.send(message)

    def listen() -> None:
        try:
            while True:
                if conn.recv() == "cancel":
                    token.cancel()
        except (EOFError, OSError):
            token.cancel()  # the parent is gone

    def beat() -> None:
        while True:
            time.sleep(HEARTBEAT_S)
            try:
                send(("beat", None))
            except (OSError, ValueError):
                return

    threading.Thread(target=listen, daemon=True).start()
    threading.Thread(target=beat, daemon=True).start()
    try:
        result = job(lambda e: send(("progress", e)), token)
        send(("result", result))
    except BaseException as exc:  # noqa: BLE001 - handed to the parent
        send(("error", portable_error(exc)))


def run_in_process(job: ProcessJob, progress: Callable[[ProgressEvent], None], cancel: CancelToken,
                   silent_s: float = SILENT_S) -> Any:
    """Run ``job`` in a spawned child; its progress comes back to ``progress``.
    Returns its result, raises its error, Cancelled, or WorkerDied."""
    ctx = get_context("spawn")
    conn, child_conn = ctx.Pipe()
    tmpdir = tempfile.mkdtemp(prefix="guiapp-job-")
    proc = ctx.Process(target=_child, args=(child_conn, job, tmpdir, logging.getLogger().getEffectiveLevel()), daemon=True,
                       name="guiapp-job")
    proc.start()
    child_conn.close()
    heard, cancel_sent = time.monotonic(), None
    try:
        while True:
            if cancel.cancelled and cancel_sent is None:
                _send(conn, "cancel")
                cancel_sent = time.monotonic()
            if cancel_sent is not None and time.monotonic() - cancel_sent > CANCEL_GRACE_S:
                raise Cancelled()
            ready = connection.wait([conn, proc.sentinel], 0.1)
            if conn in ready:
                try:
                    kind, payload = conn.recv()
                except (EOFError, OSError):
                    kind, payload = "died", None
                heard = time.monotonic()
                if kind == "progress":
                    progress(payload)
                elif kind == "result":
                    return payload
                elif kind == "error":
                    raise payload
                elif kind == "died":
                    raise _died(proc)
            elif proc.sentinel in ready:
                raise _died(proc)
            if time.monotonic() - heard > silent_s:
                raise WorkerDied(f"the worker process stopped answering for {silent_s:.0f} s and was ended; nothing was written.")
    finally:
        _end(proc)
        conn.close()
        shutil.rmtree(tmpdir, ignore_errors=True)
        if proc.exitcode != 0:
            sweep_partials(job.outputs)


def sweep_partials(outputs: tuple[Path, ...]) -> None:
    """Remove the half-copies atomic writes leave beside an output when killed mid-copy."""
    for out in outputs:
        out = Path(out)
        for p in out.parent.glob(f".{out.name}.*.partial") if out.parent.is_dir() else ():
            p.unlink(missing_ok=True)


def _send(conn, message) -> None:
    try:
        conn.send(message)
    except (OSError, ValueError):
        pass


def _died(proc) -> WorkerDied:
    proc.join(1.0)
    return WorkerDied(f"the worker process died ({death(proc).removeprefix('its worker ')}); nothing was written. "
                      "A native crash in ONNX Runtime or running out of memory are the usual causes: try again, "
                      "or with fewer images (calibration, evaluation).")


def _end(proc, grace_s: float = 0.5) -> None:
    if proc.is_alive():
        proc.terminate()
        proc.join(grace_s)
    if proc.is_alive():
        proc.kill()
        proc.join(1.0)
