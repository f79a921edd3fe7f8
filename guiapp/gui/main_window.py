"""The main window: the wizard, the File menu, and closing safely."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QIcon, QKeySequence
from PySide6.QtWidgets import QLabel, QMainWindow, QMessageBox, QWizard

from .. import APP_NAME, __version__
from ..core.errors import StudioError
from ..core.run import load_job
from ..core.resources import resource_path
from . import dialogs
from .pages.calibration_page import CalibrationPage
from .pages.ids import PageId
from .pages.model_page import ModelPage
from .pages.preprocess_page import PreprocessPage
from .pages.results_page import ResultsPage
from .pages.run_page import RunPage
from .runner import JobRunner
from .settings import Settings
from .state import WizardState


class MainWindow(QMainWindow):
    def __init__(self) -> None:
        super().__init__()
        self.settings = Settings()
        self.state = WizardState()
        self.runner = JobRunner(self)
        self.setWindowTitle(APP_NAME)
        icon = resource_path("icons", "hicolor", "256x256", "apps", "quantization-studio.png")  # PNG: no Qt plugin needed
        if icon.is_file():
            self.setWindowIcon(QIcon(str(icon)))

        self.wizard = QWizard()
        self.wizard.setWindowFlags(Qt.WindowType.Widget)
        self.wizard.setWizardStyle(QWizard.WizardStyle.ClassicStyle)
        self.wizard.setOption(QWizard.WizardOption.NoCancelButton, True)
        self.wizard.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.wizard.setButtonLayout(
            [QWizard.WizardButton.Stretch, QWizard.WizardButton.BackButton, QWizard.WizardButton.NextButton, QWizard.WizardButton.CommitButton]
        )
        self.pages = {
            PageId.MODEL: ModelPage(self),
            PageId.PREPROCESS: PreprocessPage(self),
            PageId.CALIBRATION: CalibrationPage(self),
            PageId.RUN: RunPage(self),
            PageId.RESULTS: ResultsPage(self),
        }
        for pid, page in self.pages.items():
            self.wizard.setPage(pid, page)
        self.wizard.setStartId(PageId.MODEL)
        self.setCentralWidget(self.wizard)
        self.busy_label = QLabel()
        self.busy = False  # a quantization is running (set_busy)
        self.statusBar().addPermanentWidget(self.busy_label)
        self._build_menu()
        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 800)

    def _build_menu(self) -> None:
        menu = self.menuBar().addMenu("&File")

        def action(text, slot, shortcut=None, tip=""):
            a = QAction(text, self)
            if shortcut:
                a.setShortcut(shortcut)
            a.setStatusTip(tip)
            a.triggered.connect(slot)
            menu.addAction(a)
            return a

        action("&New", self.new_job, QKeySequence.StandardKey.New, "Start over with a new model")
        action("&Open job…", self.open_job, QKeySequence.StandardKey.Open, "Open a job file (the JSON that guiapp quantize --job reads)")
        action("&Save job…", self.save_job, QKeySequence.StandardKey.Save, "Save the current settings as a job file")
        self.recent_menu = menu.addMenu("&Recent jobs")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        menu.addSeparator()
        action("&Quit", self.close, QKeySequence.StandardKey.Quit, "Quit")
        help_menu = self.menuBar().addMenu("&Help")
        about = QAction("&About", self)
        about.triggered.connect(self.about)
        help_menu.addAction(about)

    # ---- called by pages

    def model_changed(self) -> None:
        name = self.state.model_path.name if self.state.model_path else ""
        self.setWindowTitle(f"{name} — {APP_NAME}" if name else APP_NAME)

    def set_busy(self, busy: bool) -> None:
        """A quantization (not a preview decode) is running."""
        self.busy = busy
        self.busy_label.setText("Working…" if busy else "")

    # ---- File menu

    def new_job(self) -> None:
        if self.runner.busy:
            return
        self.state.__init__()
        self.wizard.restart()
        self.model_changed()

    def open_demo(self) -> None:
        """The bundled demo job, writing into Documents/Quantization Studio demo
        (the bundle itself may be read-only, e.g. under /opt)."""
        if self.runner.busy:
            return
        from PySide6.QtCore import QStandardPaths

        from ..core.demo import demo_job

        docs = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation) or str(Path.home())
        try:
            job = demo_job(Path(docs) / f"{APP_NAME} demo")
        except (OSError, StudioError) as exc:
            dialogs.show_error(self, "Cannot open the demo", str(exc))
            return
        self.state.load_job(job, None)
        self.wizard.restart()
        self.pages[PageId.MODEL].open_model(job.model)

    def open_job(self) -> None:
        path = dialogs.open_file(self, "Open job", self.settings.folder("jobs"), "Job files (*.qsjob *.json);;All files (*)")
        if path:
            self.load_job(Path(path))

    def load_job(self, path: Path) -> None:
        if self.runner.busy:
            return
        try:
            job = load_job(path)
        except StudioError as exc:
            dialogs.show_error(self, "Cannot open the job", str(exc))
            return
        self.state.load_job(job, path)
        self.settings.add_recent("jobs", path)
        self.settings.set_folder("jobs", path.parent)
        self.wizard.restart()
        self.pages[PageId.MODEL].open_model(job.model)

    def save_job(self) -> None:
        if self.state.model_path is None:
            dialogs.show_error(self, "Nothing to save yet", "Open a model first.")
            return
        default = self.state.job_file or self.state.model_path.with_suffix(".qsjob")
        path = dialogs.save_file(self, "Save job", str(default), "Job files (*.qsjob *.json)")
        if not path:
            return
        try:
            self.state.job_document().save(path)
        except StudioError as exc:
            dialogs.show_error(self, "Cannot save the job", str(exc))
            return
        self.state.job_file = Path(path)
        self.settings.add_recent("jobs", Path(path))
        self.statusBar().showMessage(f"Saved {path}", 4000)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for p in self.settings.recent("jobs"):
            a = self.recent_menu.addAction(Path(p).name)
            a.setStatusTip(p)
            a.triggered.connect(lambda checked=False, p=p: self.load_job(Path(p)))
        if not self.recent_menu.actions():
            self.recent_menu.addAction("(none)").setEnabled(False)

    def about(self) -> None:
        QMessageBox.about(self, APP_NAME, f"<b>{APP_NAME}</b> {__version__}<br>FP32 ONNX image models to fast, accurate INT8.")

    # ---- closing

    def closeEvent(self, event) -> None:
        if self.runner.busy:
            if not dialogs.ask(self, "Quit?", "A job is running. Cancel it and quit? Nothing of it will be written."):
                event.ignore()
                return
            self.runner.stop(60)
        self.settings.set_value("window/geometry", self.saveGeometry())
        event.accept()
