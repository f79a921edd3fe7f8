#!/usr/bin/env python3
"""GUI responsiveness, offscreen, each figure against its goal:

1. the longest gap between ticks of a 10 ms QTimer on the GUI thread during a
   full run of the demo job (goal <= 100 ms): the work runs on a worker thread;
2. time from a mean/std edit to the preview updated, for a 1920x1080 source
   image (goal <= 30 ms; the debounce included);
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
    job = load_job(demo_folder() / "demo.job.json")
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
    pp.browser.images, pp.browser.index = [big], 0
    pp.browser.load_current()
    pump_until(lambda: not win.runner.busy and pp._image is not None and pp._image.size == (1920, 1080))
    pump_until(lambda: pp.preview is not None and pp.preview.model_view.shape[0] == 96)
    marks = {}
    original_show = pp.view.show_preview
    graphics = pp.view.graphics
    original_paint = graphics.paintEvent

    def timed_show(*a, **k):
        original_show(*a, **k)
        marks["updated"] = time.perf_counter()

    def timed_paint(event):
        original_paint(event)
        if "updated" in marks:
            marks.setdefault("painted", time.perf_counter())

    pp.view.show_preview = timed_show
    graphics.paintEvent = timed_paint

    def edit_latency(edit) -> tuple[float, float]:
        """With the previous frame settled: from the edit to the preview
        updated (new numbers pushed to the plots), and to that frame painted."""
        settle = time.monotonic() + 0.15
        while time.monotonic() < settle:
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
        marks.clear()
        t0 = time.perf_counter()
        edit()
        pump_until(lambda: "painted" in marks, 5)
        return (marks["updated"] - t0) * 1000, (marks["painted"] - t0) * 1000

    box = pp.mean_edit.boxes()[0]
    mean_std = [edit_latency(lambda i=i: box.setValue(120.0 + (i % 7))) for i in range(30)]
    # and a resize-policy edit (a new resize of the 1920x1080 photo, not just normalization)
    resize = [
        edit_latency(lambda p=policy: pp.resize_combo.setCurrentIndex(pp.resize_combo.findData(p)))
        for policy in ("stretch", "shorter", "letterbox", "shorter")
    ]
    pp.view.show_preview = original_show
    graphics.paintEvent = original_paint
    box.setValue(job.preprocess.mean[0])

    # ---- 1. longest GUI-thread gap during a full run
    win.wizard.next()
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
    med = np.median(np.array(mean_std), axis=0)
    line("mean/std edit -> preview updated, 1920x1080 source (median)", float(med[0]), 30, "ms")
    print(f"{'  ... and that frame painted (median / max of 30)':58s} {med[1]:8.1f} / {max(p for _, p in mean_std):.1f} ms")
    rmed = np.median(np.array(resize), axis=0)
    line("resize-policy edit -> preview updated (median)", float(rmed[0]), 30, "ms")
    print(f"{'  ... and that frame painted (median)':58s} {rmed[1]:8.1f} ms")
    line("cold start to first window (median of 3)", float(np.median(cold)), 2, "s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
