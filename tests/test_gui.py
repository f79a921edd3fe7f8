"""The wizard, driven as a user would (offscreen; dialogs answered by the tests)."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt  # noqa: E402
from PySide6.QtWidgets import QApplication, QWizard  # noqa: E402

import gui_jobs  # noqa: E402
from builders import convnet, image_folder, save  # noqa: E402
from guiapp.core.demo import demo_folder  # noqa: E402
from guiapp.core.job import CalibrationSettings, EvalSettings, Job  # noqa: E402
from guiapp.core.run import job_from_dict, load_job
from guiapp.core.data.preprocess import load_tensor  # noqa: E402

RUN_TIMEOUT = 180_000


class Dialogs:
    """Stands in for every modal dialog; records what was shown."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str, str]] = []
        self.questions: list[str] = []
        self.answer = True
        self.paths: list[str] = []

    def ask(self, parent, title, text):
        self.questions.append(text)
        return self.answer

    def show_error(self, parent, title, text, details=""):
        self.errors.append((title, text, details))

    def path(self, *args, **kwargs):
        return self.paths.pop(0) if self.paths else ""


@pytest.fixture
def dialogs(monkeypatch):
    from guiapp.gui import dialogs as module

    d = Dialogs()
    for name in ("ask", "show_error"):
        monkeypatch.setattr(module, name, getattr(d, name))
    for name in ("open_file", "save_file", "open_folder"):
        monkeypatch.setattr(module, name, d.path)
    return d


@pytest.fixture
def window(qtbot, tmp_path, dialogs):
    import pyqtgraph as pg

    from guiapp.gui.main_window import MainWindow

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    app = QApplication.instance()
    app.setOrganizationName("QuantizationStudioTests")
    app.setApplicationName("guiapp-tests")
    pg.setConfigOptions(imageAxisOrder="row-major")
    w = MainWindow()
    qtbot.addWidget(w)
    w.resize(1280, 800)
    w.show()
    yield w
    w.runner.stop(30)


def page(window, pid):
    from guiapp.gui.pages.ids import PageId

    return window.pages[PageId[pid]]


def open_model(qtbot, window, path):
    page(window, "MODEL").open_model(Path(path))
    qtbot.waitUntil(lambda: not window.runner.busy and (window.state.info is not None or page(window, "MODEL").blockers.isVisible()))


def next_button(window):
    return window.wizard.button(QWizard.WizardButton.NextButton)


def demo_state(window, tmp_path, qtbot, calib=24, evaluate=30):
    job = load_job(demo_folder() / "demo.job.json")
    job = replace(
        job,
        output=tmp_path / "demo.int8.onnx",
        calibration=replace(job.calibration, max_images=calib),
        evaluation=replace(job.evaluation, max_images=evaluate, latency_runs=5, per_layer_images=4),
    )
    window.state.load_job(job, None)
    open_model(qtbot, window, job.model)
    return job


def test_walk_the_demo_from_model_to_results(qtbot, window, tmp_path):
    demo_state(window, tmp_path, qtbot)
    assert next_button(window).isEnabled()
    qtbot.mouseClick(next_button(window), Qt.MouseButton.LeftButton)
    pp = page(window, "PREPROCESS")
    qtbot.waitUntil(lambda: pp.preview is not None)
    assert not pp.warnings.isVisible()  # the demo's settings are right
    qtbot.mouseClick(next_button(window), Qt.MouseButton.LeftButton)
    cp = page(window, "CALIBRATION")
    qtbot.waitUntil(lambda: not window.runner.busy and "300 images" in cp.folders.item(0).text())
    assert cp.isComplete()
    qtbot.mouseClick(next_button(window), Qt.MouseButton.LeftButton)
    rp = page(window, "RUN")
    qtbot.waitUntil(lambda: rp.running or rp.done)
    assert not window.wizard.button(QWizard.WizardButton.BackButton).isEnabled()
    qtbot.waitUntil(lambda: rp.done, timeout=RUN_TIMEOUT)
    assert (tmp_path / "demo.int8.onnx").is_file()
    commit = window.wizard.button(QWizard.WizardButton.CommitButton)
    assert commit.isEnabled()
    qtbot.mouseClick(commit, Qt.MouseButton.LeftButton)
    results = page(window, "RESULTS")
    assert window.wizard.currentPage() is results
    report = window.state.report
    assert report["accuracy"]["labeled_images"] > 0 and report["per_layer"]
    assert "FP32" in results.summary.text()
    charts = results.charts.png_bytes()
    assert len(charts) == 4 and all(png.startswith(b"\x89PNG") for png in charts.values())


