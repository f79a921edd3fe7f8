"""A process pool on this machine: spawned workers (never forked, so a Qt
app's state is never inherited), one pipe each (a worker killed in the
middle of a reply breaks only its own pipe), ONNX Runtime's threads set so
that workers x threads <= cores.

A worker that dies (a native crash, killed, out of memory) is replaced and
its item tried once more; a second death makes the item a ``Failed``.
Cancel terminates every worker at once (SIGTERM, then SIGKILL): they are
gone within a second, whatever they were running.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections import deque
from multiprocessing import connection, get_context
from typing import Any, Callable, Sequence

from ..errors import Cancelled, StudioError
from .base import WORKER_THREADS_ENV, ExecutorSpec, Failed, OnResult

POLL_S = 0.1
_STOP = None


def _worker(conn, threads: int, log_level: int = logging.WARNING) -> None:
    """A worker's loop: (index, fn, item) in, (index, ok, result or error) out."""
    os.environ[WORKER_THREADS_ENV] = str(threads)
    logging.getLogger().setLevel(log_level)  # as quiet as the caller (ONNX Runtime's quantizer logs on the root logger)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is _STOP:
            return
        index, fn, item = task
        try:
            reply = (index, True, fn(item))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            reply = (index, False, portable_error(exc))
        conn.send(reply)


def portable_error(exc: BaseException):
    """The exception itself when it survives pickling, else its words."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return StudioError(f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")


class _Worker:
    def __init__(self, ctx, threads: int) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, threads, logging.getLogger().getEffectiveLevel()), daemon=True,
                                name="guiapp-worker")
        self.proc.start()
        child.close()
        self.index: int | None = None  # the item it runs

    def end(self, grace_s: float = 0.5) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(grace_s)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(1.0)
        self.conn.close()


def death(proc) -> str:
    code = proc.exitcode
    if code is None:
        return "its worker stopped answering"
    if code < 0:
        return f"its worker was killed by signal {-code}"
    return f"its worker ended with exit code {code}"


class LocalExecutor:
    def __init__(self, spec: ExecutorSpec | None = None) -> None:
        self.workers, self.threads = (spec or ExecutorSpec()).plan()
        self._ctx = get_context("spawn")
        self._pool: list[_Worker] = []

    def _grow(self, n: int) -> None:
        self._pool = [w for w in self._pool if w.proc.is_alive()]
        while len(self._pool) < n:
            self._pool.append(_Worker(self._ctx, self.threads))

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], cancel, on_result: OnResult | None = None,
            catch: bool = False) -> list[Any]:
        if not items:
            return []
        self._grow(min(self.workers, len(items)))
        results: list[Any] = [None] * len(items)
        done = [False] * len(items)
        pending, tries = deque(range(len(items))), [0] * len(items)
        try:
            while not all(done):
                if cancel.cancelled:
                    raise Cancelled()
                for w in self._pool:
                    if w.index is None and pending:
                        w.index = pending.popleft()
                        tries[w.index] += 1
                        w.conn.send((w.index, fn, items[w.index]))
                busy = [w for w in self._pool if w.index is not None]
                ready = connection.wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], POLL_S)
                for w in busy:
                    if w.conn in ready or w.proc.sentinel in ready:
                        self._collect(w, (results, done, pending, tries), on_result, catch)
        except BaseException:
            self.close()
            raise
        return results

    def _collect(self, w: _Worker, books: tuple, on_result, catch: bool) -> None:
        results, done, pending, tries = books
        index = w.index
        try:
            got_index, ok, payload = w.conn.recv()
        except (EOFError, OSError):  # it died: replace it, try the item again once
            w.proc.join(1.0)
            why = death(w.proc)
            w.end()
            self._pool.remove(w)
            self._pool.append(_Worker(self._ctx, self.threads))
            if tries[index] < 2:
                pending.appendleft(index)
            else:
                results[index], done[index] = Failed(f"{why}, twice"), True
                if on_result is not None:
                    on_result(index, results[index])
            return
        w.index = None
        if not ok:
            if not catch or isinstance(payload, Cancelled):
                raise payload
            payload = Failed(str(payload), payload)
        results[got_index], done[got_index] = payload, True
        if on_result is not None:
            on_result(got_index, payload)

    def close(self) -> None:
        for w in self._pool:
            try:
                if w.proc.is_alive() and w.index is None:
                    w.conn.send(_STOP)
            except OSError:
                pass
            w.end()
        self._pool = []

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
