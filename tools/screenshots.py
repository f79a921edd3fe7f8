"""Walk the wizard as a user would and save a screenshot of every page.

    QT_QPA_PLATFORM=offscreen python tools/screenshots.py --out docs/screenshots/demo
    QT_QPA_PLATFORM=offscreen python tools/screenshots.py --model ../shared/assets/models/squeezenet1.1.onnx \\
        --calib ../shared/assets/imagenet/images --labels-csv ../shared/assets/imagenet/labels.csv \\
        --eval ../shared/assets/imagenet/images --out docs/screenshots/squeezenet --raw-too --check-norm bgr

    QT_QPA_PLATFORM=offscreen python tools/screenshots.py --job resources/detector/detector.job.json \
        --out docs/screenshots/detector
    QT_QPA_PLATFORM=offscreen python tools/screenshots.py --model ../shared/assets/models/ultraface_rfb320.onnx \
        --calib ../shared/assets/imagenet/images --eval ../shared/assets/photos --mean 127 --std 128 --resize stretch \
        --score-threshold 0.7 --out docs/screenshots/ultraface

Without --model or --job it uses the bundled demo job. With --max-drop the run
searches for that accuracy target and the Run page is shot during the search.
The window is 1366x768 unless --size is given.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path)
    ap.add_argument("--calib", type=Path)
    ap.add_argument("--eval", type=Path)
    ap.add_argument("--labels-csv", type=Path)
    ap.add_argument("--preset", help="normalization preset (default: what the app chose for the model)")
    ap.add_argument("--max-images", type=int, default=200)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", default="1366x768")
    ap.add_argument("--raw-too", action="store_true", help="also shoot the preprocessing page with the raw preset")
    ap.add_argument("--job", type=Path, help="a job file to load instead of the demo's")
    ap.add_argument("--mean", help="per-channel mean in pixel units, over the preset's (e.g. 127,127,127, or one value)")
    ap.add_argument("--std", help="per-channel std in pixel units, over the preset's")
    ap.add_argument("--method", default="minmax", help="calibration strategy")
    ap.add_argument("--resize", help="resize policy (default: the task's)")
    ap.add_argument("--class-offset", type=int, default=0)
    ap.add_argument("--eval-max-images", type=int, default=300)
    ap.add_argument("--score-threshold", type=float)
    ap.add_argument("--per-tensor", action="store_true")
    ap.add_argument("--no-protect-outputs", action="store_true")
    ap.add_argument("--max-drop", type=float, help="search for this accuracy target (points)")
    ap.add_argument("--tune-minutes", type=float, default=10.0)
    ap.add_argument("--target", default="onnxruntime", help="deployment target (rknn: chosen on the Calibration page)")
    ap.add_argument("--rknn-platform", default="rk3588")
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
    from guiapp.core.run import load_job
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
            time.sleep(0.02)  # processEvents returns at once when idle: do not spin a core during long runs

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
        job = load_job(args.job or demo_folder() / "demo.job.json")
        job = replace(job, output=workdir / (job.model.stem + ".int8.onnx"), cache=None)
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
        from guiapp.core.data.preprocess import preset

        if args.preset:
            state.preset_name = args.preset
            state.preprocess = preset(args.preset, state.info.image_input.channels, resize=args.resize or state.preprocess.resize,
                                      size=state.preprocess.size)
        elif args.resize:
            state.preprocess = replace(state.preprocess, resize=args.resize)
        n = state.info.image_input.channels
        for key in ("mean", "std"):
            if getattr(args, key):
                values = tuple(float(v) for v in getattr(args, key).split(","))
                state.preprocess = replace(state.preprocess, **{key: values * n if len(values) == 1 else values})
                state.preset_name = None
        state.calibration = CalibrationSettings(folders=(args.calib,), max_images=args.max_images, method=args.method)
        if args.eval:
            state.evaluation = EvalSettings(
                folders=(args.eval,), labels_from="csv" if args.labels_csv else "none", labels_csv=args.labels_csv,
                max_images=args.eval_max_images, latency_runs=30, class_offset=args.class_offset,
            )
        state.output = workdir / (model.stem + ".int8.onnx")
        model_page.initializePage()
    from guiapp.core.job import TuningSettings

    if args.score_threshold is not None:
        state.task = state.task.with_options("detection", replace(state.task.options_for("detection"),
                                                                  score_threshold=args.score_threshold))
    state.quantization = replace(state.quantization, per_channel=not args.per_tensor and state.quantization.per_channel,
                                 protect_outputs=not args.no_protect_outputs and state.quantization.protect_outputs)
    if args.max_drop is not None:
        state.tuning = TuningSettings(args.max_drop, args.tune_minutes)
    model_page._show_task(state.task_guess)
    shoot("1-model")
    win.wizard.next()
    pp = win.pages[PageId.PREPROCESS]
    wait_until(lambda: pp.preview is not None and not win.runner.busy)
    pp.step(3)
    wait_until(lambda: not win.runner.busy)
    shoot("2-preprocessing")
    if args.raw_too:
        before = pp.preset_combo.currentData()
        pp.preset_combo.setCurrentIndex(pp.preset_combo.findData("raw"))
        shoot("2b-preprocessing-raw-warning")
        pp.preset_combo.setCurrentIndex(pp.preset_combo.findData(before))
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
    if args.target != "onnxruntime":  # as a user does: pick the runtime (and the chip) on this page
        box = cp.target_box
        box.combo.setCurrentIndex(box.combo.findData(args.target))
        if "rknn" in box.views:
            box.views["rknn"].platform.setCurrentIndex(box.views["rknn"].platform.findData(args.rknn_platform))
        settle()
        print("target:", state.target, "output:", state.output, "problem:", cp.problem_text() or "none")
    shoot("3-calibration")
    win.wizard.next()
    rp = win.pages[PageId.RUN]
    if args.max_drop is not None:
        wait_until(lambda: rp.trials.table.rowCount() >= 6 or rp.done, 3600)
    else:
        wait_until(lambda: rp.running and "calibrate" in rp.bar.format().lower() or rp.done, 600)
    settle(1500)
    shoot("4-run")
    wait_until(lambda: rp.done or not rp.running, 3600)  # an RKNN mmse build takes minutes
    shoot("4b-run-done")
    win.wizard.next()
    shoot("5-results")
    results = win.pages[PageId.RESULTS]
    if results.tabs.isTabVisible(1):
        results.tabs.setCurrentIndex(1)
        shoot("5b-results-trials")
        results.tabs.setCurrentIndex(0)
    if results.pictures.isVisible():
        results.pictures.step(1)
        wait_until(lambda: not win.runner.busy)
        shoot("5c-results-next-image")
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