def test_exports_and_rerun_with_worst_layers_in_float(qtbot, window, tmp_path, dialogs):
    demo_state(window, tmp_path, qtbot)
    window.wizard.setStartId(0)
    for _ in range(3):
        qtbot.mouseClick(next_button(window), Qt.MouseButton.LeftButton)
    rp = page(window, "RUN")
    qtbot.waitUntil(lambda: rp.done, timeout=RUN_TIMEOUT)
    window.wizard.next()
    results = page(window, "RESULTS")
    dialogs.paths = [str(tmp_path / "r.json"), str(tmp_path / "r.html")]
    results.export_json()
    results.export_html()
    assert '"per_layer"' in (tmp_path / "r.json").read_text()
    html = (tmp_path / "r.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "<table>" in html
    results.keep_box.setValue(2)
    results.rerun()
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=RUN_TIMEOUT)
    assert len(window.state.report["kept_float"]) == 2
    assert window.state.report["calibration"]["cache_used"] is True


def test_blockers_keep_next_disabled_with_the_reason(qtbot, window, tmp_path):
    q = tmp_path / "q.onnx"
    m = convnet()
    m.graph.node.insert(0, onnx.helper.make_node("QuantizeLinear", ["image", "s"], ["qi"]))
    m.graph.node.insert(1, onnx.helper.make_node("DequantizeLinear", ["qi", "s"], ["dq"]))
    m.graph.node[2].input[0] = "dq"
    m.graph.initializer.append(onnx.numpy_helper.from_array(np.array(0.1, np.float32), "s"))
    save(m, q)
    open_model(qtbot, window, q)
    mp = page(window, "MODEL")
    assert mp.blockers.isVisible() and "already quantized" in mp.blockers.text()
    assert not next_button(window).isEnabled()
    good = tmp_path / "good.onnx"
    convnet(good)
    open_model(qtbot, window, good)
    assert not mp.blockers.isVisible() and next_button(window).isEnabled()


def test_dynamic_size_needs_a_size_before_next(qtbot, window, tmp_path):
    p = tmp_path / "dyn.onnx"
    convnet(p, hw=("H", "W"))
    open_model(qtbot, window, p)
    mp = page(window, "MODEL")
    assert mp.size_row.isVisible() and not next_button(window).isEnabled()
    mp.height_box.setValue(40)
    mp.width_box.setValue(48)
    assert next_button(window).isEnabled()
    assert window.state.preprocess.size == (40, 48)
    other = tmp_path / "dyn2.onnx"  # another model: its size must be chosen again
    convnet(other, hw=("H", "W"))
    open_model(qtbot, window, other)
    assert window.state.preprocess.size is None and not next_button(window).isEnabled()
    assert mp.height_box.value() == 0


def test_broken_model_shows_an_error_and_the_wizard_stays_usable(qtbot, window, tmp_path, dialogs):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07 this is not a model" * 10)
    open_model(qtbot, window, bad)
    assert dialogs.errors and "not a valid ONNX model" in dialogs.errors[0][1]
    assert dialogs.errors[0][2]  # details for the expandable part
    assert not next_button(window).isEnabled()
    good = tmp_path / "good.onnx"
    convnet(good)
    open_model(qtbot, window, good)
    assert next_button(window).isEnabled()


