"""The accuracy-target search in the wizard: its settings (Calibration page),
the trials as they come (Run page), and the trials as a Pareto chart where a
click picks the model to write (Results page)."""

from __future__ import annotations

from typing import Callable

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QDoubleSpinBox, QGroupBox, QHBoxLayout, QLabel, QTableWidget, QTableWidgetItem,
    QVBoxLayout, QWidget,
)

from ..core.job import TuningSettings
from .widgets import kept

MEETS, MISSES, CHOSEN = "#27ae60", "#c0392b", "#2a7ab8"


class AccuracyTargetBox(QGroupBox):
    """"Automatic: meet an accuracy target", the allowed drop and the time budget."""

    edited = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Accuracy target (optional)", parent)
        self._held = TuningSettings()  # the job's values, kept while the boxes show them
        self.auto_check = QCheckBox("Auto&matic: find the fastest INT8 model at most")
        self.auto_check.setToolTip("Tries strategies, equalization and bias correction (per-tensor), and layers in float, "
                                "and writes the best model that meets the target (or the best found, saying by how much "
                                "it missed)")
        self.drop = QDoubleSpinBox()
        self.drop.setRange(0.0, 100.0)
        self.drop.setDecimals(2)
        self.drop.setSingleStep(0.5)
        self.drop.setSuffix(" points")
        self.drop.setToolTip("How far below FP32 the task's headline number may go: top-1 with labels; without labels "
                             "top-1 agreement (classifiers), detection F1 or mask IoU against FP32")
        self.minutes = QDoubleSpinBox()
        self.minutes.setRange(0.1, 10000.0)
        self.minutes.setDecimals(1)
        self.minutes.setSuffix(" min")
        self.minutes.setToolTip("Time budget of the search; when it runs out, the best model so far is written")
        self.metric_text = QLabel()
        self.metric_text.setWordWrap(True)
        self.metric_text.setStyleSheet("color: #555")
        row = QHBoxLayout()
        row.addWidget(self.auto_check)
        row.addWidget(self.drop)
        within = QLabel("below FP32, &within")
        within.setBuddy(self.minutes)
        self.drop.setAccessibleName("allowed drop below FP32")
        row.addWidget(within)
        row.addWidget(self.minutes)
        row.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addLayout(row)
        lay.addWidget(self.metric_text)
        self.auto_check.toggled.connect(self._changed)
        self.drop.valueChanged.connect(self._changed)
        self.minutes.valueChanged.connect(self._changed)

    def set_settings(self, t: TuningSettings, metric_text: str) -> None:
        self._held = t
        for w in (self.auto_check, self.drop, self.minutes):
            w.blockSignals(True)
        self.auto_check.setChecked(t.max_drop is not None)
        self.drop.setValue(1.0 if t.max_drop is None else t.max_drop)
        self.minutes.setValue(t.minutes)
        for w in (self.auto_check, self.drop, self.minutes):
            w.blockSignals(False)
        self.metric_text.setText(metric_text)
        self._enable()

    def settings(self) -> TuningSettings:
        held = self._held
        drop = kept(self.drop, held.max_drop) if self.auto_check.isChecked() else None
        return TuningSettings(drop, kept(self.minutes, held.minutes))

    def _enable(self) -> None:
        self.drop.setEnabled(self.auto_check.isChecked())
        self.minutes.setEnabled(self.auto_check.isChecked())

    def _changed(self) -> None:
        self._enable()
        self.edited.emit()


def _metric_text(v) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


