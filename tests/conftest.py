from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from builders import convnet, image_folder

# Qt tests run without a display; set before anything imports Qt.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("GUIAPP_ASSETS", ROOT.parent / "shared" / "assets"))


def pytest_collection_modifyitems(config, items):
    if (ASSETS / "models").is_dir():
        return
    skip = pytest.mark.skip(reason=f"real assets not found at {ASSETS} (set GUIAPP_ASSETS)")
    for item in items:
        if "realmodels" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def assets() -> Path:
    return ASSETS


@pytest.fixture
def model_path(tmp_path) -> Path:
    p = tmp_path / "net.onnx"
    convnet(p, metadata={"classes": "a,b,c,d", "note": "kept"})
    return p


@pytest.fixture
def calib_dir(tmp_path) -> Path:
    d = tmp_path / "calib"
    image_folder(d, 24, seed=1)
    return d


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