def test_preview_numbers_are_cores_and_follow_edits(qtbot, window, tmp_path):
    demo_state(window, tmp_path, qtbot)
    window.wizard.next()
    pp = page(window, "PREPROCESS")
    qtbot.waitUntil(lambda: pp.preview is not None)
    path = pp._images[pp._index]
    spec = pp.resolved_spec()
    np.testing.assert_array_equal(pp.preview.tensor, load_tensor(path, spec))
    before = pp.preview
    box = pp.mean_edit.boxes()[0]
    box.setValue(0.0)
    qtbot.waitUntil(lambda: pp.preview is not before)
    assert pp.preset_combo.currentData() == "custom"
    np.testing.assert_array_equal(pp.preview.tensor, load_tensor(path, pp.resolved_spec()))
    assert pp.preview.stats[0].min >= 0  # R is no longer centred
    pp.unit_units.setChecked(True)
    assert pp.std_edit.boxes()[0].value() == pytest.approx(58.395 / 255, abs=1e-6)


def test_switching_units_keeps_the_exact_values(qtbot, window, tmp_path):
    demo_state(window, tmp_path, qtbot)
    window.wizard.next()
    pp = page(window, "PREPROCESS")
    qtbot.waitUntil(lambda: pp.preview is not None)
    pp.mean_edit.boxes()[0].setValue(100.0)
    pp.unit_units.setChecked(True)  # 100/255 = 0.392157: shown with 6 decimals
    pp.pixel_units.setChecked(True)
    pp.std_edit.boxes()[1].setValue(60.0)  # an unrelated edit reads every value back
    assert window.state.preprocess.mean[0] == 100.0
    assert pp.mean_edit.boxes()[0].value() == 100.0


def test_switching_to_raw_raises_the_warning(qtbot, window, tmp_path):
    demo_state(window, tmp_path, qtbot)
    window.wizard.next()
    pp = page(window, "PREPROCESS")
    qtbot.waitUntil(lambda: pp.preview is not None)
    assert not pp.warnings.isVisible()
    pp.preset_combo.setCurrentIndex(pp.preset_combo.findData("raw"))
    qtbot.waitUntil(lambda: pp.warnings.isVisible())
    assert "forget std" in pp.warnings.text()
    pp.preset_combo.setCurrentIndex(pp.preset_combo.findData("caffe"))
    qtbot.waitUntil(lambda: "BGR" in pp.warnings.text() or not pp.warnings.isVisible())
    assert pp.color_combo.currentData() == "bgr"


class HoldAt:
    """Makes the Run page's job (in its worker process) stop at the first
    progress report of one stage and stay there until it is cancelled: a
    cancel test then always cancels that stage, however fast the machine."""

    def __init__(self, monkeypatch, tmp_path, stage: str, limit_s: float = 60.0) -> None:
        from guiapp.core.parallel.process_job import ProcessJob
        from guiapp.gui.pages import run_page

        tmp_path.mkdir(parents=True, exist_ok=True)
        self.flag = tmp_path / f"reached-{stage}"

        def in_process(job, overwrite=False):
            return ProcessJob(gui_jobs.hold_quantize, (job, stage, str(self.flag), limit_s), (("overwrite", overwrite),),
                              (job.output,))

        monkeypatch.setattr(run_page, "quantize_in_process", in_process)

    @property
    def reached(self) -> bool:
        return self.flag.exists()

    @property
    def gave_up(self) -> bool:
        return Path(str(self.flag) + ".gave_up").exists()


