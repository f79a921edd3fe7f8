"""The executor interface: every backend gives the serial results, in order;
a worker that dies is replaced and its item tried once more; cancel ends
every worker within a second; a user's error stays that error."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import scale_jobs
from guiapp.core.errors import Cancelled, JobError
from guiapp.core.parallel import ExecutorSpec, Failed, make_executor
from guiapp.core.progress import CancelToken


@pytest.fixture(params=["serial", "local"])
def executor(request):
    ex = make_executor(ExecutorSpec(request.param, workers=None if request.param == "serial" else 2))
    yield ex
    ex.close()


def test_results_come_back_in_order(executor):
    seen = []
    assert executor.map(scale_jobs.square, list(range(7)), CancelToken(), lambda i, r: seen.append(i)) == [i * i for i in range(7)]
    assert sorted(seen) == list(range(7))


def test_a_users_error_is_raised_as_itself_or_kept_as_the_items_failure(executor):
    with pytest.raises(JobError, match="bad value 2") as info:
        executor.map(scale_jobs.user_error, [1, 2, 3], CancelToken())
    assert info.value.field == "thing"
    got = executor.map(scale_jobs.user_error, [1, 2, 3], CancelToken(), catch=True)
    assert got[0] == 1 and got[2] == 3 and isinstance(got[1], Failed) and isinstance(got[1].error, JobError)


def test_a_worker_that_dies_is_replaced_and_its_item_tried_again(tmp_path):
    ex = make_executor(ExecutorSpec("local", workers=2))
    try:
        assert ex.map(scale_jobs.die_once, [str(tmp_path)], CancelToken()) == ["second try"]
        (out,) = ex.map(scale_jobs.always_die, [None], CancelToken())
        assert isinstance(out, Failed) and "killed by signal 9, twice" in out.reason
        assert ex.map(scale_jobs.square, [3, 4], CancelToken()) == [9, 16]  # the pool still works
    finally:
        ex.close()


def test_sigkill_in_the_middle_of_an_item_the_run_goes_on(tmp_path):
    """A worker killed from outside (the OOM killer, a user) mid-item: the item runs again elsewhere."""
    ex = make_executor(ExecutorSpec("local", workers=2))
    killed = []

    def killer():
        deadline = time.monotonic() + 30
        while not killed and time.monotonic() < deadline:
            for p in tmp_path.glob("*.pid"):
                os.kill(int(p.stem), signal.SIGKILL)
                p.unlink()
                killed.append(int(p.stem))
                return
            time.sleep(0.02)

    t = threading.Thread(target=killer)
    t.start()
    try:
        t0 = time.monotonic()
        (pid,) = ex.map(scale_jobs.pid_and_sleep, [(str(tmp_path), 1.0)], CancelToken())
        t.join()
        assert killed and pid != killed[0] and time.monotonic() - t0 < 30
    finally:
        ex.close()


def test_cancel_reaches_every_worker_within_a_second(tmp_path):
    ex = make_executor(ExecutorSpec("local", workers=2))
    token = CancelToken()
    box = {}

    def run():
        try:
            ex.map(scale_jobs.pid_and_sleep, [(str(tmp_path), 60.0)] * 4, token)
        except Cancelled:
            box["t"] = time.monotonic()

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("*.pid"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    pids = [int(p.stem) for p in tmp_path.glob("*.pid")]
    t0 = time.monotonic()
    token.cancel()
    t.join(10)
    assert box["t"] - t0 < 1.0
    time.sleep(0.2)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
