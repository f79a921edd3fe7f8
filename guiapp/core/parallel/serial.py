"""One item after another in this process: the reference the others must match."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ..errors import Cancelled
from .base import Failed, OnResult


class SerialExecutor:
    workers = 1

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], cancel, on_result: OnResult | None = None,
            catch: bool = False) -> list[Any]:
        out = []
        for i, item in enumerate(items):
            cancel.check()
            try:
                result = fn(item)
            except Cancelled:
                raise
            except Exception as exc:  # noqa: BLE001 - with catch, the item's failure
                if not catch:
                    raise
                result = Failed(str(exc), exc)
            out.append(result)
            if on_result is not None:
                on_result(i, result)
        return out

    def close(self) -> None:
        pass