def test_cancel_mid_run_writes_nothing_and_the_wizard_stays_usable(qtbot, window, tmp_path, monkeypatch):
    hold = HoldAt(monkeypatch, tmp_path / "flags", "calibrate")
    demo_state(window, tmp_path, qtbot)
    for _ in range(3):
        window.wizard.next()
    rp = page(window, "RUN")
    qtbot.waitUntil(lambda: hold.reached and "Calibrate" in rp.bar.format(), timeout=RUN_TIMEOUT)
    qtbot.mouseClick(rp.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not rp.running, timeout=10_000)
    assert "Cancelled" in rp.log.toPlainText()
    assert not (tmp_path / "demo.int8.onnx").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("demo")] == []
    assert window.wizard.button(QWizard.WizardButton.BackButton).isEnabled()
    assert rp.retry_button.isVisible()


def test_a_failing_run_shows_details_and_allows_going_back(qtbot, window, tmp_path, dialogs, monkeypatch):
    from guiapp.core.parallel.process_job import ProcessJob
    from guiapp.gui.pages import run_page

    monkeypatch.setattr(run_page, "quantize_in_process", lambda job, overwrite=False: ProcessJob(gui_jobs.fail, (job,)))
    demo_state(window, tmp_path, qtbot)
    for _ in range(3):
        window.wizard.next()
    rp = page(window, "RUN")
    qtbot.waitUntil(lambda: not rp.running and bool(dialogs.errors))
    title, text, details = dialogs.errors[-1]
    assert "synthetic failure" in text.lower() and "ModelError" in details
    assert window.wizard.button(QWizard.WizardButton.BackButton).isEnabled()
    window.wizard.back()
    assert window.wizard.currentPage() is page(window, "CALIBRATION")


def test_job_save_and_open_round_trip(qtbot, window, tmp_path, dialogs):
    job = demo_state(window, tmp_path, qtbot)
    window.state.calibration = replace(window.state.calibration, method="entropy", seed=7)
    dialogs.paths = [str(tmp_path / "saved.job.json")]
    window.save_job()
    saved = load_job(tmp_path / "saved.job.json")
    assert saved.calibration.method == "entropy" and saved.calibration.seed == 7 and saved.model == job.model
    window.new_job()
    assert window.state.model_path is None
    window.load_job(tmp_path / "saved.job.json")
    qtbot.waitUntil(lambda: window.state.info is not None and not window.runner.busy)
    assert window.state.calibration.method == "entropy" and window.state.output == tmp_path / "demo.int8.onnx"
    assert str(tmp_path / "saved.job.json") in window.settings.recent("jobs")


def test_settings_live_in_the_test_folder(qtbot, window, tmp_path):
    good = tmp_path / "good.onnx"
    convnet(good)
    open_model(qtbot, window, good)
    QSettings().sync()
    files = [p for p in (tmp_path / "settings").rglob("*.ini")]
    assert files and str(good) in files[0].read_text()


def test_closing_during_a_run_asks_cancels_and_waits(qtbot, window, tmp_path, dialogs, monkeypatch):
    hold = HoldAt(monkeypatch, tmp_path / "flags", "calibrate")
    demo_state(window, tmp_path, qtbot)
    for _ in range(3):
        window.wizard.next()
    rp = page(window, "RUN")
    qtbot.waitUntil(lambda: hold.reached and "Calibrate" in rp.bar.format(), timeout=RUN_TIMEOUT)
    dialogs.answer = False
    window.close()
    assert window.isVisible() and window.runner.busy  # "no": keeps running
    dialogs.answer = True
    window.close()
    assert not window.isVisible()
    assert not window.runner.busy
    assert not (tmp_path / "demo.int8.onnx").exists()
    assert len(dialogs.questions) == 2


def test_a_job_file_argument_opens_the_wizard_with_it(monkeypatch, tmp_path):
    import guiapp.__main__ as entry
    from guiapp.gui import app

    seen = []
    monkeypatch.setattr(app, "run_gui", lambda argv: seen.append(argv) or 0)
    job = tmp_path / "model.qsjob"
    job.write_text("{}")
    assert entry.main([str(job)]) == 0
    assert seen and seen[0][-1] == str(job)
    assert entry.main([]) == 0 and len(seen) == 2  # no arguments: the wizard too


