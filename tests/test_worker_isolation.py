"""Each quantization in its own process: a worker that dies (a native crash,
a kill) is reported in words, nothing is written, the window stays usable
and runs the next job; a worker that stops answering is ended."""

from __future__ import annotations

import os
import signal
import time

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

import gui_jobs  # noqa: E402,F401 - the children import it
from guiapp.core.errors import Cancelled  # noqa: E402
from guiapp.core.parallel.process_job import CRASH_ENV, ProcessJob, WorkerDied, run_in_process  # noqa: E402
from guiapp.core.progress import CancelToken  # noqa: E402
from test_gui import demo_state, dialogs, page, window  # noqa: E402,F401


def test_the_wizard_survives_a_worker_that_aborts_and_runs_the_next_job(qtbot, window, tmp_path, dialogs, monkeypatch):
    demo_state(window, tmp_path, qtbot)
    monkeypatch.setenv(CRASH_ENV, "abort")  # the child dies at once, as a native crash would
    for _ in range(3):
        window.wizard.next()
    rp = page(window, "RUN")
    qtbot.waitUntil(lambda: not rp.running and bool(dialogs.errors), timeout=120_000)
    title, text, _ = dialogs.errors[-1]
    assert "worker process died" in text and "signal 6" in text and "nothing was written" in text
    assert not (tmp_path / "demo.int8.onnx").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".demo")] == []
    monkeypatch.delenv(CRASH_ENV)
    qtbot.mouseClick(rp.retry_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: rp.done, timeout=300_000)
    assert (tmp_path / "demo.int8.onnx").is_file()


def sleeper(seconds: float, progress, cancel):
    """Sleeps without ever checking cancel (a job stuck in native code)."""
    progress("started")
    time.sleep(seconds)
    return "slept"


def echo_pid(progress, cancel):
    progress(os.getpid())
    time.sleep(60)


def test_a_killed_worker_is_reported_in_words():
    pids = []

    def on_progress(pid):
        if not pids:
            pids.append(pid)
            os.kill(pid, signal.SIGKILL)

    t0 = time.monotonic()
    with pytest.raises(WorkerDied, match="killed by signal 9"):
        run_in_process(ProcessJob(echo_pid), on_progress, CancelToken())
    assert time.monotonic() - t0 < 30


def test_a_worker_that_stops_answering_is_ended():
    # The child beats every second; a parent that waits half a second for a word ends it.
    with pytest.raises(WorkerDied, match="stopped answering"):
        run_in_process(ProcessJob(sleeper, (30.0,)), lambda e: None, CancelToken(), silent_s=0.5)


def test_cancel_ends_a_worker_that_never_checks_it(monkeypatch):
    import guiapp.core.parallel.process_job as pj

    monkeypatch.setattr(pj, "CANCEL_GRACE_S", 1.0)
    token = CancelToken()

    def on_progress(event):
        token.cancel()

    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        run_in_process(ProcessJob(sleeper, (60.0,)), on_progress, token)
    assert time.monotonic() - t0 < 10
