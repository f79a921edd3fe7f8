"""Where RKNN-Toolkit2 lives: a Python of its own (scripts/rknn-env makes one),
found from the job, $GUIAPP_RKNN_PYTHON or the default place, and checked by
asking the worker script (the toolkit's version, without importing it)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path


TOOLKIT_VERSION = "2.5.0"  # the version scripts/rknn-env installs and this module was checked with
DEFAULT_ENV = Path.home() / ".cache" / "guiapp" / "rknn-env"
WORKER = Path(__file__).with_name("rknn_worker.py")
INSTALL = "Create one with scripts/rknn-env (Linux x86_64 or aarch64, Python 3.8-3.12, about 2 minutes and 5.6 GB)"


def find_python(options) -> Path | None:
    """The Python to run the worker with: the job's, $GUIAPP_RKNN_PYTHON, or
    the environment scripts/rknn-env makes by default."""
    for candidate in (options.python if options is not None else None, os.environ.get("GUIAPP_RKNN_PYTHON"), DEFAULT_ENV / "bin" / "python"):
        if candidate:
            return Path(candidate).expanduser()
    return None


_probed: dict[str, dict] = {}


def probe(python: Path, timeout_s: float = 60.0) -> dict:
    """What the worker's Python reports (its version, the toolkit's); cached."""
    key = str(python)
    if key in _probed:
        return _probed[key]
    try:
        out = subprocess.run(
            [str(python), str(WORKER)], input=b'{"probe": true}', capture_output=True, timeout=timeout_s,
            cwd=tempfile.gettempdir(),
        )
        lines = [json.loads(line) for line in out.stdout.decode("utf-8", "replace").splitlines() if line.startswith("{")]
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        return {"error": str(exc)}
    result = next((m["result"] for m in lines if "result" in m), None)
    if result is None:
        return {"error": out.stderr.decode("utf-8", "replace")[-300:] or f"exit code {out.returncode}"}
    if result.get("rknn_toolkit2"):
        _probed[key] = result  # only a usable answer is kept: the user may install it meanwhile
    return result


def availability(options) -> str:
    """'' when a Python with RKNN-Toolkit2 2.x is at hand, else what to do."""
    if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64", "aarch64", "arm64"):
        return f"RKNN-Toolkit2 runs on Linux x86_64 and aarch64 only (this is {platform.system()} {platform.machine()})."
    python = find_python(options)
    if python is None or not python.is_file():
        where = f" (looked for {python})" if python else ""
        return f"No Python with RKNN-Toolkit2 found{where}. {INSTALL}, then give its Python (--rknn-python, or the field on the Calibration page)."
    info = probe(python)
    if "error" in info:
        return f"{python} does not run: {info['error'].strip()[:200]}. {INSTALL}."
    if not info.get("rknn_toolkit2"):
        return f"{python} (Python {info.get('python')}) has no rknn-toolkit2. {INSTALL}, or pip install rknn-toolkit2=={TOOLKIT_VERSION} into it."
    if not str(info["rknn_toolkit2"]).startswith("2."):
        return f"{python} has rknn-toolkit2 {info['rknn_toolkit2']}; this app drives 2.x (checked with {TOOLKIT_VERSION})."
    return ""


def found(options) -> str:
    python = find_python(options)
    info = probe(python) if python is not None and python.is_file() else {}
    if not info.get("rknn_toolkit2"):
        return ""
    return f"RKNN-Toolkit2 {info['rknn_toolkit2']} with Python {info.get('python')} at {python}"