def test_uncaught_errors_go_to_the_log_file_and_a_dialog(qtbot, window, tmp_path, dialogs, monkeypatch):
    import sys
    import threading

    from guiapp.gui import crashlog

    monkeypatch.setattr(crashlog, "log_path", lambda: tmp_path / "logs" / "guiapp.log")
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    monkeypatch.setattr(sys, "stderr", None)  # a windowed build
    path = crashlog.install(lambda: window)
    try:
        assert sys.stderr is not None
        try:
            raise ValueError("boom for the test")
        except ValueError:
            sys.excepthook(*sys.exc_info())
        assert dialogs.errors and "boom for the test" in dialogs.errors[-1][1] and str(path) in dialogs.errors[-1][1]
        for h in crashlog.log.handlers:
            h.flush()
        assert "boom for the test" in path.read_text()
    finally:
        for h in list(crashlog.log.handlers):
            crashlog.log.removeHandler(h)
            h.close()


def test_try_the_demo_loads_it_with_a_writable_output(qtbot, window, tmp_path, monkeypatch):
    from PySide6.QtCore import QStandardPaths

    monkeypatch.setattr(QStandardPaths, "writableLocation", lambda where: str(tmp_path / "Documents"))
    qtbot.mouseClick(page(window, "MODEL").demo_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.state.info is not None and not window.runner.busy)
    assert window.state.model_path.name == "model.onnx"
    assert window.state.output.parent == tmp_path / "Documents" / "Quantization Studio demo"
    assert window.state.output.parent.is_dir() and next_button(window).isEnabled()


def test_an_unwritable_output_folder_is_flagged_before_the_run(qtbot, window, tmp_path, monkeypatch):
    from guiapp.core import atomic

    demo_state(window, tmp_path, qtbot)
    ro = tmp_path / "ro"
    ro.mkdir()
    window.state.output = ro / "x.onnx"
    cp = page(window, "CALIBRATION")
    assert cp.problem_text() == ""
    # root writes anywhere, so the permission is simulated
    monkeypatch.setattr(atomic.os, "access", lambda path, mode: Path(path) != ro)
    assert "not writable" in cp.problem_text()


def test_a_second_input_gets_a_constant_on_the_model_page(qtbot, window, tmp_path):
    from builders import two_input_net

    two_input_net(tmp_path / "two.onnx")
    open_model(qtbot, window, tmp_path / "two.onnx")
    mp = page(window, "MODEL")
    assert mp.inputs_box.isVisible() and "scale" in mp.input_edits
    assert not next_button(window).isEnabled() and "needs scale" in mp.blockers.text()
    mp.input_edits["scale"].setText("2.5")
    assert next_button(window).isEnabled() and not mp.blockers.isVisible()
    assert window.state.to_job().inputs == {"scale": (2.5,)}


# ------------------------------------------------------------------ hostile inputs in the wizard

import corpus  # noqa: E402


@pytest.mark.parametrize(
    "build, words",
    [
        (corpus.random_bytes, "random.onnx"),
        (corpus.truncated, "truncated"),
        (corpus.dynamic_quantized, "already quantized"),
        (corpus.no_image_input, "No input looks like an image"),
        (corpus.float16, "float16"),
        (corpus.external_parent_escape, "outside the model's folder"),
        (corpus.over_2gb, "over 2 GB are not supported"),
    ],
    ids=["random bytes", "truncated", "ConvInteger", "no image input", "float16", "external ../", "over 2 GB"],
)
def test_hostile_models_in_the_wizard(qtbot, window, tmp_path, dialogs, build, words):
    model = build(tmp_path)
    open_model(qtbot, window, model)
    mp = page(window, "MODEL")
    shown = mp.blockers.text() + " ".join(e[1] for e in dialogs.errors)
    assert words in shown, shown
    assert not next_button(window).isEnabled()


