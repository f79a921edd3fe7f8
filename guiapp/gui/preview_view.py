"""The live preview: the source image, what the model sees, each normalized
channel with a colour bar, and a histogram per channel with the typical
target range shaded. Items are created once; edits only push new data."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QVBoxLayout, QWidget

from ..core.preview import Preview

MAX_CHANNELS = 3
CHANNEL_PENS = {"R": "#d62728", "G": "#2ca02c", "B": "#1f77b4", "Y": "#555555"}


class PreviewView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("w")
        self.graphics.setMinimumHeight(320)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.graphics)
        g = self.graphics

        self.source_plot = self._image_plot(0, 0, "Source")
        self.source_item = pg.ImageItem(autoDownsample=True)
        self.source_plot.addItem(self.source_item)
        self.model_plot = self._image_plot(1, 0, "Model input")
        self.model_item = pg.ImageItem()
        self.model_plot.addItem(self.model_item)

        cmap = pg.colormap.get("CET-D1")  # diverging: zero in the middle stays visible
        self.channel_plots, self.channel_items, self.bars = [], [], []
        self.hist_plots, self.hist_curves, self.regions, self.zero_lines = [], [], [], []
        for i in range(MAX_CHANNELS):
            plot = self._image_plot(0, 1 + i, "")
            item = pg.ImageItem()
            plot.addItem(item)
            bar = pg.ColorBarItem(values=(-1, 1), colorMap=cmap, interactive=False, width=10)
            bar.setImageItem(item, insert_in=plot)
            self.channel_plots.append(plot)
            self.channel_items.append(item)
            self.bars.append(bar)
        for i in range(MAX_CHANNELS):
            hp = g.addPlot(row=1, col=1 + i)
            hp.setMouseEnabled(False, False)
            hp.hideButtons()
            hp.getAxis("left").setStyle(showValues=False)
            region = pg.LinearRegionItem(values=(-1, 1), movable=False, brush=pg.mkBrush(40, 160, 40, 35), pen=pg.mkPen(None))
            region.setZValue(-10)
            hp.addItem(region)
            zero = pg.InfiniteLine(0, pen=pg.mkPen("#999", style=pg.QtCore.Qt.PenStyle.DashLine))
            hp.addItem(zero)
            curve = hp.plot([0, 1], [0], stepMode="center", fillLevel=0, brush=(100, 100, 100, 90), pen="k")
            self.hist_plots.append(hp)
            self.hist_curves.append(curve)
            self.regions.append(region)
            self.zero_lines.append(zero)
        g.ci.layout.setRowStretchFactor(0, 3)
        g.ci.layout.setRowStretchFactor(1, 2)
        g.ci.layout.setColumnStretchFactor(0, 2)
        for i in range(MAX_CHANNELS):
            g.ci.layout.setColumnStretchFactor(1 + i, 3)

    def _image_plot(self, row: int, col: int, title: str) -> pg.PlotItem:
        plot = self.graphics.addPlot(row=row, col=col, title=title)
        plot.setAspectLocked(True)
        plot.invertY(True)
        plot.hideAxis("left")
        plot.hideAxis("bottom")
        plot.setMouseEnabled(False, False)
        plot.hideButtons()
        return plot

    def set_source(self, rgb: np.ndarray | None) -> None:
        if rgb is None:
            self.source_item.clear()
            return
        self.source_item.setImage(rgb, autoLevels=False, levels=(0, 255))
        self.source_plot.autoRange(padding=0)
        self.source_plot.setTitle(f"Source {rgb.shape[1]}×{rgb.shape[0]}", size="9pt")

    def show_preview(self, preview: Preview, target: tuple[float, float]) -> None:
        view = preview.model_view
        shown = view[:, :, 0] if view.shape[2] == 1 else view[:, :, ::-1] if self._bgr(preview) else view
        self.model_item.setImage(shown, autoLevels=False, levels=(0, 255))
        self.model_plot.setTitle(f"Model input {view.shape[1]}×{view.shape[0]}", size="9pt")
        self.model_plot.autoRange(padding=0)
        n = len(preview.stats)
        for i in range(MAX_CHANNELS):
            visible = i < n
            for w in (self.channel_plots[i], self.hist_plots[i]):
                w.setVisible(visible)
            self.bars[i].setVisible(visible)
            if not visible:
                continue
            st = preview.stats[i]
            lo, hi = (st.min, st.max) if st.max > st.min else (st.min - 1, st.min + 1)
            self.channel_items[i].setImage(preview.channels[i], autoLevels=False, levels=(lo, hi))
            self.bars[i].setLevels((lo, hi))
            self.channel_plots[i].setTitle(f"{st.name} {st.min:.2f} … {st.max:.2f}", size="9pt")
            self.channel_plots[i].autoRange(padding=0)
            self.hist_curves[i].setData(st.edges, st.counts, pen=CHANNEL_PENS.get(st.name, "k"))
            self.regions[i].setRegion(target)
            hp = self.hist_plots[i]
            hp.setTitle(f"{st.name} mean {st.mean:.2f} std {st.std:.2f}", size="9pt")
            hp.setXRange(min(lo, target[0]), max(hi, target[1]), padding=0.05)

    @staticmethod
    def _bgr(preview: Preview) -> bool:
        return [s.name for s in preview.stats] == ["B", "G", "R"]
