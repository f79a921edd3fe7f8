"""The options of a task, as the Model page shows them beside the task: one
small view per task that has options, found through ``VIEWS``.

A view shows its task's options dataclass and gives it back when edited;
adding a task with options is its core module plus, when the user should
set them, one view here and one line in ``VIEWS``."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QHBoxLayout, QWidget

from ..core.tasks.detection import DetectionOptions
from ..core.tasks.detection_layout import BOX_FORMATS
from .options_view import OptionsView
from .widgets import add_items, buddy, kept


class DetectionOptionsView(OptionsView):
    """Score threshold and box format."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(DetectionOptions(), parent)
        self.threshold_box = QDoubleSpinBox()
        self.threshold_box.setRange(0.001, 0.999)
        self.threshold_box.setSingleStep(0.05)
        self.threshold_box.setDecimals(3)
        self.threshold_box.setToolTip("Boxes count from this score on, for FP32 and INT8 alike (0.25 as Ultralytics; "
                                      "face detectors often use 0.7)")
        self.box_format_combo = QComboBox()
        add_items(self.box_format_combo, [(f, f, "How the model writes a box" + ("" if f != "auto" else ": from its layout"))
                                          for f in BOX_FORMATS])
        self.box_format_combo.setToolTip("How the model writes a box: centre and size (cxcywh), corners (xyxy), "
                                         "corner and size (xywh); auto takes it from the layout")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for w in (buddy("&Score threshold", self.threshold_box), self.threshold_box, buddy("Bo&xes", self.box_format_combo),
                  self.box_format_combo):
            lay.addWidget(w)
        self.threshold_box.valueChanged.connect(self._widget_changed)
        self.box_format_combo.currentIndexChanged.connect(self._widget_changed)

    def _show(self, options: DetectionOptions) -> None:
        self.threshold_box.setValue(options.score_threshold)
        self.box_format_combo.setCurrentIndex(max(0, self.box_format_combo.findData(options.box_format)))

    def _changed(self) -> None:
        self._options = replace(self._options, score_threshold=kept(self.threshold_box, self._options.score_threshold),
                                box_format=self.box_format_combo.currentData())
        self.edited.emit()


VIEWS: dict[str, type[OptionsView]] = {"detection": DetectionOptionsView}
