"""Walk the wizard as a user would and save a screenshot of every page.

    QT_QPA_PLATFORM=offscreen python tools/screenshots.py --out docs/screenshots/demo
    QT_QPA_PLATFORM=offscreen python tools/screenshots.py --model ../shared/assets/models/squeezenet1.1.onnx \\
        --calib ../shared/assets/imagenet/images --labels-csv ../shared/assets/imagenet/labels.csv \\
        --eval ../shared/assets/imagenet/images --out docs/screenshots/squeezenet --raw-too --check-norm bgr

    QT_QPA_PLATFORM=offscreen python tools/screenshots.py --job resources/detector/detector.job.json \
        --out docs/screenshots/detector
    QT_QPA_PLATFORM=offscreen python tools/screenshots.py --model ../shared/assets/models/ultraface_rfb320.onnx \
        --calib ../shared/assets/imagenet/images --eval ../shared/assets/photos --mean 127 --std 128 --resize stretch \
        --score-threshold 0.7 --check-norm rgb --out docs/screenshots/ultraface
    QT_QPA_PLATFORM=offscreen python tools/screenshots.py --model ../shared/assets/models/squeezenet1.0_nhwc.onnx \
        --calib ../shared/assets/imagenet/images --labels-csv ../shared/assets/imagenet/labels.csv \
        --eval ../shared/assets/imagenet/images --class-offset 1 --preset pm1 --color bgr --layout nhwc \
        --out docs/screenshots/bgr-nhwc
    QT_QPA_PLATFORM=offscreen python tools/screenshots.py --model tests/exports/yolov8n_shapes.onnx \
        --calib resources/detector/calib --eval resources/detector/eval/images --labels-from yolo \
        --out docs/screenshots/yolov8-export

Without --model or --job it uses the bundled demo job. With --max-drop the run
searches for that accuracy target and the Run page is shot during the search.
The window is 1366x768 unless --size is given; QT_SCALE_FACTOR=2 shoots it
as a high-DPI screen shows it (2732x1536 pixels). --color bgr switches the
channel order as the Preprocessing page's combo does (each colour keeps its
mean and std); --layout sets the input layout.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path)
    ap.add_argument("--calib", type=Path)
    ap.add_argument("--eval", type=Path)
    ap.add_argument("--labels-csv", type=Path)
    ap.add_argument("--labels-from", help="label source (default: csv with --labels-csv, else none)")
    ap.add_argument("--color", choices=("rgb", "bgr"), help="channel order, as the Preprocessing page's combo sets it")
    ap.add_argument("--layout", choices=("auto", "nchw", "nhwc"), help="the input's layout")
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
    for key in ("model", "calib", "eval", "labels_csv", "job"):  # absolute: the Model page shows the path
        if getattr(args, key) is not None:
            setattr(args, key, getattr(args, key).resolve())
    return args


class Shooter:
    """The window, and waiting and shooting without a blocking event loop."""

    def __init__(self, win, out: Path) -> None:
        self.win, self.out = win, out

    def wait_until(self, cond, timeout_s=600) -> None:
        from PySide6.QtCore import QCoreApplication, QEventLoop

        end = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() > end:
                raise SystemExit("timed out waiting")
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            time.sleep(0.02)  # processEvents returns at once when idle: do not spin a core during long runs

    def settle(self, ms=400) -> None:
        from PySide6.QtCore import QCoreApplication, QEventLoop

        end = time.monotonic() + ms / 1000
        while time.monotonic() < end:
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)

    def shoot(self, name: str) -> None:
        self.settle()
        self.win.grab().save(str(self.out / f"{name}.png"))
        print("saved", self.out / f"{name}.png")


def open_job(args, shots: Shooter, workdir: Path) -> None:
    """The bundled demo job, --job, or --model with the flags' settings."""
    from guiapp.core.demo import demo_folder
    from guiapp.core.data.preprocess import preset
    from guiapp.core.job import CalibrationSettings, EvalSettings
    from guiapp.core.run import load_job
    from guiapp.gui.pages.ids import PageId

    win = shots.win
    state, model_page = win.state, win.pages[PageId.MODEL]
    if args.model is None:
        job = load_job(args.job or demo_folder() / "demo.job.json")
        job = replace(job, output=workdir / (job.model.stem + ".int8.onnx"), cache=None)
        state.load_job(job, None)
        model_page.open_model(job.model)
        shots.wait_until(lambda: state.info is not None and not win.runner.busy)
        return
    model_page.open_model(args.model)
    shots.wait_until(lambda: state.info is not None and not win.runner.busy)
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
            folders=(args.eval,), labels_from=args.labels_from or ("csv" if args.labels_csv else "none"),
            labels_csv=args.labels_csv, max_images=args.eval_max_images, latency_runs=30, class_offset=args.class_offset,
        )
    if args.layout:
        state.preprocess = replace(state.preprocess, layout=args.layout)
    state.output = workdir / (args.model.stem + ".int8.onnx")
    model_page.initializePage()


