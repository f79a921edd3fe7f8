"""The normalization check on the Preprocessing page, driven as a user would."""

from __future__ import annotations

from dataclasses import replace

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from colour_model import colour_classifier, colour_images  # noqa: E402
from guiapp.core.job import CalibrationSettings  # noqa: E402
from guiapp.core.data.preprocess import preset  # noqa: E402
from test_gui import dialogs, next_button, open_model, page, window  # noqa: E402,F401 - fixtures


@pytest.fixture
def preprocessing(qtbot, window, tmp_path):  # noqa: F811
    colour_images(tmp_path / "images", per_class=6)
    model = tmp_path / "colours.onnx"
    colour_classifier(model, preset("imagenet"))
    open_model(qtbot, window, model)
    state = window.state
    state.preprocess = replace(preset("imagenet", resize="stretch"), color="bgr")  # the wrong channel order
    state.preset_name = None
    state.calibration = CalibrationSettings(folders=(tmp_path / "images",))
    qtbot.mouseClick(next_button(window), Qt.MouseButton.LeftButton)
    pp = page(window, "PREPROCESS")
    qtbot.waitUntil(lambda: pp.preview is not None and not window.runner.busy)
    return pp


def test_check_ranks_names_the_better_setting_and_applies_it(qtbot, window, preprocessing):  # noqa: F811
    pp = preprocessing
    panel = pp.check_panel
    pp._start_check()
    assert pp.right_tabs.currentWidget() is panel
    qtbot.waitUntil(lambda: not panel.running and panel.check is not None, timeout=60_000)
    check = panel.check
    assert check.verdict == "worse"
    assert panel.warn_text.isVisible() and "Suggested: imagenet (RGB)" in panel.warn_text.text()
    assert panel.table.rowCount() == len(check.ranking)
    selected = panel.table.selectionModel().selectedRows()[0].row()
    assert check.ranking[selected].candidate == check.suggestion
    current_row = next(i for i, s in enumerate(check.ranking) if s.candidate.current)
    assert panel.table.item(current_row, 2).text().startswith("▶ ") and panel.table.item(current_row, 2).font().bold()
    assert panel.apply_button.isEnabled()
    qtbot.mouseClick(panel.apply_button, Qt.MouseButton.LeftButton)
    assert window.state.preprocess.color == "rgb" and window.state.preset_name == "imagenet"
    assert pp.color_combo.currentData() == "rgb" and pp.preset_combo.currentData() == "imagenet"
    qtbot.waitUntil(lambda: not panel.running and panel.check is not check, timeout=60_000)  # checked again
    assert panel.check.verdict == "ok" and panel.ok_text.isVisible()
    assert not panel.apply_button.isEnabled()  # the selected row is the setting in use


def test_cancel_and_a_stale_result(qtbot, window, preprocessing, monkeypatch):  # noqa: F811
    import threading

    from guiapp.gui import normcheck_view

    real = normcheck_view.check_normalization
    started = threading.Event()

    def waits_for_cancel(*args, progress, cancel, **kw):  # a check that only ends by Cancel
        started.set()
        while True:
            cancel.check()
            threading.Event().wait(0.01)

    pp = preprocessing
    panel = pp.check_panel
    monkeypatch.setattr(normcheck_view, "check_normalization", waits_for_cancel)
    pp._start_check()
    qtbot.waitUntil(started.is_set)
    assert panel.running and panel.run_button.text() == "Cancel the check"
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.running, timeout=10_000)
    assert not window.runner.busy and panel.ok_text.text() == "Check cancelled." and panel.check is None
    monkeypatch.setattr(normcheck_view, "check_normalization", real)
    pp._start_check()
    qtbot.waitUntil(lambda: not panel.running and panel.check is not None, timeout=60_000)
    pp.color_combo.setCurrentIndex(pp.color_combo.findData("rgb"))  # an edit after the check
    assert "changed since this check" in panel.ok_text.text()
