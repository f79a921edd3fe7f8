"""What the form shows is what the job holds (issue 20): open a job through
File > Open job, walk the Model, Preprocessing and Calibration pages, save it
through File > Save job: the same job comes back, and the widgets showed its
values on the way.

The job families, one job each (every field of the job is away from its
default in at least one; paths are relative to the job file):

- ``demo-v1``: the bundled demo job as it ships (a version 1 file): RGB ImageNet,
  shorter side + centre crop, class sub-folders, output, cache and report unset.
- ``detector-v1``: the bundled detector job (version 1): x/255, letterbox pad 114,
  YOLO labels, output unset.
- ``bgr-detector``: BGR x/255 (the issue's case), letterbox, percentile with more
  decimals than the box shows, every detection option (NMS and match IoU are not
  in the form), an accuracy target, a YOLO labels folder.
- ``unit-values``: torchvision 0..1 values (CIFAR mean/std, 6 decimals in 0..1
  units), shorter side 256, bicubic, MSE, CSV labels.
- ``gray-nhwc``: one channel, NHWC chosen in the job, stretch, nearest,
  entropy, classification chosen.
- ``advanced``: every quantization option away from its default, the ones the
  form has no widget for too (weight type, op types in float, keep_float,
  output protection), EMA with its constant, calibration batch, two calibration
  and two evaluation folders, a class offset, the evaluation counts, a report
  and a cache path.
- ``rknn``, ``tensorrt``, ``openvino``: each target with its options (RKNN's chip
  and Python, TensorRT's version).
- ``yolov8-export``: the Ultralytics export (dynamic input, no size in the job:
  the file's 160), COCO labels, the dense task's options held for another task.
- ``yolov8-sized``: the same export at 256x320 chosen in the job, detection
  chosen, score threshold 0.001, area interpolation.
- ``two-inputs``: a model with a second input and its constant.
- ``dense-unet``: the TorchScript U-Net export, dense task with a mask threshold.

Every family is also shown in 0..1 units before it is saved (units are a view;
the job keeps pixel units). What the round trip caught is in the report of
issue 20: a BGR job's six mean/std boxes, the cache and report paths, a
dynamic export's unset size, an unset output, the RKNN Python remembered on
the machine written into jobs of other targets, and values rounded or clamped
by the boxes (percentile, allowed drop, minutes, score threshold).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QLocale, Qt  # noqa: E402
from PySide6.QtWidgets import QDoubleSpinBox  # noqa: E402

from builders import convnet, image_folder, two_input_net  # noqa: E402
from guiapp.core.data.preprocess import matching_preset  # noqa: E402
from guiapp.core.data.preview import channel_names  # noqa: E402
from guiapp.core.run import load_job  # noqa: E402
from guiapp.core.targets.registry import TARGETS  # noqa: E402
from guiapp.gui.widgets import numbers_text  # noqa: E402
from test_gui import dialogs, next_button, page, window  # noqa: E402,F401 - fixtures

ROOT = Path(__file__).resolve().parents[1]
LINKS = {
    "demo.onnx": "resources/demo/model.onnx", "demo_calib": "resources/demo/calib", "demo_eval": "resources/demo/eval",
    "demo_labels.csv": "resources/demo/labels.csv", "det.onnx": "resources/detector/model.onnx",
    "det_calib": "resources/detector/calib", "det_eval": "resources/detector/eval",
    "yolov8.onnx": "tests/exports/yolov8n_shapes.onnx", "unet.onnx": "tests/exports/unet_matte.onnx",
}
CIFAR_MEAN = [0.4914 * 255, 0.4822 * 255, 0.4465 * 255]
CIFAR_STD = [0.2470 * 255, 0.2435 * 255, 0.2616 * 255]


def _det(**over) -> dict:
    return {"model": "det.onnx", "calibration": {"folders": ["det_calib"], "max_images": 40},
            "evaluation": {"folders": ["det_eval/images"], "labels_from": "yolo"}, **over}


def _demo(**over) -> dict:
    return {"model": "demo.onnx", "output": "out/demo.int8.onnx", "calibration": {"folders": ["demo_calib"], "max_images": 40},
            **over}


QUANT_ALL = {"format": "qoperator", "per_channel": False, "activation_type": "int8", "weight_type": "uint8",
             "symmetric_activations": True, "reduce_range": True, "exclude_nodes": ["/4/Conv", "/0/Conv"],
             "exclude_op_types": ["MaxPool"], "keep_float": 2, "protect_outputs": False, "equalize": True,
             "bias_correction": True, "share_concat_ranges": False, "pad_channels": False, "batch_one": True,
             "ort_optimized": True}

FAMILIES: dict[str, dict | str] = {
    "demo-v1": "resources/demo/demo.job.json",
    "detector-v1": "resources/detector/detector.job.json",
    "bgr-detector": _det(
        output="out/det.int8.onnx",
        preprocess={"mean": [0, 0, 0], "std": [255, 255, 255], "color": "bgr", "resize": "letterbox", "pad_value": 114},
        calibration={"folders": ["det_calib"], "max_images": 64, "seed": 3, "method": "percentile", "percentile": 99.995},
        evaluation={"folders": ["det_eval/images"], "labels_from": "yolo", "labels_csv": "det_eval/labels"},
        task={"kind": "auto", "detection": {"box_format": "cxcywh", "score_threshold": 0.35, "nms_iou": 0.6, "match_iou": 0.55}},
        tuning={"max_drop": 1.25, "minutes": 2.5}),
    "unit-values": _demo(
        preprocess={"mean": CIFAR_MEAN, "std": CIFAR_STD, "resize": "shorter", "resize_shorter": 256, "interpolation": "bicubic"},
        calibration={"folders": ["demo_calib"], "method": "mse"},
        evaluation={"folders": ["demo_eval"], "labels_from": "csv", "labels_csv": "demo_labels.csv"}),
    "gray-nhwc": {
        "model": "gray.onnx", "output": "out/gray.int8.onnx",
        "preprocess": {"mean": [127.5], "std": [127.5], "color": "gray", "layout": "nhwc", "resize": "stretch",
                       "interpolation": "nearest"},
        "calibration": {"folders": ["gray_calib"], "method": "entropy"}, "task": {"kind": "classification"}},
    "advanced": _demo(
        preprocess={"interpolation": "lanczos"}, quantization=QUANT_ALL, report="out/report.json", cache="out/stats.calib.npz",
        calibration={"folders": ["demo_calib", "det_calib"], "max_images": 17, "seed": 99, "method": "ema-minmax",
                     "batch_size": 4, "ema_constant": 0.05},
        evaluation={"folders": ["demo_eval", "det_eval/images"], "labels_from": "subfolders", "class_offset": 1,
                    "max_images": 77, "latency_runs": 9, "per_layer_images": 3, "noise_images": 0}),
    "rknn": _demo(output="out/demo.rknn", target={"kind": "rknn", "rknn": {"platform": "rk3566", "python": "venv/bin/python"}}),
    "tensorrt": _demo(target={"kind": "tensorrt", "tensorrt": {"version": "8.6.1"}}, tuning={"max_drop": 0.5, "minutes": 0.2}),
    "openvino": _demo(target={"kind": "openvino"}, evaluation={"folders": ["demo_eval"], "labels_from": "subfolders"}),
    "yolov8-export": _det(
        model="yolov8.onnx", preprocess={"mean": [0, 0, 0], "std": [255, 255, 255], "resize": "letterbox", "pad_value": 114},
        evaluation={"folders": ["det_eval/images"], "labels_from": "coco", "labels_csv": "coco.json"},
        task={"kind": "auto", "dense": {"mask_threshold": 0.3}}),
    "yolov8-sized": _det(
        model="yolov8.onnx", output="out/yolo.int8.onnx",
        preprocess={"mean": [0, 0, 0], "std": [255, 255, 255], "size": [256, 320], "resize": "letterbox", "pad_value": 114,
                    "interpolation": "area"},
        task={"kind": "detection", "detection": {"score_threshold": 0.001}}),
    "two-inputs": _demo(model="two.onnx", output="out/two.int8.onnx", inputs={"scale": [0.5]}),
    "dense-unet": _det(
        model="unet.onnx", output="out/unet.int8.onnx", preprocess={"size": [160, 160], "resize": "stretch"},
        evaluation={"folders": ["det_eval/images"]}, task={"kind": "dense", "dense": {"mask_threshold": 0.4}}),
}


def job_file(tmp_path: Path, family: str) -> Path:
    """The family's job file in a folder of its own, with what it names."""
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "out").mkdir()
    spec = FAMILIES[family]
    if isinstance(spec, str):  # a bundled job: its folder, linked
        bundled = ROOT / spec
        for entry in bundled.parent.iterdir():
            if entry.name != bundled.name and not entry.name.endswith(".calib.npz"):  # a run writes its own
                os.symlink(entry, folder / entry.name)
        path = folder / bundled.name
        path.write_text(bundled.read_text())
        return path
    for name, target in LINKS.items():
        os.symlink(ROOT / target, folder / name)
    convnet(folder / "gray.onnx", channels=1, layout="nhwc")
    two_input_net(folder / "two.onnx")
    image_folder(folder / "gray_calib", 6)
    (folder / "coco.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    path = folder / f"{family}.job.json"
    path.write_text(json.dumps({"version": 2, **spec}, indent=2))
    return path


def open_and_walk(qtbot, window, dialogs, path: Path) -> None:  # noqa: F811
    """File > Open job, then Next to the Calibration page (each page filled by initializePage)."""
    dialogs.paths = [str(path)]
    window.open_job()
    qtbot.waitUntil(lambda: window.state.info is not None and not window.runner.busy, timeout=60_000)
    assert not dialogs.errors
    assert next_button(window).isEnabled()
    window.wizard.next()
    pp = page(window, "PREPROCESS")
    for edit in (pp.mean_edit, pp.std_edit):  # at once, before the event loop deletes anything
        shown = [b for b in edit.findChildren(QDoubleSpinBox) if b.isVisibleTo(edit)]
        assert len(shown) == window.state.preprocess.channels, "a mean/std box too many"
    qtbot.waitUntil(lambda: pp.preview is not None and not window.runner.busy, timeout=30_000)
    window.wizard.next()
    qtbot.waitUntil(lambda: not window.runner.busy)
    assert window.wizard.currentPage() is page(window, "CALIBRATION")


def save(window, dialogs, path: Path) -> Path:  # noqa: F811
    saved = path.with_name("saved.job.json")
    dialogs.paths = [str(saved)]
    window.save_job()
    assert not dialogs.errors
    return saved


def touch(window) -> None:
    """An edit the job does not keep on the Model and Calibration pages: each
    re-reads every widget of its form, which may change nothing else."""
    view = page(window, "MODEL").option_views["detection"]
    if view.isVisibleTo(page(window, "MODEL")):
        combo, at = view.box_format_combo, view.box_format_combo.currentIndex()
        combo.setCurrentIndex((at + 1) % combo.count())
        combo.setCurrentIndex(at)
    seed = page(window, "CALIBRATION").seed_box
    seed.setValue(seed.value() + 1)
    seed.setValue(seed.value() - 1)


def near(box, value: float) -> bool:
    """``box`` shows ``value`` (to its decimals)."""
    return abs(box.value() - value) <= 0.51 * 10 ** -box.decimals()


def assert_model_page(window, job) -> None:
    mp = page(window, "MODEL")
    assert mp.task_combo.currentData() == job.task.kind
    guess = window.state.task_guess
    for kind, view in mp.option_views.items():
        assert view.isVisibleTo(mp) == (kind == guess.kind)
    if guess.kind == "detection":
        view, options = mp.option_views["detection"], job.task.options_for("detection")
        assert near(view.threshold_box, options.score_threshold)
        assert view.box_format_combo.currentData() == options.box_format
    info = window.state.info
    if info.image_input.size is None:
        size = job.preprocess.size or info.input_size
        assert (mp.height_box.value(), mp.width_box.value()) == tuple(size)
    for name, values in job.inputs.items():
        assert mp.input_edits[name].text() == numbers_text(values)


def assert_preprocess_page(window, job) -> None:
    pp, spec = page(window, "PREPROCESS"), job.preprocess
    names = channel_names(spec)
    for edit, values in ((pp.mean_edit, spec.mean), (pp.std_edit, spec.std)):
        boxes = edit.boxes()
        assert len(boxes) == len(values) == len(names)  # never six (issue 20)
        assert [b for b in edit.findChildren(QDoubleSpinBox) if b.isVisibleTo(edit)] == boxes
        assert edit.names() == names
        assert all(near(b, v) for b, v in zip(boxes, values)), ([b.value() for b in boxes], values)
    assert pp.preset_combo.currentData() == (matching_preset(spec) or "custom")
    if spec.channels == 3:
        assert pp.color_combo.currentData() == spec.color
    assert pp.layout_combo.currentData() == spec.layout
    assert pp.resize_combo.currentData() == spec.resize
    assert pp.shorter_box.value() == (spec.resize_shorter or 0)
    assert pp.pad_box.value() == spec.pad_value
    assert pp.interp_combo.currentData() == spec.interpolation
    pp.unit_units.setChecked(True)  # a view: the job keeps pixel units
    assert all(near(b, v / 255) for b, v in zip(pp.mean_edit.boxes(), spec.mean))
    assert all(near(b, v / 255) for b, v in zip(pp.std_edit.boxes(), spec.std))


def assert_calibration_page(window, job) -> None:
    cp = page(window, "CALIBRATION")
    c, q, e, t = job.calibration, job.quantization, job.evaluation, job.tuning
    assert [cp.folders.item(i).data(Qt.ItemDataRole.UserRole) for i in range(cp.folders.count())] == [str(f) for f in c.folders]
    assert (cp.sample_box.value(), cp.seed_box.value()) == (c.max_images, c.seed)
    assert cp.method_combo.currentData() == c.method and near(cp.percentile_box, c.percentile)
    o = cp.options
    shown = {n: getattr(o, w).isChecked() for n, w in (
        ("per_channel", "per_channel"), ("reduce_range", "reduce_range"), ("symmetric_activations", "symmetric"),
        ("share_concat_ranges", "share_concat"), ("equalize", "equalize"), ("bias_correction", "bias_correction"),
        ("pad_channels", "pad_channels"), ("ort_optimized", "ort_optimized"), ("batch_one", "batch_one"))}
    assert shown == {n: getattr(q, n) for n in shown}
    assert (o.activation_combo.currentData(), o.format_combo.currentData()) == (q.activation_type, q.format)
    assert set(o.keep.checked()) == set(q.exclude_nodes)
    a = cp.accuracy
    assert a.auto_check.isChecked() == (t.max_drop is not None) and near(a.minutes, t.minutes)
    assert t.max_drop is None or near(a.drop, t.max_drop)
    assert cp.eval_edit.text() == (str(e.folders[0]) if e.folders else "")
    assert cp.labels_combo.currentData() == e.labels_from
    assert cp.csv_edit.text() == (str(e.labels_csv) if e.labels_csv else "")
    assert cp.offset_box.value() == e.class_offset
    assert cp.output_edit.text() == (str(job.output) if job.output else "")
    assert job.output or cp.output_edit.placeholderText().startswith(str(window.state.default_output()))
    box = cp.target_box
    assert box.combo.currentData() == job.target.kind
    for kind, view in box.views.items():
        assert view.isVisibleTo(box) == (kind == job.target.kind)
    rknn, trt = TARGETS["rknn"].options_of(job.target), TARGETS["tensorrt"].options_of(job.target)
    assert box.views["rknn"].platform.currentData() == rknn.platform
    assert box.views["rknn"].python.text() == (str(rknn.python) if rknn.python else "")
    assert box.views["tensorrt"].version.currentText() == trt.version


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_job_comes_back_as_it_was_opened(qtbot, window, dialogs, tmp_path, family):  # noqa: F811
    path = job_file(tmp_path, family)
    original = load_job(path)
    open_and_walk(qtbot, window, dialogs, path)
    assert_model_page(window, original)
    assert_preprocess_page(window, original)
    assert_calibration_page(window, original)
    touch(window)
    assert load_job(save(window, dialogs, path)) == original


def test_a_job_from_scratch_names_its_output(qtbot, window, dialogs, tmp_path):  # noqa: F811
    """A job made in the wizard (no job file) writes the output it will use,
    so that the command line runs the saved file as it is."""
    path = job_file(tmp_path, "demo-v1")
    open_and_walk(qtbot, window, dialogs, path)
    window.state.output_unset = False  # as after File > New and a model opened
    saved = load_job(save(window, dialogs, path))
    assert saved.output == window.state.default_output() and saved.cache is None


def test_a_remembered_rknn_python_stays_in_rknn_jobs(qtbot, window, dialogs, tmp_path):  # noqa: F811
    """The RKNN Python this machine remembers fills an RKNN job that names
    none (shown in its field); a job for another target is saved as it was."""
    from guiapp.gui.target_options import RKNN_PYTHON_KEY

    window.settings.set_value(RKNN_PYTHON_KEY, str(tmp_path / "rknn-env" / "bin" / "python"))
    path = job_file(tmp_path, "tensorrt")
    original = load_job(path)
    open_and_walk(qtbot, window, dialogs, path)
    assert load_job(save(window, dialogs, path)) == original
    box = page(window, "CALIBRATION").target_box
    box.combo.setCurrentIndex(box.combo.findData("rknn"))
    rknn = TARGETS["rknn"].options_of(load_job(save(window, dialogs, path)).target)
    assert rknn.python == tmp_path / "rknn-env" / "bin" / "python"
    assert box.views["rknn"].python.text() == str(rknn.python)


def test_numbers_use_the_locale_and_come_back(qtbot, window, dialogs, tmp_path):  # noqa: F811
    """German: a decimal comma in every number box, typed and shown; the job
    comes back the same, and typed values land in it."""
    path = job_file(tmp_path, "bgr-detector")
    original = load_job(path)
    open_and_walk(qtbot, window, dialogs, path)
    assert window.locale().decimalPoint() == ","
    cp, pp, mp = page(window, "CALIBRATION"), page(window, "PREPROCESS"), page(window, "MODEL")
    threshold = mp.option_views["detection"].threshold_box
    assert cp.percentile_box.text() == "99,9950" and threshold.text() == "0,350"
    assert cp.accuracy.drop.text() == "1,25 points" and cp.accuracy.minutes.text() == "2,5 min"
    assert pp.std_edit.boxes()[0].text() == "255,0000"
    pp.unit_units.setChecked(True)
    assert pp.std_edit.boxes()[0].text() == "1,000000"  # 255 / 255
    assert load_job(save(window, dialogs, path)) == original
    for box, typed, value in ((cp.percentile_box, "99,5", 99.5), (threshold, "0,4", 0.4), (cp.accuracy.drop, "2,5", 2.5)):
        box.lineEdit().selectAll()
        qtbot.keyClicks(box.lineEdit(), typed)
        assert box.value() == pytest.approx(value)
    pp.pixel_units.setChecked(True)
    mean = pp.mean_edit.boxes()[2]
    mean.lineEdit().selectAll()
    qtbot.keyClicks(mean.lineEdit(), "12,5")
    job = load_job(save(window, dialogs, path))
    assert job.calibration.percentile == 99.5 and job.tuning.max_drop == 2.5
    assert job.task.options_for("detection").score_threshold == pytest.approx(0.4)
    assert job.preprocess.mean == (0.0, 0.0, 12.5) and job.preprocess.std == (255.0, 255.0, 255.0)


@pytest.fixture(autouse=True)
def _german_when_asked(request):
    """The locale test runs with German as the default locale (widgets take it when made)."""
    if request.node.name != "test_numbers_use_the_locale_and_come_back":
        yield
        return
    before = QLocale()
    QLocale.setDefault(QLocale(QLocale.Language.German, QLocale.Country.Germany))
    yield
    QLocale.setDefault(before)


def test_showing_options_neither_edits_nor_remembers(qtbot, tmp_path):
    """set_options shows a job's options: no edited signal, and the RKNN view
    does not store the Python path it was showing as the remembered one."""
    from guiapp.core.targets.rknn import PLATFORMS, RknnOptions
    from guiapp.gui.target_options import RKNN_PYTHON_KEY, RknnOptionsView

    class Remembered(dict):
        value, set_value = dict.get, dict.__setitem__

    settings = Remembered()
    view = RknnOptionsView(settings)
    qtbot.addWidget(view)
    edits = []
    view.edited.connect(lambda: edits.append(view.options()))
    first, second = (RknnOptions(p, tmp_path / f"env{i}" / "python") for i, p in enumerate(PLATFORMS[:2]))
    view.set_options(first)
    view.set_options(second)  # another platform: its combo changes while the old path is still shown
    assert view.options() == second and edits == [] and RKNN_PYTHON_KEY not in settings
    view.platform.setCurrentIndex(view.platform.findData(PLATFORMS[0]))  # the user's change
    assert edits and edits[-1].platform == PLATFORMS[0] and settings[RKNN_PYTHON_KEY] == str(second.python)
