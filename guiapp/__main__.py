"""Entry point: ``guiapp`` with a sub-command runs the CLI; with none, the GUI."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        try:
            from .gui.app import run_gui
        except ImportError:
            run_gui = None
        if run_gui is not None:
            return run_gui()
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
