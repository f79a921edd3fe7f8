"""The Calibration page's advanced quantization options: weights,
activations, format, per-tensor aids, the output form and the nodes kept
in float. Each setting names the QuantOption a target may not honour; the
target's choice greys out the rest."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from ..core.job import QuantOption, QuantSettings
from .node_picker import NodePicker
from .widgets import message_label


def _row(*widgets) -> QHBoxLayout:
    row = QHBoxLayout()
    for w in widgets:
        row.addWidget(w)
    row.addStretch(1)
    return row


def _check(text: str, tip: str) -> QCheckBox:
    box = QCheckBox(text)
    box.setToolTip(tip)
    return box


class QuantOptions(QWidget):
    edited = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.per_channel = _check("per-channel weights", "One scale per output channel: usually more accurate for "
                                                         "convolutions, at no speed cost")
        self.reduce_range = _check("reduce range (7-bit)", "For x86 CPUs without VNNI, where full 8-bit weights can "
                                                           "saturate; costs accuracy elsewhere")
        self.activation_combo = QComboBox()
        self.activation_combo.addItem("uint8 (fast on x86)", "uint8")
        self.activation_combo.addItem("int8", "int8")
        self.activation_combo.setToolTip("uint8 activations run fastest with ONNX Runtime on x86; int8 is for targets "
                                         "that need it")
        self.symmetric = _check("symmetric", "Zero point in the middle of the range; some NPUs need it, it wastes codes "
                                             "after ReLU")
        self.share_concat = _check("Concat inputs share its range", "Inputs read only by a Concat are quantized with "
                                   "the Concat's range: faster (squeezenet1.1 INT8 1.58 -> 1.45 ms), no accuracy cost. "
                                   "Turn off only to compare")
        self.format_combo = QComboBox()
        self.format_combo.addItem("QDQ", "qdq")
        self.format_combo.addItem("QOperator", "qoperator")
        self.format_combo.setToolTip("QDQ inserts Quantize/Dequantize pairs (recommended); QOperator uses QLinear* operators")
        self.equalize = _check("cross-layer equalization", "Rescale consecutive convolutions so per-tensor weights fit "
                               "every channel (MobileNet-like nets on NPUs that need per-tensor weights)")
        self.bias_correction = _check("bias correction", "Absorb the mean shift that weight quantization causes into "
                                                         "the biases")
        self.pad_channels = _check("pad channels to 4", "Give convolutions with 3 input channels (an RGB model's first) "
                                   "a fourth, zero channel: the same outputs, and ONNX Runtime's fast INT8 kernel on x86 "
                                   "(squeezenet1.1 INT8 1.44 -> 1.34 ms). Arm CPUs gain nothing from it")
        self.ort_optimized = _check("optimized for ONNX Runtime", "Write the graph as ONNX Runtime optimizes it (fused "
                                    "QLinear operators). Loads in ONNX Runtime only: turn it off for OpenVINO, TensorRT "
                                    "or an NPU toolkit")
        self.batch_one = _check("batch of 1", "Fix the input's batch size to 1, if you run one image at a time: every "
                                              "shape is known in advance")
        self.keep = NodePicker()
        self.warning = message_label("warn")
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Weights", _row(self.per_channel, self.reduce_range))
        label = QLabel("Acti&vations")
        label.setBuddy(self.activation_combo)
        form.addRow(label, _row(self.activation_combo, self.symmetric, self.share_concat))
        label = QLabel("Format")
        label.setBuddy(self.format_combo)
        form.addRow(label, _row(self.format_combo))
        form.addRow("Per-tensor aids", _row(self.equalize, self.bias_correction))
        form.addRow("Output form", _row(self.pad_channels, self.ort_optimized, self.batch_one))
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(form)
        lay.addWidget(self.warning)
        lay.addWidget(self.keep)
        for w in self.checks():
            w.toggled.connect(self.edited)
        for w in (self.activation_combo, self.format_combo):
            w.currentIndexChanged.connect(self.edited)
        self.keep.edited.connect(self.edited)

    def checks(self) -> tuple[QCheckBox, ...]:
        return (self.per_channel, self.reduce_range, self.symmetric, self.share_concat, self.equalize, self.bias_correction,
                self.pad_channels, self.ort_optimized, self.batch_one)

    def widgets_of(self) -> dict[QuantOption, tuple[QWidget, ...]]:
        """The widgets of each setting a target may or may not honour."""
        O = QuantOption  # noqa: N806
        return {O.PER_CHANNEL: (self.per_channel,), O.ACTIVATION_TYPE: (self.activation_combo,),
                O.SYMMETRIC_ACTIVATIONS: (self.symmetric,), O.FORMAT: (self.format_combo,),
                O.EXCLUDE_NODES: (self.keep.nodes, self.keep.filter), O.REDUCE_RANGE: (self.reduce_range,),
                O.SHARE_CONCAT_RANGES: (self.share_concat,), O.PAD_CHANNELS: (self.pad_channels,),
                O.ORT_OPTIMIZED: (self.ort_optimized,), O.EQUALIZE: (self.equalize,), O.BIAS_CORRECTION: (self.bias_correction,),
                O.BATCH_ONE: (self.batch_one,)}

    def show_settings(self, q: QuantSettings, nodes) -> None:
        """Show ``q`` (``nodes``: the model's (name, op type) pairs for the float picker)."""
        widgets = (*self.checks(), self.activation_combo, self.format_combo)
        for w in widgets:
            w.blockSignals(True)
        for box, value in ((self.per_channel, q.per_channel), (self.reduce_range, q.reduce_range),
                           (self.symmetric, q.symmetric_activations), (self.share_concat, q.share_concat_ranges),
                           (self.equalize, q.equalize), (self.bias_correction, q.bias_correction),
                           (self.pad_channels, q.pad_channels), (self.ort_optimized, q.ort_optimized),
                           (self.batch_one, q.batch_one)):
            box.setChecked(value)
        self.activation_combo.setCurrentIndex(self.activation_combo.findData(q.activation_type))
        self.format_combo.setCurrentIndex(self.format_combo.findData(q.format))
        for w in widgets:
            w.blockSignals(False)
        self.keep.blockSignals(True)
        self.keep.fill(nodes, q.exclude_nodes)
        self.keep.blockSignals(False)

    def settings(self, q: QuantSettings) -> QuantSettings:
        """``q`` with what the widgets show."""
        return replace(
            q, per_channel=self.per_channel.isChecked(), activation_type=self.activation_combo.currentData(),
            symmetric_activations=self.symmetric.isChecked(), format=self.format_combo.currentData(),
            exclude_nodes=self.keep.kept(q.exclude_nodes), equalize=self.equalize.isChecked(),
            bias_correction=self.bias_correction.isChecked(), reduce_range=self.reduce_range.isChecked(),
            ort_optimized=self.ort_optimized.isChecked(), batch_one=self.batch_one.isChecked(),
            share_concat_ranges=self.share_concat.isChecked(), pad_channels=self.pad_channels.isChecked(),
        )

    def honour(self, honours: frozenset, fixed_batch: int | None) -> None:
        """Grey out what the target ignores (a fixed batch stays as the model has it)."""
        for option, widgets in self.widgets_of().items():
            for w in widgets:
                w.setEnabled(option in honours)
        self.batch_one.setEnabled(QuantOption.BATCH_ONE in honours and not fixed_batch)

    def show_warnings(self, texts: list[str]) -> None:
        self.warning.setText("\n".join(texts))
        self.warning.setVisible(bool(texts))
