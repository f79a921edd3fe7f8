"""The Calibration page's "Keep in float" box: the model's nodes, filterable,
ticked to stay in float."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem, QVBoxLayout


class NodePicker(QGroupBox):
    edited = Signal()

    def __init__(self, title: str = "Keep in float (optional)") -> None:
        super().__init__(title)
        layout = QVBoxLayout(self)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter nodes by name or operator…")
        self.filter.setToolTip("Type to filter; tick the nodes to keep in float")
        self.filter.textChanged.connect(self._apply_filter)
        self.nodes = QListWidget()
        self.nodes.setMinimumHeight(120)
        self.nodes.setToolTip("Ticked nodes stay in float32 (sensitive layers, often the first and last)")
        self.nodes.setAccessibleName("nodes kept in float")
        self.nodes.itemChanged.connect(self.edited)
        label = QLabel("Filter")
        label.setBuddy(self.filter)
        row = QHBoxLayout()
        row.addWidget(label)
        row.addWidget(self.filter, 1)
        layout.addLayout(row)
        layout.addWidget(self.nodes)

    def fill(self, nodes, excluded) -> None:
        """``nodes``: (name, op type) pairs; ``excluded``: the names ticked."""
        excluded = set(excluded)
        self.nodes.clear()
        for name, op in nodes:
            item = QListWidgetItem(f"{name}  ({op})")
            item.setData(Qt.ItemDataRole.UserRole, name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if name in excluded else Qt.CheckState.Unchecked)
            self.nodes.addItem(item)
        self._apply_filter(self.filter.text())

    def names(self) -> tuple[str, ...]:
        """Every node listed."""
        return tuple(self.nodes.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.nodes.count()))

    def kept(self, held: tuple[str, ...]) -> tuple[str, ...]:
        """``held`` (a job's list) as the ticks now say: its order kept, and
        names that are not in this model kept too (nothing shows them to untick)."""
        checked, listed = self.checked(), set(self.names())
        return tuple(n for n in held if n in checked or n not in listed) + tuple(n for n in checked if n not in held)

    def checked(self) -> tuple[str, ...]:
        items = (self.nodes.item(i) for i in range(self.nodes.count()))
        return tuple(it.data(Qt.ItemDataRole.UserRole) for it in items if it.checkState() == Qt.CheckState.Checked)

    def _apply_filter(self, text: str) -> None:
        text = text.lower()
        for i in range(self.nodes.count()):
            item = self.nodes.item(i)
            item.setHidden(bool(text) and text not in item.text().lower())
