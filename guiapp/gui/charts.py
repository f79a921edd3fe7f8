"""FP32 vs INT8 charts for the results page (pyqtgraph), exportable as PNG."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF, Qt
from PySide6.QtWidgets import QGridLayout, QWidget

from ..core.tasks import TASKS

FP32, INT8 = "#7f8c9a", "#2a7ab8"


def _bars(plot: pg.PlotItem, labels: list[str], values: list[float], colors: list[str], fmt: str, beside: bool = False) -> None:
    """Bars with their values written on top (``beside``: to the right of
    the top, leaving the space above free for a whisker)."""
    plot.clear()
    x = np.arange(len(values))
    plot.addItem(pg.BarGraphItem(x=x, height=values, width=0.6, brushes=colors, pens=colors))
    top = max(values) if values else 1
    for xi, v in zip(x, values):
        t = pg.TextItem(fmt.format(v), anchor=(0.0, 1.0) if beside else (0.5, 1.0), color="k")
        t.setPos(xi + 0.32 if beside else xi, v)
        plot.addItem(t)
    plot.getAxis("bottom").setTicks([list(zip(x, labels))])
    plot.setYRange(0, top * 1.2 if top > 0 else 1)
    plot.setXRange(-0.6, len(values) - (0.0 if beside else 0.4))  # room for the last bar's label beside it


def chart_title(text: str) -> str:
    """``text`` on two lines, broken at the comma nearest its middle (for a
    chart too narrow for it: a third of a 1366-pixel window cut "mAP@0.5,
    100 labeled images" to "...labeled image")."""
    cuts = [i for i in range(len(text)) if text.startswith(", ", i)]
    if not cuts:
        return text
    at = min(cuts, key=lambda i: abs(i - len(text) / 2))
    return text[:at + 1] + "<br>" + text[at + 2:]


def _num(v, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


class ResultCharts(QWidget):
    WORST = 12  # per-layer bars shown (worst first)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        self.widgets = {}
        for key, title, row, col, span in (
            ("size", "Size (MB)", 0, 0, 1),
            ("latency", "Latency ms, median and p90", 0, 1, 1),
            ("accuracy", "Accuracy", 0, 2, 1),
            ("layers", "Per-layer SQNR, worst first (dB; higher is better)", 1, 0, 3),
        ):
            w = pg.PlotWidget(title=title)
            w.setBackground("w")
            w.setMouseEnabled(False, False)
            w.setMenuEnabled(False)
            w.hideButtons()
            w.setMinimumHeight(150)
            w.setMinimumWidth(150)
            grid.addWidget(w, row, col, 1, span)
            self.widgets[key] = w
        grid.setRowStretch(0, 2)
        grid.setRowStretch(1, 3)
        self._titles: dict[str, str] = {}
        self._layer_rows: list[dict] = []
        self._layer_count = 0  # bars drawn: as many as the chart's height shows legibly

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        for key in self._titles:
            self._fit_title(key)
        if self._layer_rows and self._fitting_layers() != self._layer_count:
            self._layers(self._layer_rows)

    def _set_title(self, key: str, text: str) -> None:
        self._titles[key] = text
        self._fit_title(key)

    def _fit_title(self, key: str) -> None:
        """The title on one line when the chart is wide enough for it (pyqtgraph
        lays out its scene at the title's width and crops the rest)."""
        w, plot = self.widgets[key], self.widgets[key].getPlotItem()
        w.setTitle(self._titles[key])
        if plot.effectiveSizeHint(Qt.SizeHint.MinimumSize).width() > w.width():
            w.setTitle(chart_title(self._titles[key]))
        plot.setGeometry(QRectF(w.viewport().rect()))  # laid out again now, at the title's new width

    def _fitting_layers(self) -> int:
        """Bars whose names do not overlap: about 15 pixels each."""
        height = self.widgets["layers"].height() - 60  # title and axis
        return max(4, min(self.WORST, height // 15))

    def show_report(self, r: dict) -> None:
        f, q = r["fp32"], r["int8"]
        _bars(self.widgets["size"].getPlotItem(), ["FP32", "INT8"], [f["size_bytes"] / 1e6, q["size_bytes"] / 1e6], [FP32, INT8], "{:.2f}")
        lat = self.widgets["latency"].getPlotItem()
        if f.get("latency_ms") and q.get("latency_ms"):
            lat.showAxis("left")
            lat.showAxis("bottom")
            med = [f["latency_ms"]["median"], q["latency_ms"]["median"]]
            p90 = [f["latency_ms"]["p90"], q["latency_ms"]["p90"]]
            _bars(lat, ["FP32", "INT8"], med, [FP32, INT8], "{:.2f}", beside=True)
            lat.addItem(pg.ErrorBarItem(x=np.arange(2), y=np.array(med), top=np.array(p90) - np.array(med), bottom=np.zeros(2), beam=0.2))
            lat.setYRange(0, max(p90) * 1.25)
            runtime = (r.get("target") or {}).get("title")
            self._set_title("latency", "Latency ms, median and p90" + (f" ({runtime.split(' (')[0]})" if runtime else ""))
        else:  # a target without a way to time it here (RKNN: no board)
            lat.clear()
            lat.hideAxis("left")
            lat.hideAxis("bottom")
            note = pg.TextItem("not measurable here:\nthe simulator does not time the NPU", anchor=(0.5, 0.5), color="#555")
            note.setPos(0.5, 0.5)
            lat.addItem(note)
            lat.setXRange(0, 1)
            lat.setYRange(0, 1)
            self._set_title("latency", "Latency")
        self._task(r)
        self._layers(r.get("per_layer") or [])

    def _task(self, r: dict) -> None:
        """The task's own numbers, as its module charts them."""
        plot = self.widgets["accuracy"].getPlotItem()
        kind = (r.get("task") or {}).get("kind")
        chart = TASKS[kind].chart(r) if kind in TASKS and r.get("fidelity") else None
        if chart is None:
            plot.clear()
            self._set_title("accuracy", "")
            return
        colors = [FP32 if b.role == "fp32" else INT8 for b in chart.bars]
        _bars(plot, [b.label for b in chart.bars], [b.value for b in chart.bars], colors, chart.fmt)
        self._set_title("accuracy", chart.title)

    def _layers(self, rows: list[dict]) -> None:
        """Horizontal bars, worst at the top, the tensor named on the left."""
        plot = self.widgets["layers"].getPlotItem()
        plot.clear()
        self._layer_rows, self._layer_count = rows, self._fitting_layers()
        rows = [x for x in rows if x.get("sqnr_db") is not None][: self._layer_count]
        if not rows:
            return
        values = [min(x["sqnr_db"], 80.0) for x in rows]
        y = np.arange(len(values))
        colors = ["#c0392b" if v < 10 else "#e67e22" if v < 20 else "#27ae60" for v in values]
        plot.addItem(pg.BarGraphItem(x0=0, y=y, height=0.7, width=values, brushes=colors, pens=colors))
        names = [self._short(r["name"]) + (" (weight)" if r["kind"] == "weight" else "") for r in rows]
        plot.getAxis("left").setTicks([list(zip(y, names))])
        plot.getAxis("bottom").setLabel("SQNR dB (red under 10, orange under 20: the layers that lost the most)")
        plot.invertY(True)
        plot.setXRange(0, max(values) * 1.12)
        plot.setYRange(-0.6, len(values) - 0.4)
        for yi, v in zip(y, values):
            t = pg.TextItem(f"{v:.1f}", anchor=(0, 0.5), color="k")
            t.setPos(v, yi)
            plot.addItem(t)

    @staticmethod
    def _short(name: str, n: int = 36) -> str:
        return name if len(name) <= n else "…" + name[-(n - 1):]

    def png_bytes(self) -> dict[str, bytes]:
        """Each chart as PNG, for the HTML report."""
        out = {}
        for key, w in self.widgets.items():
            image = w.grab().toImage()
            data = QByteArray()
            buf = QBuffer(data)
            buf.open(QIODevice.OpenModeFlag.WriteOnly)
            image.save(buf, "PNG")
            out[w.getPlotItem().titleLabel.text.replace("<br>", " ") or key] = bytes(data.data())
        return out
