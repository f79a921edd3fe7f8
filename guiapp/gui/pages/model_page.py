"""Step 1: open a model and see what it is, and whether it can be quantized."""

from __future__ import annotations

import html
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem,
    QSpinBox, QSplitter, QTextBrowser, QVBoxLayout, QWidget,
)

from ...core.errors import JobError, StudioError
from ...core.model.feeds import input_hint, make_feeds
from ...core.model.modelinfo import ModelInfo, inspect_model
from ...core.tasks import TASKS, TaskGuess, detect_task
from .. import dialogs
from ..task_options import VIEWS
from .page import Page
from ..widgets import ElidedLabel, add_items, button, message_label, numbers_text, parse_numbers, sentence


class ModelPage(Page):
    def __init__(self, window) -> None:
        super().__init__(
            window,
            "Model",
            "Open the FP32 ONNX model to quantize: by the button, by dropping the file here, or from the recent list.",
        )
        self.setAcceptDrops(True)

        self.open_button = button("&Open model…", "Choose an .onnx file (Ctrl+M)", self.choose_model, "Ctrl+M")
        self.demo_button = button(
            "Try the &demo", "Load the bundled demo: a small shape classifier with its images and settings", window.open_demo
        )
        self.path_label = ElidedLabel("No model yet. Drop an .onnx file anywhere on this page, or try the demo.")
        top = QHBoxLayout()
        top.addWidget(self.open_button)
        top.addWidget(self.demo_button)
        top.addWidget(self.path_label, 1)

        self.recent = QListWidget()
        self.recent.setToolTip("Recently opened models: double-click or press Enter to open")
        self.recent.itemActivated.connect(lambda item: self.open_model(Path(item.data(Qt.ItemDataRole.UserRole))))
        recent_box = QWidget()
        rl = QVBoxLayout(recent_box)
        rl.setContentsMargins(0, 0, 0, 0)
        recent_label = QLabel("Recent models")
        recent_label.setBuddy(self.recent)
        rl.addWidget(recent_label)
        rl.addWidget(self.recent)

        self.summary = QTextBrowser()
        self.summary.setOpenLinks(False)
        self.summary.setPlaceholderText("The model's inputs, outputs, operators and size appear here.")
        split = QSplitter()
        split.addWidget(recent_box)
        split.addWidget(self.summary)
        split.setStretchFactor(1, 3)
        split.setSizes([260, 900])

        self.blockers = message_label("error")
        self.notes = message_label("info")

        self.size_row = self._size_row()
        # Inputs besides the image get a constant each (an image size, a scale).
        self.inputs_box = QGroupBox("Other inputs: a constant value for each (one number fills it)")
        self.inputs_form = QFormLayout(self.inputs_box)
        self.input_edits: dict[str, QLineEdit] = {}
        self.inputs_box.hide()

        self.task_box = self._task_box()
        self.task_box.hide()

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(split, 1)
        lay.addWidget(self.task_box)
        lay.addWidget(self.size_row)
        lay.addWidget(self.inputs_box)
        lay.addWidget(self.notes)
        lay.addWidget(self.blockers)

    def _size_row(self) -> QWidget:
        row = QWidget()
        sl = QHBoxLayout(row)
        sl.setContentsMargins(0, 0, 0, 0)
        self.height_box, self.width_box = QSpinBox(), QSpinBox()
        for box, what in ((self.height_box, "height"), (self.width_box, "width")):
            box.setRange(0, 8192)
            box.setSpecialValueText("choose")
            box.setToolTip(f"The model's input {what} is dynamic: the {what} to feed, in pixels")
            box.valueChanged.connect(self._size_changed)
        size_label = QLabel("Input si&ze (dynamic in the model):")
        size_label.setBuddy(self.height_box)
        self.height_box.setAccessibleName("input height")
        self.width_box.setAccessibleName("input width")
        self.size_source = QLabel()
        self.size_source.setStyleSheet("color: #555")
        self.size_source.setWordWrap(True)
        sl.addWidget(size_label)
        sl.addWidget(self.height_box)
        times = QLabel("×")
        times.setBuddy(self.width_box)
        sl.addWidget(times)
        sl.addWidget(self.width_box)
        sl.addWidget(self.size_source, 1)
        row.hide()
        self._resize_timer = QTimer(self)  # a new size: the model runs at it again (shapes, task), once typing pauses
        self._resize_timer.setSingleShot(True)
        self._resize_timer.setInterval(400)
        self._resize_timer.timeout.connect(self._rerun_at_size)

        return row

    def _task_box(self) -> QGroupBox:
        box = QGroupBox("What the model does (decides how INT8 is judged against FP32)")
        row = QHBoxLayout(box)
        self.task_combo = QComboBox()
        add_items(self.task_combo, [("Auto", "auto", "Decided from the model's outputs")] + [
            (t.title, kind, f"Judge the INT8 model as {t.title.lower()}") for kind, t in TASKS.items()
        ])
        self.task_combo.setToolTip("The task sets the numbers the Results page shows: top-1 for classifiers, "
                                   "boxes (F1 vs FP32, mAP) for detectors, mask IoU for dense models")
        self.task_combo.currentIndexChanged.connect(self._task_chosen)
        self.task_reason = QLabel()
        self.task_reason.setWordWrap(True)
        self.task_reason.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.option_views = {kind: view() for kind, view in VIEWS.items()}
        for kind, view in self.option_views.items():
            view.edited.connect(self._options_edited)
        row.addWidget(QLabel("&Task"))
        row.itemAt(0).widget().setBuddy(self.task_combo)
        row.addWidget(self.task_combo)
        row.addWidget(self.task_reason, 1)
        for view in self.option_views.values():
            row.addWidget(view)
        return box

    def _show_task(self, guess: TaskGuess) -> None:
        t = self.state.task
        self.task_combo.blockSignals(True)
        self.task_combo.setCurrentIndex(max(0, self.task_combo.findData(t.kind)))
        self.task_combo.blockSignals(False)
        for kind, view in self.option_views.items():
            view.set_options(t.options_for(kind))
            view.setVisible(kind == guess.kind)
        how = "you chose it" if guess.chosen_by_user else "detected"
        self.task_reason.setText(f"<b>{TASKS[guess.kind].title}</b> ({how}): {guess.reason.removeprefix('chosen by you: ')}")
        self.task_box.show()

    def _task_chosen(self) -> None:
        if self.state.info is None:
            return
        try:
            guess = self.state.set_task(self.task_combo.currentData())
        except JobError as exc:
            dialogs.show_error(self, "Not this task", sentence(exc.detail) + ". " + exc.fix)
            guess = self.state.set_task("auto")
        self._show_task(guess)

    def _options_edited(self) -> None:
        view = self.sender()
        kind = next(k for k, v in self.option_views.items() if v is view)
        self.state.task = self.state.task.with_options(kind, view.options())

    # ---- wizard

    def initializePage(self) -> None:
        self.refresh_recent()
        if self.state.model_path and self.state.info is None:
            self.open_model(self.state.model_path)

    def isComplete(self) -> bool:
        info = self.state.info
        if info is None or info.blockers:
            return False
        try:
            make_feeds(info, self.state.inputs)
        except StudioError:
            return False
        return info.input_size is not None or self.state.preprocess.size is not None

    # ---- actions

    def refresh_recent(self) -> None:
        self.recent.clear()
        for p in self.settings.recent("models"):
            item = QListWidgetItem(Path(p).name)
            item.setToolTip(p)
            item.setData(Qt.ItemDataRole.UserRole, p)
            self.recent.addItem(item)

    def choose_model(self) -> None:
        path = dialogs.open_file(self, "Open ONNX model", self.settings.folder("models"), "ONNX models (*.onnx);;All files (*)")
        if path:
            self.open_model(Path(path))

    def open_model(self, path: Path) -> None:
        self.path_label.setText(f"Reading {path} …")
        self.summary.clear()
        same = self.state.model_path is not None and Path(path) == Path(self.state.model_path)
        kind = self.state.task.kind if same else "auto"  # a job's task choice survives its model's inspection
        size, layout = (self.state.preprocess.size, self.state.preprocess.layout) if same else (None, "auto")
        started = self.runner.start(
            lambda progress, cancel: _inspect(path, kind, size, layout), lambda found: self._inspected(path, *found),
            self._failed, light=True,
        )
        if not started:
            self.path_label.setText("Busy: wait for the current job to finish.")

    def _inspected(self, path: Path, info: ModelInfo, guess: TaskGuess) -> None:
        self.state.set_model(path, info, guess)
        if not guess.chosen_by_user and self.state.task.kind != "auto":  # the job's choice did not fit
            self.state.task = replace(self.state.task, kind="auto")
        self.settings.add_recent("models", path)
        self.settings.set_folder("models", path.parent)
        self.path_label.setText(str(path))
        self.summary.setHtml(summary_html(info, guess))
        self._show_task(guess)
        self.blockers.setText("\n".join(info.blockers))
        self.blockers.setVisible(bool(info.blockers))
        self.notes.setText("\n".join(info.notes))
        self.notes.setVisible(bool(info.notes))
        ii = info.image_input
        dynamic = ii is not None and ii.size is None
        self.size_row.setVisible(dynamic)
        self._fill_inputs(info)
        for box, v in zip((self.height_box, self.width_box), self.state.preprocess.size or info.input_size or (0, 0)):
            box.blockSignals(True)  # the state's size, else the one the model runs at (the file's), else none yet
            box.setValue(v)
            box.blockSignals(False)
        self.size_source.setText(_size_words(info))
        self.refresh_recent()
        self.window_.model_changed()
        self.completeChanged.emit()

    def _failed(self, exc: BaseException) -> None:
        self.state.info = None
        self.path_label.setText("Could not open the model.")
        self.summary.clear()
        self.notes.hide()
        self.size_row.hide()
        self.task_box.hide()
        self.inputs_box.hide()  # they belonged to the previous model
        text = dialogs.error_text(exc)
        self.blockers.setText(sentence(text))
        self.blockers.show()
        self.completeChanged.emit()
        dialogs.show_error(self, "Cannot open the model", text, dialogs.error_details(exc))

    def _fill_inputs(self, info: ModelInfo) -> None:
        while self.inputs_form.rowCount():
            self.inputs_form.removeRow(0)
        self.input_edits = {}
        for t in info.extra_inputs:
            edit = QLineEdit(numbers_text(self.state.inputs.get(t.name, ())))
            edit.setPlaceholderText("value(s): " + numbers_text((0.5, 1)))
            edit.setToolTip(f"What the model gets for {t.name} with every image: {input_hint(t)}")
            edit.textChanged.connect(lambda text, name=t.name: self._input_edited(name, text))
            self.inputs_form.addRow(f"{t.name} {t.shape_text} {t.dtype}", edit)
            self.input_edits[t.name] = edit
        self.inputs_box.setVisible(bool(info.extra_inputs))
        self._show_input_problem()

    def _input_edited(self, name: str, text: str) -> None:
        values = parse_numbers(text)  # the locale's decimal point, as the field shows it
        if values:
            self.state.inputs[name] = values
        else:
            self.state.inputs.pop(name, None)
        self._show_input_problem()
        self.completeChanged.emit()

    def _show_input_problem(self) -> None:
        info = self.state.info
        if info is None or info.blockers or not info.extra_inputs:
            return
        try:
            make_feeds(info, self.state.inputs)
            self.blockers.hide()
        except StudioError as exc:
            self.blockers.setText(sentence(str(exc)))
            self.blockers.show()

    def _size_changed(self) -> None:
        h, w = self.height_box.value(), self.width_box.value()
        self.state.preprocess = replace(self.state.preprocess, size=(h, w) if h and w else None)
        self.completeChanged.emit()
        if h and w:
            self.size_source.setText("running the model at this size…")
            self._resize_timer.start()

    def _rerun_at_size(self) -> None:
        if self.state.model_path is not None and not self.runner.busy:
            self.open_model(self.state.model_path)
        elif self.state.model_path is not None:
            self._resize_timer.start()

    # ---- drag and drop

    def dragEnterEvent(self, event) -> None:
        urls = event.mimeData().urls()
        if urls and urls[0].toLocalFile().lower().endswith(".onnx"):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        urls = event.mimeData().urls()
        if urls:
            self.open_model(Path(urls[0].toLocalFile()))


