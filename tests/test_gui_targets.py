"""The deployment target in the wizard: chosen on the Calibration page, its
toolkit checked there, and the run and results following it."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from guiapp.core.job import TargetSettings  # noqa: E402
from guiapp.core.targets.registry import TARGETS  # noqa: E402
from test_gui import RUN_TIMEOUT, demo_state, dialogs, next_button, page, window  # noqa: E402,F401
from test_target_rknn import need_toolkit  # noqa: E402


def to_calibration(qtbot, window, tmp_path):
    demo_state(window, tmp_path, qtbot)
    window.wizard.next()
    qtbot.waitUntil(lambda: not window.runner.busy)
    window.wizard.next()
    qtbot.waitUntil(lambda: not window.runner.busy)
    return page(window, "CALIBRATION")


def choose(box, kind):
    box.combo.setCurrentIndex(box.combo.findData(kind))


def test_choosing_rknn_follows_through_the_page(qtbot, window, tmp_path):
    cp = to_calibration(qtbot, window, tmp_path)
    box = cp.target_box
    assert window.state.output == tmp_path / "demo.int8.onnx"
    choose(box, "rknn")
    assert window.state.target.kind == "rknn"
    assert window.state.output == tmp_path / "demo.int8.rknn"  # the output follows the target's file type
    assert cp.output_edit.text().endswith(".rknn")
    for w in (cp.activation_combo, cp.format_combo, cp.symmetric, cp.nodes):
        assert not w.isEnabled()  # settings RKNN-Toolkit2 does not take
    rknn = box.views["rknn"]
    assert cp.per_channel.isEnabled() and rknn.platform.isVisible() and rknn.python.isVisible()
    # A Python without the toolkit: said on the page, and Next stays off.
    missing = tmp_path / "no-env" / "bin" / "python"
    rknn.python.setText(str(missing))
    rknn.python.editingFinished.emit()
    assert TARGETS["rknn"].options_of(window.state.target).python == missing
    assert "scripts/rknn-env" in box.problem_label.text() and box.problem_label.isVisible()
    assert not next_button(window).isEnabled() and "cannot run here" in cp.problems.text()
    # Remembered for the next session.
    assert window.settings.value("targets/rknn_python") == str(missing)
    box.set_target(TargetSettings(kind="rknn"))
    assert TARGETS["rknn"].options_of(box.target()).python == missing
    # Back to ONNX Runtime: everything as before.
    choose(box, "onnxruntime")
    assert window.state.output == tmp_path / "demo.int8.onnx"
    assert cp.activation_combo.isEnabled() and not rknn.platform.isVisible()
    assert next_button(window).isEnabled()


def test_a_strategy_rknn_lacks_blocks_next(qtbot, window, tmp_path, monkeypatch):
    from dataclasses import replace

    from guiapp.core.targets.registry import TARGETS

    # As if the toolkit were here: the strategy is what this test is about.
    monkeypatch.setitem(TARGETS, "rknn", replace(TARGETS["rknn"], availability=lambda options: "", found=lambda options: ""))
    cp = to_calibration(qtbot, window, tmp_path)
    cp.method_combo.setCurrentIndex(cp.method_combo.findData("percentile"))
    choose(cp.target_box, "rknn")
    assert not next_button(window).isEnabled() and "no counterpart of the percentile" in cp.problems.text()
    cp.method_combo.setCurrentIndex(cp.method_combo.findData("mse"))
    assert next_button(window).isEnabled()


def test_tensorrt_through_the_wizard(qtbot, window, tmp_path):
    cp = to_calibration(qtbot, window, tmp_path)
    choose(cp.target_box, "tensorrt")
    assert "symmetric int8" in cp.target_box.note.text()
    qtbot.mouseClick(next_button(window), Qt.MouseButton.LeftButton)
    rp = page(window, "RUN")
    qtbot.waitUntil(lambda: rp.done, timeout=RUN_TIMEOUT)
    assert "TensorRT" in rp.log.toPlainText()
    window.wizard.next()
    rs = page(window, "RESULTS")
    r = window.state.report
    assert r["target"]["kind"] == "tensorrt"
    assert Path(r["target"]["calibration_cache"]["path"]).is_file()
    assert "checked in ONNX Runtime" in rs.summary.text()
    assert rs.rerun_button.isVisible()  # nodes in float work for TensorRT too


@pytest.mark.rknn
def test_rknn_through_the_wizard(qtbot, window, tmp_path):
    need_toolkit()
    cp = to_calibration(qtbot, window, tmp_path)
    choose(cp.target_box, "rknn")
    assert cp.target_box.found.text().startswith("✓ RKNN-Toolkit2")
    qtbot.mouseClick(next_button(window), Qt.MouseButton.LeftButton)
    rp = page(window, "RUN")
    qtbot.waitUntil(lambda: rp.running or rp.done)
    qtbot.waitUntil(lambda: not rp.running, timeout=RUN_TIMEOUT)
    assert rp.done, rp.log.toPlainText()
    log = rp.log.toPlainText()
    assert "rknn building done" in log and "Rockchip RKNN" in log  # the toolkit's own log reached the page
    window.wizard.next()
    rs = page(window, "RESULTS")
    assert (tmp_path / "demo.int8.rknn").is_file() and (tmp_path / "demo.int8_board.py").is_file()
    assert not rs.rerun_button.isVisible()  # RKNN-Toolkit2 is not told which layers to keep in float
    assert "PC simulator" in rs.summary.text()
    assert rs.charts.widgets["latency"].getPlotItem().titleLabel.text == "Latency"
