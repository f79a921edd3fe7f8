"""The Preprocessing page's form: the normalization (preset, what the file
states, units, mean and std, channel order, layout) and the resize. The
widgets only; the page reads and writes them and keeps the state."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QButtonGroup, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton, QRadioButton, QSpinBox, QWidget,
)

from ..core.data.preprocess import INTERPOLATIONS, PRESETS
from .file_preprocessing import FilePreprocessing
from .widgets import ChannelEdits, add_items, buddy, chain_tab_order

CUSTOM = "custom"


class NormalizationBox(QGroupBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Normalization: out = (pixel − mean) / std", parent)
        form = QFormLayout(self)
        self.preset_combo = QComboBox()
        add_items(self.preset_combo, ((name, name, desc) for name, (_, _, _, desc) in PRESETS.items()))
        self.preset_combo.addItem(CUSTOM, CUSTOM)
        self.preset_combo.setToolTip("Normalization presets; editing mean or std makes it custom")
        form.addRow(buddy("&Preset", self.preset_combo), self.preset_combo)
        self.file_note = FilePreprocessing()
        form.addRow(self.file_note)

        units = QWidget()
        ul = QHBoxLayout(units)
        ul.setContentsMargins(0, 0, 0, 0)
        self.pixel_units = QRadioButton("pi&xels 0..255")
        self.unit_units = QRadioButton("0..&1 (torchvision)")
        self.pixel_units.setToolTip("Mean and std in pixel units, as RKNN's mean_values/std_values")
        self.unit_units.setToolTip("Mean and std applied after x/255, as torchvision's Normalize (the job keeps pixel "
                                   "units either way)")
        self.pixel_units.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.pixel_units)
        group.addButton(self.unit_units)
        self.unit_units.toggled.connect(self._units_toggled)
        ul.addWidget(self.pixel_units)
        ul.addWidget(self.unit_units)
        ul.addStretch(1)
        form.addRow(buddy("Units", self.pixel_units), units)
        self.mean_edit = ChannelEdits("mean")
        self.std_edit = ChannelEdits("std")
        form.addRow(buddy("&Mean", self.mean_edit), self.mean_edit)
        form.addRow(buddy("&Std", self.std_edit), self.std_edit)
        self.color_combo = QComboBox()
        self.color_combo.addItem("RGB", "rgb")
        self.color_combo.addItem("BGR", "bgr")
        self.color_combo.setToolTip("The channel order the model was trained with (Caffe and OpenCV pipelines use BGR); "
                                    "each colour keeps its mean and std when the order changes")
        form.addRow(buddy("&Channel order", self.color_combo), self.color_combo)
        self.layout_combo = QComboBox()
        for text, value in (("detected", "auto"), ("NCHW", "nchw"), ("NHWC", "nhwc")):
            self.layout_combo.addItem(text, value)
        self.layout_combo.setToolTip("Where the channel axis is in the model's input; detected from its shape")
        form.addRow(buddy("&Layout", self.layout_combo), self.layout_combo)
        self.check_button = QPushButton("Chec&k against the model…")
        self.check_button.setToolTip("Run the model under every preset and channel order and rank them (the "
                                     "Normalization check tab)")
        form.addRow("", self.check_button)
        chain_tab_order(self.preset_combo, self.file_note.use_button, self.pixel_units, self.unit_units,
                        *self.mean_edit.boxes(), *self.std_edit.boxes(), self.color_combo, self.layout_combo, self.check_button)

    def channel_edits(self) -> tuple[ChannelEdits, ChannelEdits]:
        return self.mean_edit, self.std_edit

    def _units_toggled(self, unit_checked: bool) -> None:
        for edit in self.channel_edits():
            edit.set_unit(255.0 if unit_checked else 1.0)


class ResizeBox(QGroupBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Resize", parent)
        rform = QFormLayout(self)
        self.resize_combo = QComboBox()
        add_items(self.resize_combo, (
            ("shorter side, then centre crop", "shorter", "Resize the shorter side, then crop the centre "
                                                          "(torchvision's Resize+CenterCrop)"),
            ("stretch to the input size", "stretch", "Resize to the input size, ignoring the aspect ratio"),
            ("letterbox (keep aspect, pad)", "letterbox", "Fit inside the input size keeping the aspect ratio; pad the rest"),
        ))
        self.resize_combo.setToolTip("How images are brought to the model's input size")
        rform.addRow(buddy("P&olicy", self.resize_combo), self.resize_combo)
        self.shorter_box = QSpinBox()
        self.shorter_box.setRange(0, 8192)
        self.shorter_box.setSpecialValueText("auto")
        self.shorter_box.setSuffix(" px")
        self.shorter_box.setToolTip("Shorter side before the crop, in pixels; auto = input size × 256/224")
        rform.addRow(buddy("Shor&ter side", self.shorter_box), self.shorter_box)
        self.pad_box = QSpinBox()
        self.pad_box.setRange(0, 255)
        self.pad_box.setToolTip("Letterbox fill, pixel value 0..255 (YOLO uses 114)")
        rform.addRow(buddy("Pa&d value", self.pad_box), self.pad_box)
        self.interp_combo = QComboBox()
        for name in INTERPOLATIONS:
            self.interp_combo.addItem(name, name)
        self.interp_combo.setToolTip("Resampling filter; bilinear matches torchvision and most training code")
        rform.addRow(buddy("Interpol&ation", self.interp_combo), self.interp_combo)
        self.size_label = QLabel()
        self.size_label.setWordWrap(True)
        self.size_label.setToolTip("The model's input height × width, and where it comes from (set on the Model page "
                                   "for a dynamic input)")
        rform.addRow("Input size", self.size_label)
