"""Jobs the GUI tests run in the wizard's worker process (module-level, so
that a spawned child can import them)."""

from __future__ import annotations

import time
from pathlib import Path

from guiapp.core.errors import ModelError
from guiapp.core.run import quantize


def hold_quantize(job, stage: str, flag: str, limit_s: float, progress, cancel, overwrite=False):
    """quantize, stopping at the first progress report of ``stage`` (and
    touching ``flag``) until cancelled: a cancel test then always cancels
    that stage, however fast the machine."""
    reached = []

    def report(event):
        progress(event)
        if event.stage == stage and not reached:
            reached.append(True)
            Path(flag).touch()
            deadline = time.monotonic() + limit_s
            while not cancel.cancelled and time.monotonic() < deadline:
                time.sleep(0.005)
            if not cancel.cancelled:
                Path(flag + ".gave_up").touch()

    return quantize(job, report, cancel, overwrite=overwrite)


def fail(job, progress, cancel, overwrite=False):
    raise ModelError("synthetic failure for the test.", "Do something else.")
