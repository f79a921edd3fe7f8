"""Starting the wizard."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _has_display() -> bool:
    if sys.platform != "linux" or os.environ.get("QT_QPA_PLATFORM"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_gui(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    if not _has_display():
        print("No display found. The command line works without one, e.g. `guiapp demo` or `guiapp --help`;"
              " or set QT_QPA_PLATFORM=offscreen.", file=sys.stderr)
        return 2
    # onnxruntime before PySide6: on Windows the first msvcp140.dll loaded wins (ORT #26127).
    import onnxruntime  # noqa: F401
    import pyqtgraph as pg
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from .. import APP_NAME

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    app = QApplication.instance() or QApplication(argv)
    app.setApplicationName("guiapp")
    app.setOrganizationName("QuantizationStudio")
    app.setApplicationDisplayName(APP_NAME)
    from ..core.job import is_job_file
    from . import crashlog
    from .main_window import MainWindow

    window = None
    crashlog.install(lambda: window)
    window = MainWindow()
    window.show()
    job = next((a for a in argv[1:] if is_job_file(a)), None)
    if job:
        QTimer.singleShot(0, lambda: window.load_job(Path(job)))
    if "--self-test" in argv:
        QTimer.singleShot(300, lambda: _self_test(window))
    return app.exec()


def _self_test(window) -> None:
    """Packaging check: the first page is up; then quit cleanly."""
    from PySide6.QtWidgets import QApplication

    from .pages.ids import PageId

    ok = False
    try:  # whatever happens (a closed stdout included), the app exits: a packaging check must never hang
        ok = window.isVisible() and window.wizard.currentId() == PageId.MODEL
        print("self-test: first page shown" if ok else "self-test: FAILED", flush=True)
        ok = ok and _draws_detection_picture()
    except Exception:  # noqa: BLE001
        ok = False
    finally:
        QApplication.instance().exit(0 if ok else 1)


def _draws_detection_picture() -> bool:
    """The Results page's labelled boxes render (a frozen bundle once lacked Pillow's font module)."""
    from ..core.data.preprocess import PreprocessSpec
    from ..core.resources import resource_path
    from ..core.tasks.detection_view import detection_picture

    image = next(iter(sorted(resource_path("detector", "eval", "images").glob("*.jpg"))), None)
    box = {"boxes": [[4.0, 4.0, 40.0, 40.0]], "scores": [0.9], "classes": [0]}
    try:
        picture = detection_picture({"file": str(image), "fp32": box, "int8": box}, PreprocessSpec(size=(96, 96), resize="letterbox"))
    except Exception as exc:  # noqa: BLE001 - reported, and the self-test fails
        print(f"self-test: FAILED to draw a detection picture: {exc!r}", flush=True)
        return False
    print(f"self-test: detection picture drawn ({picture.width}x{picture.height})", flush=True)
    return True
