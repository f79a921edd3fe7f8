"""Command line: the same engine as the wizard, over argparse.

``guiapp COMMAND ...``: commands.py runs each command, parser.py holds the
flags, flags.py turns them into the core's settings, exits.py the exit codes
and Ctrl-C, normcheck.py the ``check-norm`` command, terminal.py the
progress bar.
"""

from __future__ import annotations

from .commands import main
from .flags import job_from_args
from .parser import build_parser

__all__ = ["build_parser", "job_from_args", "main"]
