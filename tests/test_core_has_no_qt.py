"""guiapp.core and guiapp.cli never import Qt: the engine runs headless."""

import subprocess
import sys


def test_core_and_cli_import_without_qt():
    code = (
        "import sys, pkgutil, importlib, guiapp.core, guiapp.cli\n"
        "for m in pkgutil.walk_packages(guiapp.core.__path__, 'guiapp.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'pyqtgraph') or m.startswith('guiapp.gui'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"Qt modules imported by core/cli: {out.stdout}"
