"""The live preview: the source image, what the model sees, each normalized
channel with a colour bar, and a histogram per channel with the typical
target range shaded. Items are created once; edits only push new data."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PIL import Image
from PySide6.QtWidgets import QGraphicsItem, QGraphicsView, QVBoxLayout, QWidget

from ..core.data.preview import Preview

MAX_CHANNELS = 3
CHANNEL_PENS = {"R": "#d62728", "G": "#2ca02c", "B": "#1f77b4", "Y": "#555555"}


class PreviewView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("w")
        # Repaint only what an edit changed, plainly (measured: about 3 ms of a
        # 26 ms frame; axes and labels come from a cache unless their range moves).
        self.graphics.setAntialiasing(False)
        self.graphics.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.MinimalViewportUpdate)
        self.graphics.setMinimumHeight(320)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.graphics)
        g = self.graphics

        self.source_plot = self._image_plot(0, 0, "Source")
        self.source_item = pg.ImageItem()
        self.source_plot.addItem(self.source_item)
        self.model_plot = self._image_plot(1, 0, "Model input")
        self.model_item = pg.ImageItem()
        self.model_plot.addItem(self.model_item)

        cmap = pg.colormap.get("CET-D1")  # diverging: zero in the middle stays visible
        self.channel_plots, self.channel_items, self.bars = [], [], []
        self.hist_plots, self.hist_curves, self.regions, self.hist_texts = [], [], [], []
        self._shapes: dict[str, tuple] = {}
        self._last_view = None
        for i in range(MAX_CHANNELS):
            plot = self._image_plot(0, 1 + i, ("R", "G", "B")[i])
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
            hp.setMenuEnabled(False)
            hp.hideButtons()
            hp.hideAxis("left")
            hp.enableAutoRange(y=False)
            region = pg.LinearRegionItem(values=(-1, 1), movable=False, brush=pg.mkBrush(40, 160, 40, 35), pen=pg.mkPen(None))
            region.setZValue(-10)
            hp.addItem(region)
            zero = pg.InfiniteLine(0, pen=pg.mkPen("#999", style=pg.QtCore.Qt.PenStyle.DashLine))
            hp.addItem(zero)
            curve = hp.plot([0, 1], [0], stepMode="center", pen="k")
            # Numbers go in a text item, not the title: a title change re-lays
            # out the whole grid (measured: most of an edit's redraw time).
            text = pg.TextItem(anchor=(0, 0), color="#333", fill=pg.mkBrush(255, 255, 255, 200))
            text.setParentItem(hp.vb)
            text.setPos(4, 2)
            self.hist_texts.append(text)
            self.hist_plots.append(hp)
            self.hist_curves.append(curve)
            self.regions.append(region)
        for item in g.scene().items():
            if isinstance(item, (pg.AxisItem, pg.LabelItem)):
                item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        g.ci.layout.setRowStretchFactor(0, 3)
        g.ci.layout.setRowStretchFactor(1, 2)
        g.ci.layout.setColumnStretchFactor(0, 2)
        for i in range(MAX_CHANNELS):
            g.ci.layout.setColumnStretchFactor(1 + i, 3)

    def _image_plot(self, row: int, col: int, title: str) -> pg.PlotItem:
        plot = self.graphics.addPlot(row=row, col=col)
        plot.setTitle(title, size="9pt")
        plot.setAspectLocked(True)
        plot.invertY(True)
        plot.hideAxis("left")
        plot.hideAxis("bottom")
        plot.setMouseEnabled(False, False)
        plot.setMenuEnabled(False)
        plot.hideButtons()
        return plot

    def set_source(self, img: Image.Image | None) -> None:
        """Show the decoded source, scaled down once for display (drawing a
        1920x1080 image scaled on every repaint cost ~50 ms a frame)."""
        if img is None:
            self.source_item.clear()
            return
        title = f"Source {img.size[0]}×{img.size[1]}"
        small = img.copy()
        small.thumbnail((480, 480), Image.Resampling.BILINEAR)
        self.source_item.setImage(np.asarray(small), autoLevels=False, levels=(0, 255))
        self.source_plot.autoRange(padding=0)
        self.source_plot.setTitle(title, size="9pt")

    def show_preview(self, preview: Preview, target: tuple[float, float]) -> None:
        view = preview.model_view
        if view is not self._last_view:  # a mean/std edit leaves the pixels (and this array) as they were
            self._last_view = view
            shown = view[:, :, 0] if view.shape[2] == 1 else view[:, :, ::-1] if self._bgr(preview) else view
            self.model_item.setImage(shown, autoLevels=False, levels=(0, 255))
        if self._changed("model", view.shape):
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
            lo, hi = nice_range(st.min, st.max)
            self.channel_items[i].setImage(preview.channels[i], autoLevels=False, levels=(lo, hi))
            if self._changed(f"levels{i}", (lo, hi)):
                self.bars[i].setLevels((lo, hi))
            if self._changed(f"channel{i}{st.name}", preview.channels[i].shape):
                self.channel_plots[i].setTitle(f"{st.name}, normalized", size="9pt")
                self.channel_plots[i].autoRange(padding=0)
            self.hist_curves[i].setData(st.edges, st.counts, pen=CHANNEL_PENS.get(st.name, "k"))
            self.hist_plots[i].setYRange(0, max(1, int(st.counts.max())) * 1.5, padding=0)  # room for the text
            self.regions[i].setRegion(target)
            self.hist_texts[i].setText(f"{st.name}  mean {st.mean:.2f}  std {st.std:.2f}\nmin {st.min:.2f}  max {st.max:.2f}")
            xr = nice_range(min(st.min, target[0]), max(st.max, target[1]))
            if self._changed(f"xrange{i}", xr):
                self.hist_plots[i].setXRange(*xr, padding=0.02)

    def _changed(self, key: str, value) -> bool:
        """Axis ranges and levels are set only when they change: each change
        makes pyqtgraph regenerate ticks, which cost more than the data."""
        changed = self._shapes.get(key) != value
        self._shapes[key] = value
        return changed

    @staticmethod
    def _bgr(preview: Preview) -> bool:
        return [s.name for s in preview.stats] == ["B", "G", "R"]


def nice_range(lo: float, hi: float) -> tuple[float, float]:
    """(lo, hi) widened to multiples of a round step (a tenth of the span's
    power of ten, doubled): small edits leave it unchanged."""
    if not hi > lo:
        return lo - 1.0, lo + 1.0
    step = 2 * 10 ** math.floor(math.log10(hi - lo) - 1)
    return math.floor(lo / step) * step, math.ceil(hi / step) * step
