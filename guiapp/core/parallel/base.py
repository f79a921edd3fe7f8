"""The executor interface: map a top-level function over independent items,
in order, with cancel and worker faults handled."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from ..errors import JobError

KINDS = ("serial", "local", "ray")
WORKER_THREADS_ENV = "GUIAPP_WORKER_THREADS"  # ONNX Runtime's threads in a worker (so that workers x threads <= cores)


@dataclass(frozen=True)
class ExecutorSpec:
    """How work is spread: ``kind`` serial, local (processes here) or ray;
    ``workers`` None = auto (cores / threads per worker); ``threads`` ONNX
    Runtime's intra-op threads per worker (None: cores / workers);
    ``address`` a Ray cluster ("auto": the one ``ray start --head`` made;
    None: a local Ray instance)."""

    kind: str = "local"
    workers: int | None = None
    threads: int | None = None
    address: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise JobError("executor.kind", f"unknown executor {self.kind!r}", f"Choose one of {', '.join(KINDS)}.")
        if self.workers is not None and self.workers < 1:
            raise JobError("workers", f"must be at least 1, got {self.workers}")

    def plan(self, cores: int | None = None) -> tuple[int, int]:
        """(workers, threads per worker) for this machine's ``cores``."""
        cores = cores or available_cores()
        if self.workers is not None:
            workers = self.workers
            threads = self.threads or max(1, cores // workers)
        else:
            threads = self.threads or 1
            workers = max(1, cores // threads)
        return workers, threads


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Failed:
    """An item whose worker died twice (or raised): why, in words."""

    reason: str
    error: BaseException | None = None  # the exception, when the function raised one


OnResult = Callable[[int, Any], None]


class Executor(Protocol):
    workers: int

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], cancel, on_result: OnResult | None = None,
            catch: bool = False) -> list[Any]:
        """``[fn(item) ...]`` in order; an item whose worker died is retried
        once, then is a :class:`Failed`; an exception raised by ``fn`` is
        re-raised in the caller (a user error stays a user error), or with
        ``catch`` becomes that item's :class:`Failed`. Raises Cancelled within
        about a second of ``cancel``."""

    def close(self) -> None:
        """End the workers."""
