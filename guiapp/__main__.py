"""Entry point: ``guiapp`` with a sub-command runs the CLI; with none, the GUI;
with a job file (``.qsjob`` or ``.json``, as a file manager passes it), the GUI
with that job opened."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from .core.job import is_job_file

    argv = sys.argv[1:] if argv is None else argv
    opens_job = len(argv) == 1 and is_job_file(argv[0])
    if not argv or argv == ["--self-test"] or opens_job:
        from .gui.app import run_gui

        return run_gui([sys.argv[0], *argv])
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
