"""The images the Preprocessing page previews on: open one or a folder,
step through them (Alt+Left/Right), each decoded off the GUI thread."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QWidget

from ..core.data.dataset import list_images
from ..core.data.imagefile import IMAGE_EXTENSIONS, open_rgb
from . import dialogs
from .widgets import button, sentence

IMAGE_FILTER = "Images (" + " ".join("*" + e for e in sorted(IMAGE_EXTENSIONS)) + ");;All files (*)"


class ImageBrowser(QWidget):
    """A row: previous, next, what is shown, open image, open folder.
    ``decoded`` carries the current image (PIL, RGB) once decoded;
    ``folder_chosen`` a folder the user picked."""

    decoded = Signal(object)
    folder_chosen = Signal(object)

    def __init__(self, runner, settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner, self.settings = runner, settings
        self.images: list[Path] = []
        self.index = 0
        self.image = None  # the decoded current image (PIL, RGB)
        self.prev_button = button("◀", "Previous image (Alt+Left)", lambda: self.step(-1), "Alt+Left")
        self.next_button = button("▶", "Next image (Alt+Right)", lambda: self.step(1), "Alt+Right")
        for b in (self.prev_button, self.next_button):
            b.setFixedWidth(36)
        self.label = QLabel("No image yet: open one, or a folder of them.")
        nav = QHBoxLayout(self)
        nav.setContentsMargins(0, 0, 0, 0)
        nav.addWidget(self.prev_button)
        nav.addWidget(self.next_button)
        nav.addWidget(self.label, 1)
        nav.addWidget(button("Open &image…", "Preview on any image file", self.choose_image))
        nav.addWidget(button("Ima&ge folder…", "Preview on the images of a folder (it also becomes the calibration "
                                               "folder when none is set)", self.choose_folder))

    def choose_image(self) -> None:
        path = dialogs.open_file(self, "Preview image", self.settings.folder("images"), IMAGE_FILTER)
        if path:
            self.images, self.index = [Path(path)], 0
            self.settings.set_folder("images", Path(path).parent)
            self.load_current()

    def choose_folder(self) -> None:
        folder = dialogs.open_folder(self, "Folder of images", self.settings.folder("images"))
        if folder:
            self.settings.set_folder("images", Path(folder))
            self.folder_chosen.emit(Path(folder))
            self.use_folder(Path(folder))

    def use_folder(self, folder: Path) -> None:
        self.label.setText(f"Listing {folder} …")
        self.runner.start(lambda p, c: list_images([folder], "preview"), self._listed, self._list_failed, light=True)

    def _listed(self, files: list[Path]) -> None:
        self.images, self.index = files, 0
        self.load_current()

    def _list_failed(self, exc) -> None:
        self.label.setText(sentence(dialogs.error_text(exc)))

    def step(self, delta: int) -> None:
        if self.images:
            self.index = (self.index + delta) % len(self.images)
            self.load_current()

    def load_current(self) -> None:
        path = self.images[self.index]
        self.label.setText(f"Image {self.index + 1} of {len(self.images)}: {path.name} (decoding…)")
        self.runner.start(lambda p, c: open_rgb(path), lambda img: self._decoded(path, img), self._decode_failed, light=True)

    def _decoded(self, path: Path, img) -> None:
        self.image = img
        self.label.setText(f"Image {self.index + 1} of {len(self.images)}: {path.name}")
        self.label.setToolTip(str(path))
        self.decoded.emit(img)

    def _decode_failed(self, exc) -> None:
        self.image = None
        self.label.setText(f"Image {self.index + 1} of {len(self.images)}: {exc}")