class TrialsView(QWidget):
    """A table of trials and a chart of metric against latency; ``add`` takes
    a trial as the search reports it (``ProgressEvent.data``)."""

    COLUMNS = ("#", "step", "settings", "metric", "latency ms", "size MB")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.labelled: set[int] = set()  # trials whose point carries its size (the rest: the index only)
        self.trials: list[dict] = []
        self.goal: dict | None = None
        self.chosen: int | None = None
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.setColumnWidth(0, 34)
        self.table.setColumnWidth(1, 70)
        self.table.setColumnWidth(2, 330)
        self.chart = pg.PlotWidget(title="Trials: metric vs latency (green meets the target)")
        self.chart.setBackground("w")
        self.chart.setMenuEnabled(False)
        self.chart.hideButtons()
        self.chart.getPlotItem().getAxis("bottom").setLabel("INT8 latency, ms (this machine)")
        self.chart.getPlotItem().getAxis("left").setLabel("%")
        self.scatter = pg.ScatterPlotItem(size=11, hoverable=True)
        self.target_line = pg.InfiniteLine(angle=0, pen=pg.mkPen("#888", style=Qt.PenStyle.DashLine))
        self.chart.addItem(self.target_line)
        self.chart.addItem(self.scatter)
        self.labels: list[pg.TextItem] = []
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.table, 3)
        lay.addWidget(self.chart, 2)

    def clear(self) -> None:
        self.trials, self.goal, self.chosen = [], None, None
        self.table.setRowCount(0)
        self._plot()

    def add(self, data: dict) -> None:
        self.goal = data["goal"]
        t = data["trial"]
        self.trials.append(t)
        r = self.table.rowCount()
        self.table.insertRow(r)
        settings = _settings_text(t)
        cells = (str(t["index"]), t["stage"], settings, _metric_text(t["metric"]),
                 "-" if t["latency_ms"] is None else f"{t['latency_ms']:.2f}", f"{t['size_bytes'] / 1e6:.2f}")
        for c, text in enumerate(cells):
            item = QTableWidgetItem(text)
            if c == 3:
                item.setForeground(pg.mkColor(MEETS if t["meets"] else MISSES))
            if c == 2:
                item.setToolTip(settings + ("\nIn float: " + ", ".join(t["float_nodes"]) if t["float_nodes"] else ""))
            self.table.setItem(r, c, item)
        self.table.scrollToBottom()
        self._plot()

    def show_trials(self, tuning: dict) -> None:
        self.clear()
        for t in tuning["trials"]:
            self.add({"trial": t, "goal": tuning["target"]})
        self.chosen = tuning["chosen"]
        self.labelled = set(tuning.get("pareto") or []) | {self.chosen}
        self._plot()

    def _plot(self) -> None:
        for t in self.labels:
            self.chart.removeItem(t)
        self.labels = []
        pts = [t for t in self.trials if t["metric"] is not None and t["latency_ms"] is not None]
        spots = []
        for t in pts:
            color = CHOSEN if t["index"] == self.chosen else MEETS if t["meets"] else MISSES
            spots.append({"pos": (t["latency_ms"], t["metric"] * 100), "data": t["index"], "brush": pg.mkBrush(color),
                          "size": 15 if t["index"] == self.chosen else 10})
            text = f"{t['index']}: {t['size_bytes'] / 1e6:.2f} MB" if t["index"] in self.labelled else str(t["index"])
            label = pg.TextItem(text, color="#444", anchor=(0, 1))
            label.setPos(t["latency_ms"], t["metric"] * 100)
            self.chart.addItem(label)
            self.labels.append(label)
        self.scatter.setData(spots)
        if self.goal:
            self.target_line.setValue(self.goal["required"] * 100)
            self.target_line.show()
        else:
            self.target_line.hide()
        if pts:
            ys = [t["metric"] * 100 for t in pts] + ([self.goal["required"] * 100] if self.goal else [])
            xs = [t["latency_ms"] for t in pts]
            pad = max(1.0, (max(ys) - min(ys)) * 0.15)
            self.chart.setYRange(min(ys) - pad, max(ys) + pad)
            span = max(xs) - min(xs) or max(xs) * 0.2 or 1.0
            self.chart.setXRange(min(xs) - span * 0.15, max(xs) + span * 0.9)


def _settings_text(t: dict) -> str:
    parts = [t["method"], "per-channel" if t["per_channel"] else "per-tensor"]
    if t.get("equalize"):
        parts.append("equalized")
    if t.get("bias_correction"):
        parts.append("bias-corrected")
    if t["float_nodes"]:
        parts.append(f"{len(t['float_nodes'])} in float")
    return ", ".join(parts)


class ParetoView(TrialsView):
    """The Results page's trials: a click on a point (or a row) asks to write
    that trial's model instead."""

    def __init__(self, on_pick: Callable[[int], None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.chart.setTitle("Trials: metric vs latency, labels: trial and size (click to write it)")
        self._on_pick = on_pick
        self.scatter.sigClicked.connect(self._clicked)
        self.table.cellDoubleClicked.connect(lambda row, col: self._on_pick(int(self.table.item(row, 0).text())))

    def _clicked(self, item, points, ev=None) -> None:
        if len(points):
            self._on_pick(int(points[0].data()))
