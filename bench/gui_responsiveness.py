#!/usr/bin/env python3
"""GUI responsiveness, offscreen, each figure against its goal:

1. the longest gap between ticks of a 10 ms QTimer on the GUI thread during a
   full run of the demo job (goal <= 100 ms): the work runs on a worker thread;
2. time from a mean/std edit to the preview updated, for a 1920x1080 source
   image (goal <= 30 ms; the 15 ms debounce included);
3. cold start: from launching a fresh Python process to the first window shown
   (goal <= 2 s).

    QT_QPA_PLATFORM=offscreen python bench/gui_responsiveness.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cold_start() -> float:
    code = (
        "import os, time, sys\n"
        "import onnxruntime\n"
        "from PySide6.QtCore import QTimer\n"
        "from PySide6.QtWidgets import QApplication\n"
        "import pyqtgraph as pg\n"
        "pg.setConfigOptions(imageAxisOrder='row-major')\n"
        "app = QApplication([])\n"
        "from guiapp.gui.main_window import MainWindow\n"
        "w = MainWindow(); w.show()\n"
        "QTimer.singleShot(0, lambda: (print(time.time() - float(os.environ['T0'])), app.quit()))\n"
        "app.exec()\n"
    )
    env = dict(os.environ, T0=repr(time.time()), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    import numpy as np
    import onnxruntime  # noqa: F401 - before PySide6
    import pyqtgraph as pg
    from PIL import Image
    from PySide6.QtCore import QCoreApplication, QElapsedTimer, QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, tempfile.mkdtemp())
    pg.setConfigOptions(imageAxisOrder="row-major")
    app = QApplication([])
    app.setOrganizationName("QuantizationStudioBench")
    from guiapp.core.demo import demo_folder
    from guiapp.core.job import Job
    from guiapp.gui import dialogs
    from guiapp.gui.main_window import MainWindow
    from guiapp.gui.pages.ids import PageId

    dialogs.ask = lambda *a, **k: True
    win = MainWindow()
    win.resize(1280, 800)
    win.show()

    def pump_until(cond, timeout=600.0):
        t = time.monotonic()
        while not cond():
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
            if time.monotonic() - t > timeout:
                raise SystemExit("timed out")

    out_dir = Path(tempfile.mkdtemp(prefix="guiapp-bench-"))
    job = Job.load(demo_folder() / "demo.job.json")
    job = replace(job, output=out_dir / "demo.int8.onnx", cache=None)
    win.state.load_job(job, None)
    win.pages[PageId.MODEL].open_model(job.model)
    pump_until(lambda: win.state.info is not None and not win.runner.busy)

    # ---- 2. edit -> preview, 1920x1080 source
    win.wizard.next()
    pp = win.pages[PageId.PREPROCESS]
    pump_until(lambda: pp.preview is not None and not win.runner.busy)
    rng = np.random.default_rng(0)
    big = out_dir / "big.jpg"
    Image.fromarray(rng.integers(0, 255, (1080, 1920, 3), dtype=np.uint8)).save(big, quality=90)
    pp._images, pp._index = [big], 0
    pp.load_current()
    pump_until(lambda: not win.runner.busy and pp._image is not None and pp._image.size == (1920, 1080))
    pump_until(lambda: pp.preview is not None and pp.preview.model_view.shape[0] == 96)
    shown = {}
    original = pp.view.show_preview

    def timed_show(*a, **k):
        original(*a, **k)
        shown["t"] = time.perf_counter()

    pp.view.show_preview = timed_show
    latencies = []
    box = pp.mean_edit.boxes()[0]
    for i in range(30):
        shown.clear()
        t0 = time.perf_counter()
        box.setValue(120.0 + (i % 7))
        pump_until(lambda: "t" in shown, 5)
        latencies.append((shown["t"] - t0) * 1000)
    # and a resize-policy edit (a new resize of the 1920x1080 photo, not just normalization)
    resize_lat = []
    for policy in ("stretch", "shorter", "letterbox", "shorter"):
        shown.clear()
        t0 = time.perf_counter()
        pp.resize_combo.setCurrentIndex(pp.resize_combo.findData(policy))
        pump_until(lambda: "t" in shown, 5)
        resize_lat.append((shown["t"] - t0) * 1000)
    pp.view.show_preview = original
    box.setValue(job.preprocess.mean[0])

    # ---- 1. longest GUI-thread gap during a full run
    win.wizard.next()
    cp = win.pages[PageId.CALIBRATION]
    pump_until(lambda: not win.runner.busy)
    gaps = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.elapsed()]

    def tick():
        now = clock.elapsed()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    win.wizard.next()
    rp = win.pages[PageId.RUN]
    t0 = time.monotonic()
    pump_until(lambda: rp.done or (not rp.running and time.monotonic() - t0 > 2), 900)
    run_s = time.monotonic() - t0
    timer.stop()
    assert rp.done, rp.log.toPlainText()

    cold = [cold_start() for _ in range(3)]
    win.close()

    def line(name, value, goal, unit):
        status = "OK" if value <= goal else "OVER"
        print(f"{name:58s} {value:8.1f} {unit:3s} goal <= {goal:g} {unit}  {status}")

    print(f"\nGUI responsiveness ({os.environ['QT_QPA_PLATFORM']}), demo model, run of {run_s:.1f} s with {len(gaps)} ticks")
    line("longest gap between 10 ms ticks during the run", max(gaps), 100, "ms")
    print(f"{'  (ticks: median / p99)':58s} {np.median(gaps):8.1f} / {np.percentile(gaps, 99):.1f} ms")
    line("mean/std edit -> preview shown, 1920x1080 source (median)", float(np.median(latencies)), 30, "ms")
    print(f"{'  (max over 30 edits)':58s} {max(latencies):8.1f} ms")
    line("resize-policy edit -> preview shown (median)", float(np.median(resize_lat)), 30, "ms")
    line("cold start to first window (median of 3)", float(np.median(cold)), 2, "s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
