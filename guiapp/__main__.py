"""Entry point: ``guiapp`` with a sub-command runs the CLI; with none, the GUI."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv == ["--self-test"]:
        from .gui.app import run_gui

        return run_gui([sys.argv[0], *argv])
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
