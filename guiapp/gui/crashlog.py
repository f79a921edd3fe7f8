"""Where the app's errors go: a log file in the user's data folder, and a
dialog. Windowed builds (PyInstaller without a console, a desktop launcher)
may have no stdout or stderr at all, so nothing here assumes them."""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from logging.handlers import RotatingFileHandler
from pathlib import Path

from PySide6.QtCore import QStandardPaths

log = logging.getLogger("guiapp")


def log_path() -> Path:
    folder = Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation) or Path.home() / ".guiapp")
    return folder / "guiapp.log"


def install(parent_getter) -> Path:
    """Send logging to a rotating file (and to stderr when there is one), and
    route uncaught exceptions, from any thread, to the log and a dialog."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:  # windowed build: give libraries somewhere to write
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 - lives as long as the app
    path = log_path()
    handlers: list[logging.Handler] = []
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(RotatingFileHandler(path, maxBytes=1_000_000, backupCount=2, encoding="utf-8"))
    except OSError:
        pass  # a read-only home: the dialog still tells the user
    if sys.stderr is not None and getattr(sys.stderr, "isatty", lambda: False)():
        handlers.append(logging.StreamHandler(sys.stderr))
    for h in handlers:
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(h)
    log.setLevel(logging.INFO)

    def on_exception(exc_type, exc, tb) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        details = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("uncaught exception\n%s", details)
        from . import dialogs

        dialogs.show_error(
            parent_getter(), "Unexpected error",
            f"Something went wrong: {exc_type.__name__}: {exc}\n\nThe details are saved in {path}.", details,
        )

    sys.excepthook = on_exception
    threading.excepthook = lambda args: log.error(
        "uncaught exception in thread %s\n%s", args.thread.name if args.thread else "?",
        "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)),
    )
    log.info("started; log at %s", path)
    return path