def _size_words(info: ModelInfo) -> str:
    """Where the size to feed comes from, and whether the model runs at it."""
    run = info.run
    if run is None:
        return "choose the size the model was trained at"
    if not run.ok:
        return f"it does not run at {run.size[0]}×{run.size[1]}: {run.error}"
    return f"{run.source}; the model runs at it" if run.source != "chosen" else "the model runs at this size"


def _inspect(path: Path, kind: str, size: tuple[int, int] | None = None, layout: str = "auto") -> tuple[ModelInfo, TaskGuess]:
    info = inspect_model(path, layout=layout, size=size)  # a job's layout and size, as the command line inspects them
    try:
        return info, detect_task(info, kind)
    except JobError:  # a job's task that does not fit this model: decide afresh
        return info, detect_task(info)


def summary_html(info: ModelInfo, guess: TaskGuess | None = None) -> str:
    e = html.escape
    ii = info.image_input
    rows = [
        ("File", f"{e(str(info.path))}"),
        ("Size", f"{info.size_bytes / 1e6:.2f} MB, {info.parameter_count:,} parameters, {info.node_count} nodes"),
        ("Format", f"ONNX IR {info.ir_version}, opset {info.opset}" + (f", made by {e(info.producer)}" if info.producer else "")),
    ]
    for t in info.inputs:
        tag = ""
        if ii and t.name == ii.name:
            dyn = ii.dynamic_axes
            tag = f" &mdash; <b>image</b>, {ii.layout.upper()}, {ii.channels} channel(s)" + (f", dynamic {'/'.join(dyn)}" if dyn else "")
        rows.append(("Input", f"<code>{e(t.name)}</code> {e(t.shape_text)} {e(t.dtype)}{tag}"))
    ex = info.exporter
    if ex.exporter:
        said = [w for w in (ex.task_claim, ex.size_claim) if w]
        rows.append(("Exported by", e(ex.exporter) + (f" ({e(', '.join(said))})" if said else "")))
    if ex.class_names:
        shown = ", ".join(ex.class_names[:12]) + (f" and {len(ex.class_names) - 12} more" if len(ex.class_names) > 12 else "")
        rows.append(("Classes", f"{len(ex.class_names)}: {e(shown)}"))
    dtypes = {t.name: t.dtype for t in info.outputs}
    for t, text in zip(info.outputs, info.outputs_text()):
        name, _, rest = text.partition(" ")
        rows.append(("Output", f"<code>{e(name)}</code> {e(rest)} {e(dtypes[t.name])}"))
    if guess is not None:
        rows.append(("Task", f"<b>{e(TASKS[guess.kind].title)}</b>: {e(guess.reason)}"))
    rows.append(("Operators", e(", ".join(f"{op} {n}" for op, n in info.op_counts))))
    if info.float_only_ops:
        rows.append(("Stay in float", e(", ".join(f"{op} {n}" for op, n in info.float_only_ops))
                     + " <i>(ONNX Runtime has no INT8 kernel for these)</i>"))
    for k, v in info.metadata.items():
        rows.append(("Metadata", f"<code>{e(k)}</code> = {e(v if len(v) <= 120 else v[:117] + '…')}"))
    body = "".join(f"<tr><td style='padding-right:12px;color:#555'>{k}</td><td>{v}</td></tr>" for k, v in rows)
    return f"<table cellspacing='0' cellpadding='3'>{body}</table>"
