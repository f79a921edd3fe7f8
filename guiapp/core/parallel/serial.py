"""One item after another in this process: the reference the others must match."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from .base import OnResult


class SerialExecutor:
    workers = 1

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], cancel, on_result: OnResult | None = None) -> list[Any]:
        out = []
        for i, item in enumerate(items):
            cancel.check()
            result = fn(item)
            out.append(result)
            if on_result is not None:
                on_result(i, result)
        return out

    def close(self) -> None:
        pass
