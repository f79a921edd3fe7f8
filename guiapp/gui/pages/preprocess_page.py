"""Step 2: preprocessing, with a live preview on real images.

A wrong mean/std is the most common reason a quantized model fails: this page
shows the numbers the model will get, and says so in words when they look
wrong. The page only collects settings; core computes the preview.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QMetaObject, Qt, Slot
from PySide6.QtWidgets import QHBoxLayout, QScrollArea, QTabWidget, QVBoxLayout, QWidget

from ...core.errors import JobError
from ...core.model.modelinfo import inspect_model
from ...core.context import resolve_spec
from ...core.data.preprocess import PreprocessSpec, matching_preset, preset, same_values, with_preset
from ...core.data.preview import ResizeCache, build_preview, channel_names, target_range, warnings_for
from ..equivalents_box import EquivalentsBox
from ..image_browser import ImageBrowser
from ..normcheck_view import NormCheckPanel, check_job
from ..preprocess_form import CUSTOM, NormalizationBox, ResizeBox
from ..preview_view import PreviewView
from .page import Page
from ..widgets import message_label

FORM_WIDTH = 420  # the form's column; the preview takes the rest


class PreprocessPage(Page):
    def __init__(self, window) -> None:
        super().__init__(
            window,
            "Preprocessing",
            "How an image becomes the model's input. The preview shows the exact numbers the model will get.",
        )
        self._cache = ResizeCache()
        self.preview = None  # the last core Preview shown
        self._syncing = False

        self._refresh_queued = False
        self._complete = False
        self.check_panel = NormCheckPanel(self.runner, lambda: check_job(self.state, self.resolved_spec(), self._images),
                                          self._apply_candidate)

        self.normalization, self.resize = NormalizationBox(), ResizeBox()
        self._connect_form()
        self.equivalents = EquivalentsBox()
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.addWidget(self.normalization)
        ll.addWidget(self.resize)
        ll.addWidget(self.equivalents)
        ll.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Tab goes to the fields; the area follows the focus
        scroll.setFixedWidth(FORM_WIDTH)
        self.form_scroll = scroll
        lay = QHBoxLayout(self)
        lay.addWidget(scroll)
        lay.addWidget(self._preview_tabs(), 1)

    def _connect_form(self) -> None:
        """The form's widgets, as tests and the page reach them, and their edits."""
        n, r = self.normalization, self.resize
        self.preset_combo, self.file_note, self.pixel_units, self.unit_units = n.preset_combo, n.file_note, n.pixel_units, n.unit_units
        self.mean_edit, self.std_edit, self.color_combo, self.layout_combo = n.mean_edit, n.std_edit, n.color_combo, n.layout_combo
        self.resize_combo, self.shorter_box, self.pad_box = r.resize_combo, r.shorter_box, r.pad_box
        self.interp_combo, self.size_label = r.interp_combo, r.size_label
        self.preset_combo.currentIndexChanged.connect(self._preset_chosen)
        self.file_note.use_requested.connect(self._use_file_preprocessing)
        self.mean_edit.edited.connect(self._values_edited)
        self.std_edit.edited.connect(self._values_edited)
        self.color_combo.currentIndexChanged.connect(self._color_chosen)
        self.layout_combo.currentIndexChanged.connect(self._layout_changed)
        n.check_button.clicked.connect(self._start_check)
        for w in (self.resize_combo, self.interp_combo):
            w.currentIndexChanged.connect(self._edited)
        for w in (self.shorter_box, self.pad_box):
            w.valueChanged.connect(self._edited)

    def _preview_tabs(self) -> QTabWidget:
        self.browser = ImageBrowser(self.runner, self.settings)
        self.browser.decoded.connect(self._decoded)
        self.browser.folder_chosen.connect(self._folder_chosen)
        self.view = PreviewView()
        self.warnings = message_label("warn")
        preview = QWidget()
        pl = QVBoxLayout(preview)
        pl.addWidget(self.browser)
        pl.addWidget(self.view, 1)
        pl.addWidget(self.warnings)
        self.right_tabs = QTabWidget()
        self.right_tabs.addTab(preview, "Preview")
        self.right_tabs.addTab(self.check_panel, "Normalization check")
        return self.right_tabs

    # ---- wizard

    def initializePage(self) -> None:
        self._complete = self.isComplete()
        self.sync_from_state()
        if not self._images and self.state.calibration.folders:
            self.use_folder(self.state.calibration.folders[0])
        self.schedule()

    def isComplete(self) -> bool:
        return self.resolved_spec() is not None

    # ---- state <-> widgets

    def sync_from_state(self) -> None:
        spec, info = self.state.preprocess, self.state.info
        channels = info.image_input.channels if info and info.image_input else spec.channels
        self._syncing = True
        try:
            self.preset_combo.setCurrentIndex(self.preset_combo.findData(self.state.preset_name or CUSTOM))
            names = channel_names(spec) if spec.channels == channels else ("Y",) if channels == 1 else ("R", "G", "B")
            for edit in (self.mean_edit, self.std_edit):
                edit.set_channels(names)
            self.mean_edit.set_values(spec.mean)
            self.std_edit.set_values(spec.std)
            self.color_combo.setEnabled(channels == 3)
            self.color_combo.setCurrentIndex(max(0, self.color_combo.findData(spec.color)))
            self.layout_combo.setCurrentIndex(self.layout_combo.findData(spec.layout))
            if info and info.image_input:
                self.layout_combo.setItemText(0, f"detected ({info.image_input.layout.upper()})")
            self.resize_combo.setCurrentIndex(self.resize_combo.findData(spec.resize))
            self.shorter_box.setValue(spec.resize_shorter or 0)
            self.pad_box.setValue(spec.pad_value)
            self.interp_combo.setCurrentIndex(self.interp_combo.findData(spec.interpolation))
        finally:
            self._syncing = False
        self._update_enabled()

    def spec_from_widgets(self) -> PreprocessSpec:
        """The spec the widgets show; raises JobError for impossible values."""
        channels = len(self.mean_edit.boxes())
        color = "gray" if channels == 1 else self.color_combo.currentData()
        return PreprocessSpec(
            mean=self.mean_edit.values(),
            std=self.std_edit.values(),
            color=color,
            layout=self.layout_combo.currentData(),
            size=self.state.preprocess.size,
            resize=self.resize_combo.currentData(),
            resize_shorter=self.shorter_box.value() or None,
            pad_value=self.pad_box.value(),
            interpolation=self.interp_combo.currentData(),
        )

    def resolved_spec(self) -> PreprocessSpec | None:
        info = self.state.info
        if info is None or info.image_input is None:
            return None
        try:
            return resolve_spec(self.state.preprocess, info)
        except JobError:
            return None

    def _preset_chosen(self) -> None:
        if self._syncing:
            return
        name = self.preset_combo.currentData()
        if name == CUSTOM:
            self.state.preset_name = None
            return
        self.state.preset_name = name
        self.state.preprocess = with_preset(self.state.preprocess, name, len(self.mean_edit.boxes()))
        self.sync_from_state()
        self._edited()

    def _values_edited(self) -> None:
        if self._syncing:
            return
        name = self.state.preset_name
        if name:
            p = preset(name, len(self.mean_edit.boxes()))
            if not (same_values(p.mean, self.mean_edit.values()) and same_values(p.std, self.std_edit.values())):
                self.state.preset_name = None
                self._syncing = True
                self.preset_combo.setCurrentIndex(self.preset_combo.findData(CUSTOM))
                self._syncing = False
        self._edited()

    def _color_chosen(self) -> None:
        """Each colour keeps its mean and std (they are labelled by colour):
        RGB to BGR reverses them, and the labels follow."""
        if self._syncing:
            return
        spec, color = self.state.preprocess, self.color_combo.currentData()
        if spec.color in ("rgb", "bgr") and color != spec.color:
            self.state.preprocess = replace(spec, color=color, mean=spec.mean[::-1], std=spec.std[::-1])
            self.state.preset_name = matching_preset(self.state.preprocess)
            self.sync_from_state()
        self._edited()

    def _layout_changed(self) -> None:
        if self._syncing or self.state.model_path is None:
            return
        layout, path, size = self.layout_combo.currentData(), self.state.model_path, self.state.preprocess.size
        self.runner.start(lambda p, c: inspect_model(path, layout=layout, size=size), self._reinspected,
                          self._reinspect_failed, light=True)

    def _reinspected(self, info) -> None:
        self.state.info = info
        if info.image_input is None:
            self.warnings.setText("With this layout the model has no image input (no channel axis of size 1 or 3 there).")
            self.warnings.show()
        self._edited()

    def _reinspect_failed(self, exc) -> None:
        self.warnings.setText(str(exc))
        self.warnings.show()

    def _edited(self) -> None:
        if self._syncing:
            return
        try:
            self.state.preprocess = self.spec_from_widgets()
        except JobError as exc:
            self.warnings.setText(f"{exc.detail[:1].upper()}{exc.detail[1:]}. {exc.fix}")
            self.warnings.show()
            self._update_complete()
            return
        self._update_enabled()
        self._update_complete()
        self.check_panel.mark_stale()
        self.schedule()

    # ---- normalization check

    def _start_check(self) -> None:
        self.right_tabs.setCurrentWidget(self.check_panel)
        if not self.check_panel.running:
            self.check_panel.toggle()

    def _apply_candidate(self, candidate) -> None:
        self.state.preprocess = candidate.apply(self.state.preprocess)
        self.state.preset_name = matching_preset(self.state.preprocess)
        self.sync_from_state()
        self._edited()

    def _update_complete(self) -> None:
        """completeChanged only when Next's state flips (the wizard re-lays
        out its buttons on every emission)."""
        if self._complete != self.isComplete():
            self._complete = not self._complete
            self.completeChanged.emit()

    def _use_file_preprocessing(self) -> None:
        stated = self.state.file_preprocessing()
        if stated is not None:
            self.state.preprocess = stated
            self.state.preset_name = matching_preset(stated)
            self.sync_from_state()
            self._edited()

    def _update_enabled(self) -> None:
        """Only what changed: every text set relays out and repaints its widget,
        which a keystroke in mean/std should not pay for."""
        self.file_note.show_state(self.state)
        policy = self.resize_combo.currentData()
        self.shorter_box.setEnabled(policy == "shorter")
        self.pad_box.setEnabled(policy == "letterbox")
        spec = self.resolved_spec()
        if spec is not None:
            _set_if_changed(self.shorter_box.specialValueText, self.shorter_box.setSpecialValueText, f"auto ({spec.shorter_side})")
            ii, run = self.state.info.image_input, self.state.info.run
            source = ("from the model" if ii.size else run.source if run is not None and run.ok and run.size == spec.size
                      else "chosen on the Model page")
            _set_if_changed(self.size_label.text, self.size_label.setText, f"{spec.size[0]} × {spec.size[1]} ({source})")
            self.equivalents.show_spec(spec)

    # ---- images (ImageBrowser)

    @property
    def _images(self) -> list[Path]:
        return self.browser.images

    @property
    def _index(self) -> int:
        return self.browser.index

    @property
    def _image(self):
        return self.browser.image

    def step(self, delta: int) -> None:
        self.browser.step(delta)

    def use_folder(self, folder: Path) -> None:
        self.browser.use_folder(folder)

    def _folder_chosen(self, folder: Path) -> None:
        if not self.state.calibration.folders:
            self.state.calibration = replace(self.state.calibration, folders=(folder,))

    def _decoded(self, img) -> None:
        self.view.set_source(img)
        self.refresh_preview()

    # ---- preview

    def schedule(self) -> None:
        """Debounce: edits made in one pass of the event loop (typing, a preset
        setting six fields) cost one refresh. A queued call, not a timer: Qt
        posts repaints at low priority and fires timers after them, so a timer
        would wait for the previous frame's paint; this runs first, and one
        paint then shows the new preview."""
        if not self._refresh_queued:
            self._refresh_queued = True
            QMetaObject.invokeMethod(self, "_queued_refresh", Qt.ConnectionType.QueuedConnection)

    @Slot()
    def _queued_refresh(self) -> None:
        self._refresh_queued = False
        self.refresh_preview()

    def refresh_preview(self) -> None:
        spec = self.resolved_spec()
        if spec is None or self._image is None:
            return
        self.preview = build_preview(self._image, spec, self._cache)
        self.view.show_preview(self.preview, target_range(spec, self.state.preset_name))
        words = warnings_for(self.preview, spec, self.state.preset_name, self.state.info)
        self.warnings.setText("\n".join("⚠ " + w for w in words))
        self.warnings.setVisible(bool(words))


def _set_if_changed(get, set_, value) -> None:
    if get() != value:
        set_(value)
