"""FP32 vs INT8 as pictures on the Results page: a detector's boxes over the
images it saw (step through them), the scores of matched boxes FP32 against
INT8, or a dense model's maps side by side. Core draws; this shows."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from ..core.tasks import TASKS
from .widgets import button

Render = Callable[[Callable, Callable], None]  # (work, on_done): runs work off the GUI thread


def to_pixmap(img) -> QPixmap:
    """A Pillow RGB image as a QPixmap (copied: the buffer is not kept)."""
    arr = np.ascontiguousarray(np.asarray(img.convert("RGB")))
    h, w, _ = arr.shape
    return QPixmap.fromImage(QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy())


class SamplePictures(QWidget):
    def __init__(self, render: Render, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._render = render
        self.samples: list[dict] = []
        self.index = 0
        self._draw: Callable | None = None
        self._caption: Callable | None = None
        self.title = QLabel()
        self.title.setStyleSheet("font-weight: bold")
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setMinimumSize(160, 120)  # with the scores under it, within a 1366x768 window
        self.picture.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.legend = QLabel()
        self.legend.setWordWrap(True)
        self.prev_button = button("‹ &Previous", "The previous evaluation image (Alt+Left)", lambda: self.step(-1), "Alt+Left")
        self.next_button = button("&Next image ›", "The next evaluation image (Alt+Right)", lambda: self.step(1), "Alt+Right")
        nav = QHBoxLayout()  # the caption on a line of its own: beside the buttons it is squeezed into them
        nav.addWidget(self.prev_button)
        nav.addStretch(1)
        nav.addWidget(self.next_button)
        self.scores = pg.PlotWidget()
        self.scores.setBackground("w")
        self.scores.setMouseEnabled(False, False)
        self.scores.setMenuEnabled(False)
        self.scores.hideButtons()
        self.scores.setMinimumHeight(110)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.title)
        lay.addWidget(self.picture, 3)
        lay.addLayout(nav)
        lay.addWidget(self.caption)
        lay.addWidget(self.legend)
        lay.addWidget(self.scores, 2)
        self._pixmap: QPixmap | None = None

    def show_samples(self, report: dict, samples: list[dict], spec, names: list[str] | None) -> bool:
        """Show the run's pictures, drawn by its task; False when it has none."""
        kind = (report.get("task") or {}).get("kind")
        kit = TASKS[kind].pictures if kind in TASKS else None
        section = (report.get("fidelity") or {}).get(kind) or {}
        self.samples, self.index = list(samples or []), 0
        if kit is None or not self.samples or not kit.usable(section):
            self.samples, self._draw, self._caption = [], None, None
            return False
        self._draw = lambda s: kit.draw(s, section, spec, names)
        self._caption = kit.caption
        self.title.setText(kit.title(section))
        self.legend.setText(kit.legend(section))
        pairs = kit.scatter(section)
        self.scores.setTitle(kit.scatter_title)
        self._scores(pairs)
        self.scores.setVisible(bool(pairs))
        self._show()
        return True

    def step(self, delta: int) -> None:
        if self.samples:
            self.index = (self.index + delta) % len(self.samples)
            self._show()

    def _show(self) -> None:
        s = self.samples[self.index]
        name = s["file"].replace("\\", "/").rsplit("/", 1)[-1]
        self.caption.setText(f"Image {self.index + 1} of {len(self.samples)}, {name}: {self._caption(s)}")
        self.prev_button.setEnabled(len(self.samples) > 1)
        self.next_button.setEnabled(len(self.samples) > 1)
        draw, sample = self._draw, s
        self._render(lambda progress, cancel: draw(sample), self._drawn)

    def _drawn(self, img) -> None:
        self._pixmap = to_pixmap(img)
        self._fit()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        if self._pixmap is not None:
            self.picture.setPixmap(self._pixmap.scaled(self.picture.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                                       Qt.TransformationMode.SmoothTransformation))

    def _scores(self, pairs: list) -> None:
        plot = self.scores.getPlotItem()
        plot.clear()
        if not pairs:
            return
        xy = np.asarray(pairs, dtype=float)
        plot.addItem(pg.PlotDataItem([0, 1], [0, 1], pen=pg.mkPen("#999", style=Qt.PenStyle.DashLine)))
        plot.addItem(pg.ScatterPlotItem(xy[:, 0], xy[:, 1], size=5, brush=pg.mkBrush(42, 122, 184, 120), pen=None))
        lo = max(0.0, float(xy.min()) - 0.05)
        plot.setXRange(lo, 1.0)
        plot.setYRange(lo, 1.0)
        plot.getAxis("bottom").setLabel("FP32 score")
        plot.getAxis("left").setLabel("INT8 score")
