"""Walk the wizard as a user would and save a screenshot of every page.

    QT_QPA_PLATFORM=offscreen python tools/screenshots.py --out docs/screenshots/demo
    QT_QPA_PLATFORM=offscreen python tools/screenshots.py --model ../shared/assets/models/squeezenet1.1.onnx \\
        --calib ../shared/assets/imagenet/images --labels-csv ../shared/assets/imagenet/labels.csv \\
        --eval ../shared/assets/imagenet/images --out docs/screenshots/squeezenet --raw-too --check-norm bgr

Without --model it uses the bundled demo job. The window is 1280x800 unless
--size is given.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path)
    ap.add_argument("--calib", type=Path)
    ap.add_argument("--eval", type=Path)
    ap.add_argument("--labels-csv", type=Path)
    ap.add_argument("--preset", default="imagenet")
    ap.add_argument("--resize", default="shorter", help="resize policy for --model (default: shorter)")
    ap.add_argument("--max-images", type=int, default=200)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", default="1280x800")
    ap.add_argument("--raw-too", action="store_true", help="also shoot the preprocessing page with the raw preset")
    ap.add_argument("--check-norm", metavar="COLOR", help="also run the normalization check with this channel order "
                    "(rgb or bgr) and shoot its result; the preset is then restored")
    args = ap.parse_args()

    import onnxruntime  # noqa: F401 - before PySide6
    import pyqtgraph as pg
    from PySide6.QtCore import QCoreApplication, QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    settings_dir = tempfile.mkdtemp(prefix="guiapp-shots-")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, settings_dir)
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    app = QApplication([sys.argv[0]])
    app.setOrganizationName("QuantizationStudio")
    app.setApplicationName("guiapp-screenshots")
    from guiapp.core.demo import demo_folder
    from guiapp.core.job import Job
    from guiapp.gui import dialogs
    from guiapp.gui.main_window import MainWindow
    from guiapp.gui.pages.ids import PageId

    dialogs.ask = lambda *a, **k: True
    w, h = (int(v) for v in args.size.split("x"))
    win = MainWindow()
    win.resize(w, h)
    win.show()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="guiapp-shots-out-"))

    def wait_until(cond, timeout_s=600):
        loop_until = QTimer()
        loop_until.setSingleShot(True)
        loop_until.start(int(timeout_s * 1000))
        while not cond():
            if not loop_until.isActive():
                raise SystemExit("timed out waiting")
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)

    def settle(ms=400):
        t = QTimer()
        t.setSingleShot(True)
        t.start(ms)
        while t.isActive():
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)

    def shoot(name):
        settle()
        win.grab().save(str(out / f"{name}.png"))
        print("saved", out / f"{name}.png")

    state = win.state
    if args.model is None:
        job = Job.load(demo_folder() / "demo.job.json")
        job = replace(job, output=workdir / "demo.int8.onnx", cache=None)
        model = job.model
    else:
        model = args.model
    model_page = win.pages[PageId.MODEL]
    model_page.open_model(model)
    wait_until(lambda: state.info is not None and not win.runner.busy)
    if args.model is None:
        state.load_job(job, None)
        state.info = None
        model_page.open_model(job.model)
        wait_until(lambda: state.info is not None and not win.runner.busy)
    else:
        from guiapp.core.job import CalibrationSettings, EvalSettings
        from guiapp.core.preprocess import preset

        state.preset_name = args.preset
        state.preprocess = preset(args.preset, state.info.image_input.channels, resize=args.resize)
        state.calibration = CalibrationSettings(folders=(args.calib,), max_images=args.max_images)
        if args.eval:
            state.evaluation = EvalSettings(
                folders=(args.eval,), labels_from="csv" if args.labels_csv else "none", labels_csv=args.labels_csv,
                max_images=300, latency_runs=30,
            )
        state.output = workdir / (model.stem + ".int8.onnx")
    shoot("1-model")
    win.wizard.next()
    pp = win.pages[PageId.PREPROCESS]
    wait_until(lambda: pp.preview is not None and not win.runner.busy)
    pp.step(3)
    wait_until(lambda: not win.runner.busy)
    shoot("2-preprocessing")
    if args.raw_too:
        pp.preset_combo.setCurrentIndex(pp.preset_combo.findData("raw"))
        shoot("2b-preprocessing-raw-warning")
        pp.preset_combo.setCurrentIndex(pp.preset_combo.findData(args.preset))
    if args.check_norm:
        pp.color_combo.setCurrentIndex(pp.color_combo.findData(args.check_norm))
        pp._start_check()
        wait_until(lambda: not pp.check_panel.running and pp.check_panel.check is not None)
        shoot("2c-normalization-check")
        first = pp.check_panel.check
        if first.verdict == "worse":
            pp.check_panel.apply_selected()  # applies the suggestion and checks again
            wait_until(lambda: not pp.check_panel.running and pp.check_panel.check is not first)
            shoot("2d-normalization-check-applied")
        pp.right_tabs.setCurrentIndex(0)
    win.wizard.next()
    cp = win.pages[PageId.CALIBRATION]
    wait_until(lambda: not win.runner.busy)
    shoot("3-calibration")
    win.wizard.next()
    rp = win.pages[PageId.RUN]
    wait_until(lambda: rp.running and "calibrate" in rp.bar.format().lower() or rp.done, 600)
    settle(1500)
    shoot("4-run")
    wait_until(lambda: rp.done or not rp.running, 1800)
    shoot("4b-run-done")
    win.wizard.next()
    shoot("5-results")
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
