"""Entry point of the frozen app: `guiapp` (CLI with a sub-command, the wizard
without one); the windowed `quantization-studio` executable runs the same."""

import sys

from guiapp.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
