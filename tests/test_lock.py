"""The bundle's lock file, the app's ranges and the versions the documents
name stay in agreement (packaging/requirements.lock is what ships)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "packaging" / "requirements.lock"

sys.path.insert(0, str(ROOT / "packaging"))
from shipped import listed_in  # noqa: E402

# How the documents name a locked package, followed by its version.
NAMED_AS = {
    "onnxruntime": r"ONNX Runtime",
    "pyside6-essentials": r"PySide6(?:-Essentials)?|Qt",
    "pyinstaller": r"PyInstaller|pyinstaller==",
    "numpy": r"numpy|NumPy",
    "pillow": r"Pillow",
    "pyqtgraph": r"pyqtgraph",
}
DOCUMENTS = ("README.md", "packaging/README.md")


def locked(text: str) -> dict[str, list[tuple[str, Requirement]]]:
    """{name: [(version, requirement)]} from a requirements file with hashes."""
    out: dict[str, list[tuple[str, Requirement]]] = {}
    logical = re.sub(r"\\\n", " ", text)
    for line in logical.splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        spec = re.sub(r"\s--hash=\S+", "", line).strip()
        req = Requirement(spec)
        (version,) = [s.version for s in req.specifier if s.operator == "=="]
        assert "--hash=sha256:" in line, f"{req.name} has no hash"
        out.setdefault(canonicalize_name(req.name), []).append((version, req))
    return out


def for_this_python(pins: dict) -> dict[str, str]:
    """The version each package gets here (Linux, Python 3.11: the bundle's)."""
    env = {"python_version": "3.11", "python_full_version": "3.11.7", "sys_platform": "linux", "platform_system": "Linux"}
    out = {}
    for name, options in pins.items():
        chosen = [v for v, r in options if r.marker is None or r.marker.evaluate(env)]
        assert len(chosen) <= 1, (name, chosen)
        if chosen:
            out[name] = chosen[0]
    return out


@pytest.fixture(scope="module")
def pins() -> dict[str, str]:
    return for_this_python(locked(LOCK.read_text()))


def test_every_pin_is_exact_and_hashed():
    entries = locked(LOCK.read_text())
    assert {"onnxruntime", "pyside6-essentials", "pyinstaller", "numpy"} <= set(entries)


def test_the_lock_satisfies_pyproject_and_requirements_in(pins):
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"]]
    for line in (ROOT / "packaging" / "requirements.in").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            wanted.append(line.strip())
    for spec in wanted:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} is not in the lock: run packaging/lock.sh"
        assert req.specifier.contains(pins[name], prereleases=True), f"lock has {name} {pins[name]}, wanted {spec}: run packaging/lock.sh"


def stale_mentions(text: str, pins: dict[str, str]) -> list[str]:
    """Mentions like "ONNX Runtime 1.31" whose version is not the locked one."""
    stale = []
    for name, alias in NAMED_AS.items():
        for m in re.finditer(rf"(?:{alias})\s?v?(\d+\.\d+(?:\.\d+)?)\b", text):
            if not (pins[name] == m.group(1) or pins[name].startswith(m.group(1) + ".")):
                stale.append(f"{m.group(0)!r} (the lock has {name} {pins[name]})")
    return stale


@pytest.mark.parametrize("document", DOCUMENTS)
def test_versions_named_in_the_documents_are_the_locked_ones(document, pins):
    assert stale_mentions((ROOT / document).read_text(), pins) == []


def test_a_stale_or_wrong_version_is_caught():
    pins = {name: "1.32.0" for name in NAMED_AS}
    text = "ONNX Runtime 1.31 sends telemetry; built with pyinstaller==1.32.0 and PySide6 1.3; Qt 1.32 and NumPy 1.32.0."
    assert [s.split("'")[1] for s in stale_mentions(text, pins)] == ["ONNX Runtime 1.31", "PySide6 1.3"]


def test_third_party_md_lists_the_locked_versions(pins):
    rows = listed_in(ROOT / "packaging" / "THIRD_PARTY.md")
    python_rows = {name: version for name, version in rows.items() if name in pins}
    assert {"onnxruntime", "pyside6-essentials", "shiboken6", "numpy", "pillow", "pyinstaller"} <= set(python_rows)
    for name, version in python_rows.items():
        assert version == pins[name], f"THIRD_PARTY.md lists {name} {version}; the lock has {pins[name]}"
