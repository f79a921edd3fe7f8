"""The wizard on a laptop screen (issue 20): in a 1366x768 window no page
asks for more room than the window gives it, no form scrolls (or is cut)
sideways, the Calibration page's common path (images, strategy, accuracy
target, evaluation, target, output) is in view without scrolling, and the
advanced options open and close and are remembered. The same at
QT_SCALE_FACTOR 1.5 and 2: a 1366x768 logical window is then 2049x1152 and
2732x1536 pixels (a Surface-like 2736x1824 screen at 2 is 1368x912 logical).

Minimum sizes measured (BGR detector job, 1366x768; the page area is
1340x611, the same in logical pixels at 1.5 and 2): Model 684x206,
Preprocessing 988x414 (its form column's content 383 wide in a 406-pixel
viewport; the normalization and resize boxes above the fold), Calibration
1040x357 of content (1040x385 wanted) in 1340x611 with the advanced options
closed, Run 297x192, Results 728x521. They fit a 1280x720 window too
(1920x1080 at 150 %: page area 1254x563).

Run as a script (``python tests/test_gui_layout.py JOB``) it prints the
measures as JSON: the high-DPI test runs it under QT_SCALE_FACTOR.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WINDOW = (1366, 768)


def measure(window) -> dict:
    """Each page's minimum size, the page area, and each form scroll area's
    sideways range and content width."""
    from PySide6.QtWidgets import QScrollArea

    area = window.wizard.currentPage().size().toTuple()
    out = {"area": area, "dpr": window.devicePixelRatio(), "pages": {}, "scrolls": {}}
    for pid, p in window.pages.items():
        out["pages"][pid.name] = p.minimumSizeHint().toTuple()
        out["scrolls"][pid.name] = [
            {"hmax": s.horizontalScrollBar().maximum(), "vmax": s.verticalScrollBar().maximum(),
             "content": s.widget().minimumSizeHint().toTuple(), "viewport": s.viewport().size().toTuple()}
            for s in p.findChildren(QScrollArea) if s.widget() is not None and s.isVisibleTo(p)]
    return out


def check(m: dict, common_in_view: bool = True) -> None:
    aw, ah = m["area"]
    for name, (w, h) in m["pages"].items():
        assert w <= aw and h <= ah, f"{name} needs {w}x{h}, the window gives {aw}x{ah}"
    for name, scrolls in m["scrolls"].items():
        for s in scrolls:
            assert s["hmax"] == 0 and s["content"][0] <= s["viewport"][0], f"{name} scrolls or is cut sideways: {s}"
    if common_in_view:
        assert all(s["vmax"] == 0 for s in m["scrolls"]["CALIBRATION"]), m["scrolls"]["CALIBRATION"]


def walk(window, wait, path: Path) -> None:
    """Open ``path``, then Next to the Calibration page, advanced options closed."""
    from guiapp.gui.pages.ids import PageId

    window.load_job(path)
    wait(lambda: window.state.info is not None and not window.runner.busy)
    window.pages[PageId.CALIBRATION].advanced.set_opened(False)
    for _ in range(2):
        window.wizard.next()
        wait(lambda: not window.runner.busy)
    pp = window.pages[PageId.PREPROCESS]
    wait(lambda: pp.preview is not None and not window.runner.busy)


# ---- in the test process (scale 1)

if "pytest" in sys.modules:
    pytest.importorskip("PySide6")
    pytest.importorskip("pytestqt")

    from test_gui import dialogs, page, window  # noqa: E402,F401 - fixtures
    from test_gui_roundtrip import job_file  # noqa: E402

    @pytest.mark.parametrize("family", ["bgr-detector", "yolov8-export", "gray-nhwc", "rknn", "advanced", "demo-v1"])
    def test_every_page_fits_1366x768(qtbot, window, tmp_path, family):  # noqa: F811
        window.resize(*WINDOW)
        walk(window, lambda c: qtbot.waitUntil(c, timeout=60_000), job_file(tmp_path, family))
        m = measure(window)
        assert m["area"][0] >= WINDOW[0] - 40 and m["area"][1] >= WINDOW[1] - 180  # the frame, title and buttons
        check(m)
        cp = page(window, "CALIBRATION")
        for w in (cp.accuracy, cp.target_box, cp.output_edit, cp.advanced.button):  # the common path, in view
            bottom = w.mapTo(cp.scroll.viewport(), w.rect().bottomLeft()).y()
            assert 0 <= bottom <= cp.scroll.viewport().height(), w
        pp = page(window, "PREPROCESS")
        for w in (pp.normalization, pp.resize):  # the form above the fold; the equivalents may scroll
            assert w.mapTo(pp.form_scroll.viewport(), w.rect().bottomLeft()).y() <= pp.form_scroll.viewport().height()
        cp.advanced.set_opened(True)  # open, the page scrolls down but never sideways
        qtbot.wait(10)
        check(measure(window), common_in_view=False)

    def test_the_results_of_a_detector_fit(qtbot, window, tmp_path):  # noqa: F811
        """The fullest page: charts, the pictures with their caption and the
        scores, the summary and the warnings."""
        from dataclasses import replace

        window.resize(*WINDOW)
        walk(window, lambda c: qtbot.waitUntil(c, timeout=60_000), job_file(tmp_path, "detector-v1"))
        s = window.state
        s.calibration = replace(s.calibration, max_images=16)
        s.evaluation = replace(s.evaluation, max_images=12, latency_runs=3, per_layer_images=2, noise_images=4)
        s.output = tmp_path / "det.int8.onnx"
        window.wizard.next()
        qtbot.waitUntil(lambda: page(window, "RUN").done, timeout=300_000)
        window.wizard.next()
        rp = page(window, "RESULTS")
        qtbot.waitUntil(lambda: rp.pictures.picture.pixmap() is not None and not rp.pictures.picture.pixmap().isNull())
        qtbot.wait(50)
        check(measure(window))
        pics = rp.pictures
        assert pics.caption.geometry().top() >= pics.picture.geometry().bottom()  # never over the picture
        assert pics.scores.geometry().bottom() <= pics.height()
        for w in rp.charts.widgets.values():  # pyqtgraph lays a chart out at its title's width and crops the rest
            assert w.getPlotItem().geometry().width() <= w.width(), w.getPlotItem().titleLabel.text

    def test_a_long_path_does_not_widen_the_window(qtbot, window, tmp_path):  # noqa: F811
        deep = tmp_path / ("a-folder-with-a-long-name-" * 6) / ("and-another-one-" * 6)
        deep.mkdir(parents=True)
        window.resize(*WINDOW)
        walk(window, lambda c: qtbot.waitUntil(c, timeout=60_000), job_file(deep, "bgr-detector"))
        check(measure(window))
        assert page(window, "MODEL").path_label.toolTip().endswith("det.onnx")

    def test_the_advanced_options_are_remembered(qtbot, window, tmp_path):  # noqa: F811
        from guiapp.gui.main_window import MainWindow

        assert not page(window, "CALIBRATION").advanced.opened  # closed at first
        page(window, "CALIBRATION").advanced.set_opened(True)
        assert page(window, "CALIBRATION").options.isVisibleTo(page(window, "CALIBRATION"))
        again = MainWindow()
        qtbot.addWidget(again)
        assert page(again, "CALIBRATION").advanced.opened
        page(again, "CALIBRATION").advanced.set_opened(False)
        third = MainWindow()
        qtbot.addWidget(third)
        assert not page(third, "CALIBRATION").advanced.opened
        assert not page(third, "CALIBRATION").options.isVisibleTo(page(third, "CALIBRATION"))

    @pytest.mark.parametrize("scale", ["1.5", "2"])
    def test_high_dpi_fits_too(tmp_path, scale):
        path = job_file(tmp_path, "bgr-detector")
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QT_SCALE_FACTOR": scale}
        run = subprocess.run([sys.executable, __file__, str(path), str(tmp_path / "settings")], env=env,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        m = json.loads(run.stdout.strip().splitlines()[-1])
        assert m["dpr"] == float(scale) and m["grab"] == [round(v * float(scale)) for v in WINDOW]
        check(m)


def main(job: str, settings_dir: str) -> int:
    """Open ``job`` in a 1366x768 window at this process's scale and print measure() as JSON."""
    import time

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import onnxruntime  # noqa: F401 - before PySide6
    import pyqtgraph as pg
    from PySide6.QtCore import QCoreApplication, QSettings
    from PySide6.QtWidgets import QApplication

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, settings_dir)
    pg.setConfigOptions(imageAxisOrder="row-major")
    app = QApplication([sys.argv[0]])
    from guiapp.gui.main_window import MainWindow

    window = MainWindow()
    window.resize(*WINDOW)
    window.show()

    def wait(cond, timeout_s=120):
        end = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() > end:
                raise SystemExit("timed out")
            QCoreApplication.processEvents()
            time.sleep(0.01)

    walk(window, wait, Path(job))
    m = measure(window)
    m["grab"] = window.grab().size().toTuple()
    print(json.dumps(m))
    window.runner.stop(30)
    window.close()
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
