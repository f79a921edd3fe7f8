"""What every command shares: exit codes and Ctrl-C.

Exit codes: 0 success; 2 bad input or usage (one line naming the problem and
the fix); 1 internal error; 130 cancelled (Ctrl-C), with nothing written;
3 (check-norm only) a clearly better preprocessing exists.
"""

from __future__ import annotations

import signal
import sys

from ..core.progress import CancelToken

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_BETTER, EXIT_CANCELLED = 0, 1, 2, 3, 130


class SigintCancels:
    """First Ctrl-C: cancel at the next batch. Second: stop at once."""

    def __enter__(self) -> CancelToken:
        self.token = CancelToken()
        self.previous = None
        try:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread
            pass
        return self.token

    def _handle(self, signum, frame) -> None:
        if self.token.cancelled:
            raise KeyboardInterrupt
        self.token.cancel()
        print("\ncancelling (Ctrl-C again to stop at once)...", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