def test_unreadable_images_are_counted_then_skipped(qtbot, window, tmp_path):
    demo_state(window, tmp_path, qtbot, calib=100, evaluate=20)
    folder = tmp_path / "mixed"
    bad = corpus.bad_images(folder)
    image_folder(folder, 6, seed=5, prefix="good")
    window.state.calibration = replace(window.state.calibration, folders=(folder,))
    window.wizard.next()
    window.wizard.next()
    cp = page(window, "CALIBRATION")
    qtbot.waitUntil(lambda: not window.runner.busy and "unreadable" in cp.folders.item(0).text())
    assert f"{len(bad) + 6} images, {len(bad)} unreadable" in cp.folders.item(0).text()
    window.wizard.next()
    rp = page(window, "RUN")
    qtbot.waitUntil(lambda: rp.done, timeout=RUN_TIMEOUT)
    cal = window.state.report["calibration"]
    assert cal["images_used"] == 6 and cal["images_skipped"] == len(bad)


def test_an_existing_output_is_asked_about(qtbot, window, tmp_path, dialogs):
    demo_state(window, tmp_path, qtbot)
    (tmp_path / "demo.int8.onnx").write_bytes(b"keep me")
    dialogs.answer = False
    for _ in range(3):
        window.wizard.next()
    rp = page(window, "RUN")
    qtbot.waitUntil(lambda: bool(dialogs.questions))
    assert "already exists" in dialogs.questions[-1] and not rp.running
    assert (tmp_path / "demo.int8.onnx").read_bytes() == b"keep me"
    dialogs.answer = True
    rp.start()
    qtbot.waitUntil(lambda: rp.done, timeout=RUN_TIMEOUT)
    assert (tmp_path / "demo.int8.onnx").read_bytes() != b"keep me"


@pytest.mark.parametrize("stage", ["prepare", "calibrate", "quantize", "evaluate"])
def test_cancel_at_every_stage_in_the_wizard(qtbot, window, tmp_path, stage, monkeypatch):
    from guiapp.core.progress import STAGES
    from guiapp.gui.pages.run_page import MARK, STAGE_TEXT

    hold = HoldAt(monkeypatch, tmp_path.parent / f"{tmp_path.name}-flags", stage)
    demo_state(window, tmp_path, qtbot, calib=24, evaluate=24)
    for _ in range(3):
        window.wizard.next()
    rp = page(window, "RUN")
    qtbot.waitUntil(lambda: hold.reached and STAGE_TEXT[stage] in rp.bar.format(), timeout=RUN_TIMEOUT)
    assert rp.running and not rp.done
    qtbot.mouseClick(rp.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not rp.running, timeout=15_000)
    assert not hold.gave_up and not rp.done
    assert "Cancelled; nothing was written." in rp.log.toPlainText()
    assert rp.bar.format() == "Cancelled"
    at = STAGES.index(stage)
    want = ["done"] * at + ["failed"] + ["pending"] * (len(STAGES) - at - 1)
    assert [rp.stages.item(i).text() for i in range(rp.stages.count())] == [
        f"{MARK[m]}  {STAGE_TEXT[s]}" for m, s in zip(want, STAGES)
    ]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("demo")] == []
    # still usable: Back works, and Retry runs the same job to the end
    assert window.wizard.button(QWizard.WizardButton.BackButton).isEnabled()
    assert rp.retry_button.isVisible()
    qtbot.mouseClick(rp.retry_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: rp.done, timeout=RUN_TIMEOUT)
    assert (tmp_path / "demo.int8.onnx").is_file()


# ---------------------------------------------------------------- tasks and the accuracy target


