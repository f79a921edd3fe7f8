"""Work items for the executor tests (module-level: spawned workers import them)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from guiapp.core.errors import JobError


def square(x: int) -> int:
    return x * x


def pid_and_sleep(item: tuple[str, float]) -> int:
    """Writes its worker's pid to a file named after the item, then sleeps."""
    folder, seconds = item
    Path(folder, f"{os.getpid()}.pid").touch()
    time.sleep(seconds)
    return os.getpid()


def die_once(folder: str) -> str:
    """Kills its own worker the first time it runs (a marker file remembers); fine the second."""
    marker = Path(folder) / "died"
    if not marker.exists():
        marker.touch()
        os.kill(os.getpid(), 9)
    return "second try"


def always_die(_) -> None:
    os.kill(os.getpid(), 9)


def user_error(x: int) -> int:
    if x == 2:
        raise JobError("thing", "bad value 2", "Use another.")
    return x


MARKER_ENV = "GUIAPP_TEST_MARKER"  # a file the dying item creates (set before the workers start)


def shard_that_dies_once(shard):
    """An evaluation shard whose worker is killed the first time (a marker file remembers)."""
    from guiapp.core.evaluate.shards import compare_shard

    marker = Path(os.environ[MARKER_ENV])
    if not marker.exists():
        marker.touch()
        os.kill(os.getpid(), 9)
    return compare_shard(shard)


def shard_that_always_dies(shard):
    os.kill(os.getpid(), 9)


def batch_job_that_dies(item):
    """A batch job whose worker is killed: always when its output is named die*, once (a marker
    beside it remembers) when named once*; the others run as usual."""
    from guiapp.core.batch import run_one

    job, _ = item
    marker = job.output.with_suffix(".died")
    if job.output.name.startswith("die") or (job.output.name.startswith("once") and not marker.exists()):
        marker.touch()
        os.kill(os.getpid(), 9)
    return run_one(item)
