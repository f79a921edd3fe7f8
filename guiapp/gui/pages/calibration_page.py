"""Step 3: calibration images, strategy, quantization options, evaluation and
the output file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox, QDoubleSpinBox, QFormLayout, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QListWidget,
    QListWidgetItem, QScrollArea, QSpinBox, QVBoxLayout, QWidget,
)

from ...core.atomic import check_output_path
from ...core.data.dataset import scan_folders
from ...core.errors import OutputError
from ...core.calibrate.strategies import DESCRIPTIONS, METHODS
from ...core.notes import texts
from ...core.targets.registry import TARGETS
from ...core.tasks import TASKS
from .. import dialogs
from ..collapsible import Collapsible
from ..quant_options import QuantOptions
from ..target_box import TargetBox
from ..tuning_view import AccuracyTargetBox
from .page import Page
from ..widgets import add_items, buddy, button, kept, message_label, path_row, sentence

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
        self.target_box = TargetBox(self.settings)
        self.target_box.edited.connect(self._target_edited)
        self.accuracy = AccuracyTargetBox()
        self.accuracy.edited.connect(self._edited)
        self.options = QuantOptions()
        self.options.edited.connect(self._edited)
        # What tests and the target's greying-out reach directly.
        self.per_channel, self.activation_combo, self.symmetric = self.options.per_channel, self.options.activation_combo, self.options.symmetric
        self.format_combo, self.nodes = self.options.format_combo, self.options.keep.nodes
        self.advanced = Collapsible("Advanced &quantization options", self.options, self.settings, "calibration/advanced")
        self.problems = message_label("error")
        # Two columns: the common path (images, strategy, accuracy target, evaluation, output) in view at
        # 1366x768; the advanced options below it, closed until opened (and remembered).
        body = QWidget()
        grid = QGridLayout(body)
        left, right = QVBoxLayout(), QVBoxLayout()
        for w in (self._images_box(), self._strategy_box(), self.accuracy):
            left.addWidget(w)
        left.addStretch(1)
        for w in (self._evaluation_box(), self.target_box, self._output_box(), self.problems):
            right.addWidget(w)
        right.addStretch(1)
        grid.addLayout(left, 0, 0)
        grid.addLayout(right, 0, 1)
        grid.addWidget(self.advanced, 1, 0, 1, 2)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)
        grid.setRowStretch(2, 1)
        scroll = QScrollArea()
        scroll.setWidget(body)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Tab goes to the fields; the area follows the focus
        self.scroll = scroll
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(scroll)
        for w in (self.sample_box, self.seed_box, self.offset_box):
            w.valueChanged.connect(self._edited)
        self.percentile_box.valueChanged.connect(self._edited)
        for w in (self.method_combo, self.labels_combo):
            w.currentIndexChanged.connect(self._edited)
        for w in (self.eval_edit, self.csv_edit, self.output_edit):
            w.textChanged.connect(self._edited)

    def _images_box(self) -> QGroupBox:
        images = QGroupBox("Calibration images")
        images.setToolTip("A few hundred images like the ones the model will see: they set the INT8 ranges")
        il = QGridLayout(images)
        self.folders = QListWidget()
        self.folders.setToolTip("Folders searched recursively for images")
        self.folders.setAccessibleName("calibration folders")
        self.folders.setMaximumHeight(64)
        il.addWidget(self.folders, 0, 0, 2, 1)
        il.addWidget(button("&Add folder…", "Add a folder of calibration images", self.add_folder), 0, 1)
        il.addWidget(button("&Remove", "Remove the selected folder", self.remove_folder), 1, 1)
        self.sample_box = QSpinBox()
        self.sample_box.setRange(1, 2**31 - 1)
        self.sample_box.setToolTip("How many images to calibrate on, at most (picked at random with the seed)")
        self.sample_box.setAccessibleName("calibration images to use")
        self.seed_box = QSpinBox()
        self.seed_box.setRange(0, 2**31 - 1)
        self.seed_box.setToolTip("Seed for picking the images: the same seed picks the same images")
        self.seed_box.setAccessibleName("seed")
        row = QHBoxLayout()
        use = QLabel("&Use at most")
        use.setBuddy(self.sample_box)
        seed = QLabel("images, s&eed")
        seed.setBuddy(self.seed_box)
        for w in (use, self.sample_box, seed, self.seed_box):
            row.addWidget(w)
        row.addStretch(1)
        il.addLayout(row, 2, 0, 1, 2)
        return images

    def _strategy_box(self) -> QGroupBox:
        box = QGroupBox("Strategy")
        qf = QFormLayout(box)
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
        percentile = QLabel("&percentile")
        percentile.setBuddy(self.percentile_box)
        mrow.addWidget(percentile)
        mrow.addWidget(self.percentile_box)
        mrow.addStretch(1)
        qf.addRow(buddy("&Strategy", self.method_combo), mrow)
        qf.addRow(self.method_text)
        return box

    def _evaluation_box(self) -> QGroupBox:
        ev = QGroupBox("Evaluation (optional)")
        ev.setToolTip("Images to compare FP32 and INT8 on. Without them, calibration images not used for calibration "
                      "are compared")
        ef = QFormLayout(ev)
        self.eval_edit = QLineEdit()
        self.eval_edit.setPlaceholderText("none: calibration images left over are compared")
        self.eval_edit.setToolTip("Images to compare FP32 and INT8 on; those used for calibration are left out")
        ef.addRow(buddy("Fol&der", self.eval_edit), path_row(self.eval_edit, "Choose the evaluation folder", self.choose_eval))
        self.labels_combo = QComboBox()
        add_items(self.labels_combo, LABEL_SOURCES)
        self.labels_combo.setToolTip("Labels give top-1/top-5 (classifiers) or mAP (detectors); without them INT8 is "
                                     "measured against FP32")
        self.csv_edit = QLineEdit()
        self.csv_edit.setPlaceholderText("labels file or folder")
        self.csv_edit.setToolTip("The CSV or COCO JSON file, or the folder of YOLO .txt files")
        self.offset_box = QSpinBox()
        self.offset_box.setRange(-1000, 1000)
        self.offset_box.setToolTip("Model index = class index + offset (1 for models with a background class at 0)")
        ef.addRow(buddy("&Labels", self.labels_combo), self.labels_combo)
        ef.addRow(buddy("Labels f&ile", self.csv_edit), path_row(self.csv_edit, "Choose the labels file", self.choose_csv))
        ef.addRow(buddy("Class &offset", self.offset_box), self.offset_box)
        return ev

    def _output_box(self) -> QGroupBox:
        out = QGroupBox("Output")
        of = QFormLayout(out)
        self.output_edit = QLineEdit()
        self.output_edit.setToolTip("Where the INT8 model is written (never over the input model)")
        of.addRow(buddy("INT&8 model", self.output_edit), path_row(self.output_edit, "Choose the output file", self.choose_output))
        return out

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
        out = s.output or s.default_output()
        if out is None:
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
        c, q, e = s.calibration, s.quantization, s.evaluation
        self._syncing = True
        try:
            self.sample_box.setValue(c.max_images)
            self.seed_box.setValue(c.seed)
            self.method_combo.setCurrentIndex(self.method_combo.findData(c.method))
            self.percentile_box.setValue(c.percentile)
            self.options.show_settings(q, self.state.info.nodes if self.state.info else ())
            self.accuracy.set_settings(s.tuning, self._target_metric_text())
            self.eval_edit.setText(str(e.folders[0]) if e.folders else "")
            self.labels_combo.setCurrentIndex(self.labels_combo.findData(e.labels_from))
            self.csv_edit.setText(str(e.labels_csv) if e.labels_csv else "")
            self.offset_box.setValue(e.class_offset)
            self.target_box.set_target(s.target)
            s.target = self.target_box.target()  # the remembered RKNN Python, when the job had none
            self._fill_folders()
            self._show_output()
        finally:
            self._syncing = False
        self._update_texts()

    def _show_output(self) -> None:
        """The output the job names; none: the default place, shown greyed."""
        s = self.state
        self.output_edit.setText(str(s.output) if s.output else "")
        default = s.default_output()
        self.output_edit.setPlaceholderText(f"{default} (the default)" if default else "")

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
            method=self.method_combo.currentData(), percentile=kept(self.percentile_box, s.calibration.percentile),
        )
        s.quantization = self.options.settings(s.quantization)
        s.tuning = self.accuracy.settings()
        eval_text, csv_text = self.eval_edit.text().strip(), self.csv_edit.text().strip()
        folders = s.evaluation.folders  # a job's further folders stay while the first one is shown unchanged
        if eval_text != (str(folders[0]) if folders else ""):
            folders = (Path(eval_text),) if eval_text else ()
        s.evaluation = replace(
            s.evaluation, folders=folders, labels_from=self.labels_combo.currentData(),
            labels_csv=Path(csv_text) if csv_text else None, class_offset=self.offset_box.value(),
        )
        text = self.output_edit.text().strip()
        s.output = Path(text) if text else None  # none: the default place
        self._update_texts()

    def _target_edited(self) -> None:
        self.state.set_target(self.target_box.target())
        self._syncing = True
        try:
            self._show_output()
        finally:
            self._syncing = False
        self._update_texts()

    def _update_texts(self) -> None:
        target = TARGETS[self.state.target.kind]
        ii = self.state.info.image_input if self.state.info else None
        self.options.honour(target.honours, ii.fixed_batch if ii else None)
        self.options.show_warnings(texts(target.advice(self.state.quantization)))
        method = self.method_combo.currentData()
        self.method_text.setText(DESCRIPTIONS.get(method, ""))
        self.percentile_box.setEnabled(method == "percentile")
        self.csv_edit.setEnabled(self.labels_combo.currentData() in ("csv", "coco", "yolo"))
        self.accuracy.metric_text.setText(self._target_metric_text())
        was_complete, self._problem = not self._problem, self.problem_text()
        self.problems.setText(self._problem)
        self.problems.setVisible(bool(self._problem))
        if was_complete != (not self._problem):
            # Only when Next flips: the wizard relays out its buttons on every
            # emission, and a spin box being typed in then rewrites its text
            # ("99" became "99.0000" before the ".5" of "99.5" was typed).
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
        what = TASKS[g.kind if g else "classification"].metric_words(self.state.evaluation.labels_from)
        what = what or "not available: this task has no accuracy-like number"
        return f"Measured in points of {what}, on the evaluation images."

    def choose_output(self) -> None:
        start = str(self.state.output or self.state.default_output() or "")
        suffix = TARGETS[self.state.target.kind].suffix
        path = dialogs.save_file(self, "Write the INT8 model to", start, f"Models (*{suffix})")
        if path:
            self.output_edit.setText(path if path.lower().endswith(suffix) else path + suffix)