def _yolo_state(window, tmp_path, qtbot, **quant):
    from task_models import yolo_head_net

    from guiapp.core.job import QuantSettings, TuningSettings

    image_folder(tmp_path / "calib", 40, seed=1)
    image_folder(tmp_path / "eval", 30, seed=2)
    model = save(yolo_head_net(), tmp_path / "yolo.onnx")
    open_model(qtbot, window, model)  # as a user opens it: the task picks the resize policy
    job = replace(window.state.to_job(), output=tmp_path / "yolo.int8.onnx",
                  calibration=CalibrationSettings((tmp_path / "calib",), max_images=40), quantization=QuantSettings(**quant),
                  evaluation=EvalSettings((tmp_path / "eval",), max_images=30, latency_runs=3, per_layer_images=2))
    window.state.load_job(job, None)
    open_model(qtbot, window, model)
    return job, TuningSettings


def test_the_model_page_shows_the_task_and_detectors_get_boxes_on_results(qtbot, window, tmp_path):
    job, _ = _yolo_state(window, tmp_path, qtbot)
    mp = page(window, "MODEL")
    assert mp.task_box.isVisible() and "Object detection" in mp.task_reason.text()
    assert mp.option_views["detection"].isVisible()
    assert window.state.preprocess.resize == "letterbox"  # a detector sees the whole picture
    mp.task_combo.setCurrentIndex(mp.task_combo.findData("generic"))
    assert window.state.task.kind == "generic" and not mp.option_views["detection"].isVisible()
    mp.task_combo.setCurrentIndex(mp.task_combo.findData("detection"))
    mp.option_views["detection"].threshold_box.setValue(0.4)  # a task option lands in the job
    assert window.state.to_job().task.options_for("detection").score_threshold == 0.4
    mp.option_views["detection"].threshold_box.setValue(0.25)
    mp.task_combo.setCurrentIndex(mp.task_combo.findData("auto"))
    for _ in range(3):
        qtbot.mouseClick(next_button(window), Qt.MouseButton.LeftButton)
    rp = page(window, "RUN")
    qtbot.waitUntil(lambda: rp.done, timeout=RUN_TIMEOUT)
    window.wizard.next()
    results = page(window, "RESULTS")
    assert "AP50 vs FP32" in results.headline.text()
    assert results.pictures.isVisible() and "Boxes over score" in results.pictures.title.text()
    qtbot.waitUntil(lambda: results.pictures.picture.pixmap() is not None and not results.pictures.picture.pixmap().isNull())
    first = results.pictures.caption.text()
    results.pictures.step(1)
    assert results.pictures.caption.text() != first and "Image 2 of 12" in results.pictures.caption.text()


def test_a_cancelled_search_writes_the_best_model_so_far(qtbot, window, tmp_path, dialogs):
    job, TuningSettings = _yolo_state(window, tmp_path, qtbot, protect_outputs=False)
    window.state.tuning = TuningSettings(max_drop=0.5, minutes=10)
    for _ in range(3):
        qtbot.mouseClick(next_button(window), Qt.MouseButton.LeftButton)
    rp = page(window, "RUN")
    qtbot.waitUntil(lambda: rp.trials.table.rowCount() >= 2, timeout=RUN_TIMEOUT)
    assert rp.trials.isVisible()
    rp.cancel()
    qtbot.waitUntil(lambda: rp.done, timeout=RUN_TIMEOUT)
    assert job.output.is_file()
    tuning = window.state.report["tuning"]
    assert tuning["stopped"] == "cancelled"
    window.wizard.next()
    results = page(window, "RESULTS")
    assert results.tabs.isTabVisible(1) and results.trials.table.rowCount() == len(tuning["trials"])
    if not tuning["met"]:
        assert "Target missed" in results.headline.text()
    # Picking another trial writes that one instead.
    other = next(t for t in tuning["trials"] if t["index"] != tuning["chosen"])
    results.pick_trial(other["index"])
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=RUN_TIMEOUT)
    assert window.state.report["tuning"]["chosen"] == other["index"] and window.state.report["tuning"]["picked_by_user"]
    assert window.state.report["calibration"]["method"] == other["method"]
