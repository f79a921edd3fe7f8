"""Step 3: calibration images, strategy, quantization options, evaluation and
the output file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
    QListWidget, QListWidgetItem, QScrollArea, QSpinBox, QVBoxLayout, QWidget,
)

from ...core.atomic import check_output_path
from ...core.data.dataset import scan_folders
from ...core.errors import OutputError
from ...core.quantize.ortquant import settings_warnings
from ...core.calibrate.strategies import DESCRIPTIONS, METHODS
from ...core.targets.registry import TARGETS
from .. import dialogs
from ..node_picker import NodePicker
from ..target_box import TargetBox
from ..tuning_view import AccuracyTargetBox
from .page import Page
from ..widgets import add_items, button, message_label, path_row, sentence

LABEL_SOURCES = (
    ("no labels (compare with FP32 only)", "none", "Without labels the INT8 model is judged against FP32 alone"),
    ("class sub-folders", "subfolders", "Classifiers: one sub-folder per class"),
    ("CSV file (classes)", "csv", "Classifiers: a CSV with file and class_index (or label) columns"),
    ("YOLO .txt files (boxes)", "yolo", "Detectors: class cx cy w h per line, beside the images, in a labels/ folder "
                                        "parallel to images/, or in the folder given below"),
    ("COCO JSON (boxes)", "coco", "Detectors: a COCO detection file"),
)


class CalibrationPage(Page):
    def __init__(self, window) -> None:
        super().__init__(
            window,
            "Calibration",
            "The images that set INT8 ranges, how the ranges are chosen, and where the INT8 model goes.",
        )
        self._scans: dict[str, object] = {}
        self._syncing = False
        self._problem = "not checked yet"

        # -- images
        images = QGroupBox("Calibration images (a few hundred, like the ones the model will see)")
        il = QGridLayout(images)
        self.folders = QListWidget()
        self.folders.setToolTip("Folders searched recursively for images")
        self.folders.setMaximumHeight(80)
        add = button("&Add folder…", "Add a folder of calibration images", self.add_folder)
        remove = button("&Remove", "Remove the selected folder", self.remove_folder)
        il.addWidget(self.folders, 0, 0, 3, 1)
        il.addWidget(add, 0, 1)
        il.addWidget(remove, 1, 1)
        self.sample_box = QSpinBox()
        self.sample_box.setRange(1, 100000)
        self.sample_box.setToolTip("How many images to calibrate on (picked at random with the seed)")
        self.seed_box = QSpinBox()
        self.seed_box.setRange(0, 2**31 - 1)
        self.seed_box.setToolTip("Seed for picking the images: the same seed picks the same images")
        row = QHBoxLayout()
        row.addWidget(QLabel("Use"))
        row.addWidget(self.sample_box)
        row.addWidget(QLabel("images, seed"))
        row.addWidget(self.seed_box)
        row.addStretch(1)
        il.addLayout(row, 3, 0, 1, 2)

        # -- strategy and quantization
        quant = QGroupBox("Strategy and quantization")
        qf = QFormLayout(quant)
        self.method_combo = QComboBox()
        add_items(self.method_combo, ((m, m, DESCRIPTIONS[m]) for m in METHODS))
        self.method_combo.setToolTip("How each tensor's INT8 range is chosen from the calibration statistics")
        self.method_text = QLabel()
        self.method_text.setWordWrap(True)
        self.method_text.setStyleSheet("color: #555")
        self.percentile_box = QDoubleSpinBox()
        self.percentile_box.setRange(50, 100)
        self.percentile_box.setDecimals(4)
        self.percentile_box.setToolTip("For the percentile strategy: the share of values kept inside the range")
        mrow = QHBoxLayout()
        mrow.addWidget(self.method_combo)
        mrow.addWidget(QLabel("percentile"))
        mrow.addWidget(self.percentile_box)
        mrow.addStretch(1)
        qf.addRow(_buddy("&Strategy", self.method_combo), mrow)
        qf.addRow("", self.method_text)
        self.per_channel = QCheckBox("per-channel weights")
        self.per_channel.setToolTip("One scale per output channel: usually more accurate for convolutions, at no speed cost")
        self.activation_combo = QComboBox()
        self.activation_combo.addItem("uint8 (fast on x86)", "uint8")
        self.activation_combo.addItem("int8", "int8")
        self.activation_combo.setToolTip("uint8 activations run fastest with ONNX Runtime on x86; int8 is for targets that need it")
        self.symmetric = QCheckBox("symmetric activations")
        self.symmetric.setToolTip("Zero point in the middle of the range; some NPUs need it, it wastes codes after ReLU")
        self.format_combo = QComboBox()
        self.format_combo.addItem("QDQ", "qdq")
        self.format_combo.addItem("QOperator", "qoperator")
        self.format_combo.setToolTip("QDQ inserts Quantize/Dequantize pairs (recommended); QOperator uses QLinear* operators")
        self.reduce_range = QCheckBox("reduce range (7-bit, for CPUs without VNNI)")
        self.reduce_range.setToolTip("For x86 CPUs without VNNI, where full 8-bit weights can saturate; costs accuracy elsewhere")
        wrow = QHBoxLayout()
        wrow.addWidget(self.per_channel)
        wrow.addWidget(self.reduce_range)
        wrow.addStretch(1)
        qf.addRow("Weights", wrow)
        arow = QHBoxLayout()
        arow.addWidget(self.activation_combo)
        arow.addWidget(self.symmetric)
        arow.addStretch(1)
        qf.addRow(_buddy("&Activations", self.activation_combo), arow)
        self.share_concat = QCheckBox("Concat inputs share its range (a copy instead of a requantization)")
        self.share_concat.setToolTip(
            "Inputs read only by a Concat are quantized with the Concat's range: faster (squeezenet1.1 INT8 1.58 -> 1.45 ms), "
            "no accuracy cost. Turn off only to compare"
        )
        qf.addRow("", self.share_concat)
        qf.addRow(_buddy("F&ormat", self.format_combo), self.format_combo)
        self.equalize = QCheckBox("cross-layer equalization")
        self.equalize.setToolTip("Rescale consecutive convolutions so per-tensor weights fit every channel "
                                 "(MobileNet-like nets on NPUs that need per-tensor weights)")
        self.bias_correction = QCheckBox("bias correction")
        self.bias_correction.setToolTip("Absorb the mean shift that weight quantization causes into the biases")
        hrow = QHBoxLayout()
        hrow.addWidget(self.equalize)
        hrow.addWidget(self.bias_correction)
        hrow.addStretch(1)
        qf.addRow("Per-tensor aids", hrow)
        self.ort_optimized = QCheckBox("optimized for ONNX Runtime")
        self.ort_optimized.setToolTip(
            "Write the graph as ONNX Runtime optimizes it (fused QLinear operators). Loads in ONNX Runtime only: "
            "turn it off for OpenVINO, TensorRT or an NPU toolkit"
        )
        self.batch_one = QCheckBox("batch of 1 (fixed input shape)")
        self.batch_one.setToolTip("Fix the input's batch size to 1, if you run one image at a time: every shape is known in advance")
        self.pad_channels = QCheckBox("pad channels to 4")
        self.pad_channels.setToolTip(
            "Give convolutions with 3 input channels (an RGB model's first) a fourth, zero channel: the same outputs, and "
            "ONNX Runtime's fast INT8 kernel on x86 (squeezenet1.1 INT8 1.44 -> 1.34 ms). Arm CPUs gain nothing from it"
        )
        orow = QHBoxLayout()
        orow.addWidget(self.pad_channels)
        orow.addWidget(self.ort_optimized)
        orow.addWidget(self.batch_one)
        orow.addStretch(1)
        qf.addRow("Output", orow)
        self.activation_warning = message_label("warn")
        qf.addRow("", self.activation_warning)

        self.target_box = TargetBox(self.settings)
        self.target_box.edited.connect(self._target_edited)

        # -- keep in float
        self.keep = keep = NodePicker()
        self.nodes = keep.nodes  # the list (a target that ignores exclusions greys it out)
        self.node_filter = keep.filter

        # -- evaluation
        ev = QGroupBox("Evaluation (optional: without it, calibration images not used for calibration are compared)")
        ef = QFormLayout(ev)
        self.eval_edit = QLineEdit()
        self.eval_edit.setPlaceholderText("folder of held-out images")
        self.eval_edit.setToolTip("Images to compare FP32 and INT8 on; those used for calibration are left out")
        ef.addRow(_buddy("&Folder", self.eval_edit), path_row(self.eval_edit, "Choose the evaluation folder", self.choose_eval))
        self.labels_combo = QComboBox()
        add_items(self.labels_combo, LABEL_SOURCES)
        self.labels_combo.setToolTip("Labels give top-1/top-5 (classifiers) or mAP (detectors); without them INT8 is "
                                     "measured against FP32")
        self.csv_edit = QLineEdit()
        self.csv_edit.setPlaceholderText("labels file or folder")
        self.offset_box = QSpinBox()
        self.offset_box.setRange(-10, 10)
        self.offset_box.setToolTip("Model index = class index + offset (1 for models with a background class at 0)")
        ef.addRow(_buddy("&Labels", self.labels_combo), self.labels_combo)
        ef.addRow("Labels file", path_row(self.csv_edit, "Choose the labels file", self.choose_csv))
        ef.addRow(_buddy("Class o&ffset", self.offset_box), self.offset_box)

        # -- output
        out = QGroupBox("Output")
        of = QFormLayout(out)
        self.output_edit = QLineEdit()
        self.output_edit.setToolTip("Where the INT8 model is written (never over the input model)")
        of.addRow(_buddy("INT8 &model", self.output_edit), path_row(self.output_edit, "Choose the output file", self.choose_output))
        self.problems = message_label("error")

        # Two columns: at 1280x800 everything, the output included, is in view.
        body = QWidget()
        cols = QHBoxLayout(body)
        left, right = QVBoxLayout(), QVBoxLayout()
        self.accuracy = AccuracyTargetBox()
        self.accuracy.edited.connect(self._edited)
        for w in (images, quant, self.target_box, self.accuracy):
            left.addWidget(w)
        left.addStretch(1)
        for w in (keep, ev, out, self.problems):
            right.addWidget(w)
        right.addStretch(1)
        cols.addLayout(left, 1)
        cols.addLayout(right, 1)
        scroll = QScrollArea()
        scroll.setWidget(body)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(scroll)

        for w in (self.sample_box, self.seed_box, self.offset_box):
            w.valueChanged.connect(self._edited)
        self.percentile_box.valueChanged.connect(self._edited)
        for w in (self.method_combo, self.activation_combo, self.format_combo, self.labels_combo):
            w.currentIndexChanged.connect(self._edited)
        for w in (self.per_channel, self.symmetric, self.equalize, self.bias_correction, self.share_concat, self.reduce_range,
                  self.pad_channels, self.ort_optimized, self.batch_one):
            w.toggled.connect(self._edited)
        for w in (self.eval_edit, self.csv_edit, self.output_edit):
            w.textChanged.connect(self._edited)
        keep.edited.connect(self._edited)

    # ---- wizard

    def initializePage(self) -> None:
        self.sync_from_state()
        self.rescan()

    def isComplete(self) -> bool:
        return not self._problem  # checked by _update_texts after every change

    def problem_text(self) -> str:
        s = self.state
        if not s.calibration.folders:
            return "Add at least one folder of calibration images."
        scans = [self._scans.get(str(f)) for f in s.calibration.folders]
        if all(sc is not None for sc in scans) and sum(sc.images - len(sc.unreadable) for sc in scans) == 0:
            return "The calibration folders hold no readable image."
        target = TARGETS[s.target.kind]
        if self.target_box.problem():
            return f"{target.title} cannot run here: see Deployment target."
        refused = target.refuses(s.to_job()) if s.model_path is not None else ""
        if refused:
            return refused
        out = s.output
        if out is None or not str(out).strip():
            return "Choose where to write the INT8 model."
        if s.model_path is not None:
            try:  # the run asks before replacing an existing output
                check_output_path(s.model_path, out, overwrite=True, suffix=target.suffix)
            except OutputError as exc:
                return sentence(str(exc))
        if s.evaluation.labels_from in ("csv", "coco") and not (s.evaluation.labels_csv and s.evaluation.labels_csv.is_file()):
            return "Choose the labels file, or another label source."
        if s.evaluation.labels_from == "subfolders" and not s.evaluation.folders:
            return "Class sub-folders need an evaluation folder."
        return ""

    # ---- state <-> widgets

    def sync_from_state(self) -> None:
        s = self.state
        if s.output is None:
            s.output = s.default_output()
        c, q, e = s.calibration, s.quantization, s.evaluation
        self._syncing = True
        try:
            self.sample_box.setValue(c.max_images)
            self.seed_box.setValue(c.seed)
            self.method_combo.setCurrentIndex(self.method_combo.findData(c.method))
            self.percentile_box.setValue(c.percentile)
            self.per_channel.setChecked(q.per_channel)
            self.activation_combo.setCurrentIndex(self.activation_combo.findData(q.activation_type))
            self.symmetric.setChecked(q.symmetric_activations)
            self.format_combo.setCurrentIndex(self.format_combo.findData(q.format))
            self.equalize.setChecked(q.equalize)
            self.bias_correction.setChecked(q.bias_correction)
            self.accuracy.set_settings(s.tuning, self._target_metric_text())
            self.reduce_range.setChecked(q.reduce_range)
            self.share_concat.setChecked(q.share_concat_ranges)
            self.pad_channels.setChecked(q.pad_channels)
            self.ort_optimized.setChecked(q.ort_optimized)
            self.batch_one.setChecked(q.batch_one)
            self.eval_edit.setText(str(e.folders[0]) if e.folders else "")
            self.labels_combo.setCurrentIndex(self.labels_combo.findData(e.labels_from))
            self.csv_edit.setText(str(e.labels_csv) if e.labels_csv else "")
            self.offset_box.setValue(e.class_offset)
            self.output_edit.setText(str(s.output) if s.output else "")
            self.target_box.set_target(s.target)
            s.target = self.target_box.target()  # the remembered RKNN Python, when the job had none
            self.keep.fill(self.state.info.nodes if self.state.info else (), self.state.quantization.exclude_nodes)
            self._fill_folders()
        finally:
            self._syncing = False
        self._update_texts()

    def _fill_folders(self) -> None:
        self.folders.clear()
        for f in self.state.calibration.folders:
            sc = self._scans.get(str(f))
            if sc is None:
                text = f"{f}  (counting…)"
            else:
                bad = len(sc.unreadable)
                among = f" among the first {sc.checked} checked" if sc.checked < sc.images else ""
                text = f"{f}  ({sc.images} images" + (f", {bad} unreadable{among}" if bad else "") + ")"
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, str(f))
            if sc is not None and sc.unreadable:
                item.setToolTip("Unreadable (skipped):\n" + "\n".join(f"{p.name}: {r}" for p, r in sc.unreadable[:20]))
            self.folders.addItem(item)

    def _edited(self) -> None:
        if self._syncing:
            return
        s = self.state
        s.calibration = replace(
            s.calibration, max_images=self.sample_box.value(), seed=self.seed_box.value(),
            method=self.method_combo.currentData(), percentile=self.percentile_box.value(),
        )
        excluded = self.keep.checked()
        s.quantization = replace(
            s.quantization, per_channel=self.per_channel.isChecked(), activation_type=self.activation_combo.currentData(),
            symmetric_activations=self.symmetric.isChecked(), format=self.format_combo.currentData(), exclude_nodes=excluded,
            equalize=self.equalize.isChecked(), bias_correction=self.bias_correction.isChecked(),
            reduce_range=self.reduce_range.isChecked(), ort_optimized=self.ort_optimized.isChecked(),
            batch_one=self.batch_one.isChecked(), share_concat_ranges=self.share_concat.isChecked(),
            pad_channels=self.pad_channels.isChecked(),
        )
        s.tuning = self.accuracy.settings()
        eval_text, csv_text = self.eval_edit.text().strip(), self.csv_edit.text().strip()
        s.evaluation = replace(
            s.evaluation, folders=(Path(eval_text),) if eval_text else (), labels_from=self.labels_combo.currentData(),
            labels_csv=Path(csv_text) if csv_text else None, class_offset=self.offset_box.value(),
        )
        text = self.output_edit.text().strip()
        s.output = Path(text) if text else None
        self._update_texts()

    def _target_edited(self) -> None:
        self.state.set_target(self.target_box.target())
        self._syncing = True
        try:
            self.output_edit.setText(str(self.state.output) if self.state.output else "")
        finally:
            self._syncing = False
        self._update_texts()

    def _update_texts(self) -> None:
        honoured = TARGETS[self.state.target.kind].settings
        for name, widgets in (("per_channel", (self.per_channel,)), ("activation_type", (self.activation_combo,)),
                              ("symmetric_activations", (self.symmetric,)), ("format", (self.format_combo,)),
                              ("exclude_nodes", (self.nodes, self.node_filter)), ("reduce_range", (self.reduce_range,)),
                              ("share_concat_ranges", (self.share_concat,)), ("pad_channels", (self.pad_channels,)),
                              ("ort_optimized", (self.ort_optimized,)), ("equalize", (self.equalize,)),
                              ("bias_correction", (self.bias_correction,))):
            for w in widgets:
                w.setEnabled(name in honoured)
        method = self.method_combo.currentData()
        self.method_text.setText(DESCRIPTIONS.get(method, ""))
        self.percentile_box.setEnabled(method == "percentile")
        self.csv_edit.setEnabled(self.labels_combo.currentData() in ("csv", "coco", "yolo"))
        self.accuracy.metric_text.setText(self._target_metric_text())
        ii = self.state.info.image_input if self.state.info else None
        # a fixed batch stays as the model has it
        self.batch_one.setEnabled("batch_one" in honoured and not (ii and ii.fixed_batch))
        warnings = settings_warnings(self.state.quantization) if self.state.target.kind == "onnxruntime" else []
        self.activation_warning.setText("\n".join(warnings))
        self.activation_warning.setVisible(bool(warnings))
        self._problem = self.problem_text()
        self.problems.setText(self._problem)
        self.problems.setVisible(bool(self._problem))
        self.completeChanged.emit()

    # ---- folders

    def add_folder(self) -> None:
        folder = dialogs.open_folder(self, "Calibration images", self.settings.folder("images"))
        if folder:
            self.settings.set_folder("images", Path(folder))
            folders = tuple(self.state.calibration.folders) + (Path(folder),)
            self.state.calibration = replace(self.state.calibration, folders=tuple(dict.fromkeys(folders)))
            self._fill_folders()
            self.rescan()
            self._update_texts()

    def remove_folder(self) -> None:
        item = self.folders.currentItem()
        if item is None:
            return
        path = item.data(Qt.ItemDataRole.UserRole)
        self.state.calibration = replace(
            self.state.calibration, folders=tuple(f for f in self.state.calibration.folders if str(f) != path)
        )
        self._fill_folders()
        self._update_texts()

    def rescan(self) -> None:
        todo = [f for f in self.state.calibration.folders if str(f) not in self._scans]
        if todo:
            self.runner.start(lambda p, c: scan_folders(todo, p, c), self._scanned, None, light=True)

    def _scanned(self, scans) -> None:
        for sc in scans:
            self._scans[str(sc.folder)] = sc
        self._fill_folders()
        self._update_texts()

    def choose_eval(self) -> None:
        folder = dialogs.open_folder(self, "Evaluation images", self.settings.folder("images"))
        if folder:
            self.eval_edit.setText(folder)

    def choose_csv(self) -> None:
        kind = self.labels_combo.currentData()
        if kind == "yolo":
            path = dialogs.open_folder(self, "Folder of YOLO label files", self.settings.folder("images"))
        else:
            path = dialogs.open_file(self, "Labels file", self.settings.folder("images"),
                                     "Labels (*.csv *.json);;All files (*)")
        if path:
            self.csv_edit.setText(path)
            if kind not in ("csv", "coco", "yolo"):
                self.labels_combo.setCurrentIndex(self.labels_combo.findData("coco" if path.lower().endswith(".json") else "csv"))

    def _target_metric_text(self) -> str:
        """Which number the target is in, for this model and these labels."""
        g = self.state.task_guess
        kind = g.kind if g else "classification"
        labels = self.state.evaluation.labels_from
        if kind == "classification":
            what = "top-1 accuracy" if labels in ("csv", "subfolders") else "top-1 agreement with FP32"
        else:
            what = {"detection": "detection F1 against FP32 (boxes matched at IoU 0.5)",
                    "dense": "mask IoU against FP32"}.get(kind, "not available: this task has no accuracy-like number")
        return f"Measured in points of {what}, on the evaluation images."

    def choose_output(self) -> None:
        start = str(self.state.output or self.state.default_output() or "")
        suffix = TARGETS[self.state.target.kind].suffix
        path = dialogs.save_file(self, "Write the INT8 model to", start, f"Models (*{suffix})")
        if path:
            self.output_edit.setText(path if path.lower().endswith(suffix) else path + suffix)




def _buddy(text: str, widget: QWidget) -> QLabel:
    """A form label whose mnemonic focuses ``widget``."""
    label = QLabel(text)
    label.setBuddy(widget)
    return label