def job_flags(args, win) -> None:
    """The flags that apply to any job: task options, quantization, the search."""
    from guiapp.core.job import TuningSettings
    from guiapp.gui.pages.ids import PageId

    state = win.state
    if args.score_threshold is not None:
        state.task = state.task.with_options("detection", replace(state.task.options_for("detection"),
                                                                  score_threshold=args.score_threshold))
    state.quantization = replace(state.quantization, per_channel=not args.per_tensor and state.quantization.per_channel,
                                 protect_outputs=not args.no_protect_outputs and state.quantization.protect_outputs)
    if args.max_drop is not None:
        state.tuning = TuningSettings(args.max_drop, args.tune_minutes)
    win.pages[PageId.MODEL]._show_task(state.task_guess)


def preprocessing(args, shots: Shooter) -> None:
    """The Preprocessing page: as set, with raw values, and the normalization check."""
    from guiapp.gui.pages.ids import PageId

    win = shots.win
    pp = win.pages[PageId.PREPROCESS]
    shots.wait_until(lambda: pp.preview is not None and not win.runner.busy)
    if args.color:
        pp.color_combo.setCurrentIndex(pp.color_combo.findData(args.color))
        shots.wait_until(lambda: not win.runner.busy)
    pp.step(3)
    shots.wait_until(lambda: not win.runner.busy)
    shots.shoot("2-preprocessing")
    if args.raw_too:
        before = pp.preset_combo.currentData()
        pp.preset_combo.setCurrentIndex(pp.preset_combo.findData("raw"))
        shots.shoot("2b-preprocessing-raw-warning")
        pp.preset_combo.setCurrentIndex(pp.preset_combo.findData(before))
    if args.check_norm:
        pp.color_combo.setCurrentIndex(pp.color_combo.findData(args.check_norm))
        pp._start_check()
        shots.wait_until(lambda: not pp.check_panel.running and pp.check_panel.check is not None)
        shots.shoot("2c-normalization-check")
        first = pp.check_panel.check
        if first.verdict == "worse":
            pp.check_panel.apply_selected()  # applies the suggestion and checks again
            shots.wait_until(lambda: not pp.check_panel.running and pp.check_panel.check is not first)
            shots.shoot("2d-normalization-check-applied")
        pp.right_tabs.setCurrentIndex(0)


def calibration(args, shots: Shooter) -> None:
    from guiapp.gui.pages.ids import PageId

    win = shots.win
    cp = win.pages[PageId.CALIBRATION]
    shots.wait_until(lambda: not win.runner.busy)
    if args.target != "onnxruntime":  # as a user does: pick the runtime (and the chip) on this page
        box = cp.target_box
        box.combo.setCurrentIndex(box.combo.findData(args.target))
        if "rknn" in box.views:
            box.views["rknn"].platform.setCurrentIndex(box.views["rknn"].platform.findData(args.rknn_platform))
        shots.settle()
        print("target:", win.state.target, "output:", win.state.output, "problem:", cp.problem_text() or "none")
    shots.shoot("3-calibration")


def run_and_results(args, shots: Shooter) -> None:
    from guiapp.gui.pages.ids import PageId

    win = shots.win
    rp = win.pages[PageId.RUN]
    if args.max_drop is not None:
        shots.wait_until(lambda: rp.trials.table.rowCount() >= 6 or rp.done, 3600)
    else:
        shots.wait_until(lambda: rp.running and "calibrate" in rp.bar.format().lower() or rp.done, 600)
    shots.settle(1500)
    shots.shoot("4-run")
    shots.wait_until(lambda: rp.done or not rp.running, 3600)  # an RKNN mmse build takes minutes
    shots.shoot("4b-run-done")
    win.wizard.next()
    shots.shoot("5-results")
    results = win.pages[PageId.RESULTS]
    if results.tabs.isTabVisible(1):
        results.tabs.setCurrentIndex(1)
        shots.shoot("5b-results-trials")
        results.tabs.setCurrentIndex(0)
    if results.pictures.isVisible():
        results.pictures.step(1)
        shots.wait_until(lambda: not win.runner.busy)
        shots.shoot("5c-results-next-image")


def main() -> int:
    args = parse_args()
    import onnxruntime  # noqa: F401 - before PySide6
    import pyqtgraph as pg
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, tempfile.mkdtemp(prefix="guiapp-shots-"))
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    app = QApplication([sys.argv[0]])
    app.setOrganizationName("QuantizationStudio")
    app.setApplicationName("guiapp-screenshots")
    from guiapp.gui import dialogs
    from guiapp.gui.main_window import MainWindow

    dialogs.ask = lambda *a, **k: True
    win = MainWindow()
    win.resize(*(int(v) for v in args.size.split("x")))
    win.show()
    args.out.mkdir(parents=True, exist_ok=True)
    shots = Shooter(win, args.out)
    open_job(args, shots, Path(tempfile.mkdtemp(prefix="guiapp-shots-out-")))
    job_flags(args, win)
    shots.shoot("1-model")
    win.wizard.next()
    preprocessing(args, shots)
    win.wizard.next()
    calibration(args, shots)
    win.wizard.next()
    run_and_results(args, shots)
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
