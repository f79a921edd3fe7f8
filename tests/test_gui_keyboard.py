"""The wizard by keyboard and for a screen reader (issue 20): Tab goes
through each page in reading order, every field has a label (its buddy)
and a tooltip, and no Alt+letter is claimed twice on a page (with the menu
bar's and the wizard's buttons)."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, Qt  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QAbstractButton, QAbstractSpinBox, QComboBox, QGroupBox, QLabel, QLineEdit, QListWidget, QTabBar, QWizard,
)

from test_gui import dialogs, page, window  # noqa: E402,F401 - fixtures
from test_gui_layout import walk  # noqa: E402
from test_gui_roundtrip import job_file  # noqa: E402

FIELDS = (QLineEdit, QAbstractSpinBox, QComboBox, QListWidget)


def tab_chain(pg) -> list:
    """The widgets Tab reaches on ``pg``, in order."""
    out, w, visited = [], pg.nextInFocusChain(), []
    while w is not pg and not any(w is v for v in visited):
        visited.append(w)  # kept alive: a freed wrapper's id would come back for another widget
        if (pg.isAncestorOf(w) and w.isVisible() and w.isEnabled() and w.focusPolicy() & Qt.FocusPolicy.TabFocus
                and w.focusProxy() is None and not isinstance(w.parent(), (QAbstractSpinBox, QComboBox))):
            out.append(w)
        w = w.nextInFocusChain()
    return out


def fields(pg) -> list:
    """The page's visible input fields (not the line edit inside a spin box or combo)."""
    found = [w for cls in FIELDS for w in pg.findChildren(cls)]
    return [w for w in found if w.isVisible() and not isinstance(w.parent(), (QAbstractSpinBox, QComboBox))]


def mnemonic(text: str) -> str | None:
    m = re.search(r"&([^&])", text.replace("&&", ""))
    return m.group(1).lower() if m else None


def shortcuts(window, pg) -> list[tuple[str, str]]:
    """(letter, where) of every Alt+letter live on ``pg``: its labels and
    buttons, the menu bar, the wizard's buttons."""
    out = [(mnemonic(a.text()), "menu " + a.text()) for a in window.menuBar().actions()]
    for which in (QWizard.WizardButton.BackButton, QWizard.WizardButton.NextButton, QWizard.WizardButton.CommitButton):
        b = window.wizard.button(which)
        if b.isVisible():
            out.append((mnemonic(b.text()), "wizard " + b.text()))
    for w in pg.findChildren(QLabel) + pg.findChildren(QAbstractButton) + pg.findChildren(QGroupBox):
        text = w.title() if isinstance(w, QGroupBox) else w.text()
        live = w.isVisible() and (not isinstance(w, QLabel) or w.buddy() is not None)
        if live and (not isinstance(w, QGroupBox) or w.isCheckable()):
            out.append((mnemonic(text), f"{type(w).__name__} {text}"))
    for bar in pg.findChildren(QTabBar):
        if bar.isVisible():
            out += [(mnemonic(bar.tabText(i)), "tab " + bar.tabText(i)) for i in range(bar.count())]
    return [(k, where) for k, where in out if k]


def reading_order_breaks(pg, chain) -> list[str]:
    """Steps of ``chain`` that go back up the page without moving to a column
    further right, and more than one move to a new column."""
    breaks, columns = [], 0
    pos = [w.mapTo(pg, QPoint(0, 0)) for w in chain]
    for (a, pa), (b, pb) in zip(zip(chain, pos), zip(chain[1:], pos[1:])):
        if pb.y() < pa.y() - 8:  # up: only into the next column
            columns += 1
            if pb.x() <= pa.x() + 40 or columns > 1:
                breaks.append(f"{_name(a)} ({pa.x()},{pa.y()}) -> {_name(b)} ({pb.x()},{pb.y()})")
    return breaks


def _name(w) -> str:
    return w.accessibleName() or (w.text() if isinstance(w, QAbstractButton) else "") or type(w).__name__


def labelled(w, pg) -> bool:
    return (any(lbl.buddy() is w and lbl.isVisible() for lbl in pg.findChildren(QLabel))
            or (isinstance(w, QListWidget) and bool(w.accessibleName())))


def check_page(window, pg, where: str) -> None:
    chain = tab_chain(pg)
    assert not reading_order_breaks(pg, chain), (where, reading_order_breaks(pg, chain))
    for w in fields(pg):
        assert w.toolTip() or w.accessibleName(), (where, "no tooltip", _name(w))
        assert labelled(w, pg) or w.accessibleName(), (where, "no label", _name(w), w.toolTip())
        if w.isEnabled():
            assert any(w is c for c in chain), (where, "not reached by Tab", _name(w))
    seen: dict[str, str] = {}
    for k, what in shortcuts(window, pg):
        assert k not in seen, (where, f"Alt+{k}: {seen.get(k)} and {what}")
        seen[k] = what


@pytest.mark.parametrize("family", ["bgr-detector", "rknn", "two-inputs", "gray-nhwc", "tensorrt"])
def test_keyboard_and_labels_on_every_page(qtbot, window, tmp_path, family):  # noqa: F811
    window.resize(1366, 768)
    walk(window, lambda c: qtbot.waitUntil(c, timeout=60_000), job_file(tmp_path, family))
    cp = page(window, "CALIBRATION")
    cp.accuracy.auto_check.setChecked(True)  # every field enabled
    cp.method_combo.setCurrentIndex(cp.method_combo.findData("percentile"))
    for opened in (False, True):
        cp.advanced.set_opened(opened)
        check_page(window, cp, f"CALIBRATION, advanced {'open' if opened else 'closed'}")
    for name in ("PREPROCESS", "MODEL"):  # Back, as a user goes
        window.wizard.back()
        qtbot.waitUntil(lambda: not window.runner.busy, timeout=60_000)
        assert window.wizard.currentPage() is page(window, name)
        check_page(window, page(window, name), name)


def test_run_and_results_buttons_claim_no_letter_twice(window):  # noqa: F811
    """Their buttons, shown or not yet, with the menu bar's and the wizard's."""
    menu = {mnemonic(a.text()) for a in window.menuBar().actions()}
    for name in ("RUN", "RESULTS"):
        pg = page(window, name)
        keys = [mnemonic(b.text()) for b in pg.findChildren(QAbstractButton) if not b.isHidden()]
        keys += [mnemonic(pg.buttonText(QWizard.WizardButton.CommitButton))] if name == "RUN" else []
        keys = [k for k in keys if k]
        assert len(keys) == len(set(keys)) and not set(keys) & (menu | {"b"}), (name, keys)
