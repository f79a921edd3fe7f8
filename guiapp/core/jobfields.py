"""Typed reading of one JSON object, naming the field in every error."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from .errors import JobError

_MISSING = object()


class Fields:
    """Reads typed values out of ``data`` (a dict loaded from JSON).

    Every getter takes the key and a default (``required=True`` makes a missing
    key an error); :meth:`finish` rejects keys nobody asked for, so a typo in a
    job file is reported instead of silently ignored.
    """

    def __init__(self, data: Any, prefix: str, base_dir: Path | None = None) -> None:
        if not isinstance(data, dict):
            raise JobError(prefix, f"expected an object, got {_kind(data)}")
        self.data = data
        self.prefix = prefix
        self.base_dir = base_dir
        self._seen: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.prefix}.{key}"

    def _get(self, key: str, required: bool = False) -> Any:
        """The raw value, or _MISSING when absent or null."""
        self._seen.add(key)
        if key in self.data and self.data[key] is not None:
            return self.data[key]
        if required:
            raise JobError(self.name(key), "is missing", "Add it to the job.")
        return _MISSING

    def raw(self, key: str, default: Any = None) -> Any:
        v = self._get(key)
        return default if v is _MISSING else v

    def sub(self, key: str) -> "Fields":
        v = self._get(key)
        return Fields({} if v is _MISSING else v, self.name(key), self.base_dir)

    def int(self, key: str, default: Any = None, minimum: int | None = None, required: bool = False):
        v = self._get(key, required)
        if v is _MISSING:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
            raise JobError(self.name(key), f"expected an integer, got {_kind(v)}")
        v = int(v)
        if minimum is not None and v < minimum:
            raise JobError(self.name(key), f"must be at least {minimum}, got {v}")
        return v

    def float(self, key: str, default: Any = None, lo: float | None = None, hi: float | None = None):
        v = self._get(key)
        if v is _MISSING:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise JobError(self.name(key), f"expected a number, got {_kind(v)}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise JobError(self.name(key), f"must lie in [{lo}, {hi}], got {v}")
        return float(v)

    def bool(self, key: str, default: bool) -> bool:
        v = self._get(key)
        if v is _MISSING:
            return default
        if not isinstance(v, bool):
            raise JobError(self.name(key), f"expected true or false, got {_kind(v)}")
        return v

    def choice(self, key: str, default: str, choices: Sequence[str]) -> str:
        v = self._get(key)
        if v is _MISSING:
            return default
        if not isinstance(v, str) or v not in choices:
            raise JobError(self.name(key), f"expected one of {', '.join(choices)}, got {_kind(v)}")
        return v

    def numbers(self, key: str, default: Any) -> tuple[float, ...]:
        v = self._get(key)
        if v is _MISSING:
            return default
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = [v]
        if not isinstance(v, (list, tuple)) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v
        ):
            raise JobError(self.name(key), f"expected a list of numbers, got {_kind(v)}")
        return tuple(float(x) for x in v)

    def strings(self, key: str) -> tuple[str, ...]:
        v = self._get(key)
        if v is _MISSING:
            return ()
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
            raise JobError(self.name(key), f"expected a list of strings, got {_kind(v)}")
        return tuple(v)

    def path(self, key: str, required: bool = False) -> Path | None:
        v = self._get(key, required)
        if v is _MISSING:
            return None
        if not isinstance(v, str) or not v:
            raise JobError(self.name(key), f"expected a path, got {_kind(v)}")
        return self._resolve(v)

    def paths(self, key: str) -> tuple[Path, ...]:
        return tuple(self._resolve(s) for s in self.strings(key))

    def _resolve(self, s: str) -> Path:
        p = Path(s).expanduser()
        if not p.is_absolute() and self.base_dir is not None:
            p = self.base_dir / p
        return p

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self._seen)
        if unknown:
            raise JobError(self.name(unknown[0]), "unknown setting", "Remove it or check its spelling.")


def _kind(v: Any) -> str:
    if v is None:
        return "nothing"
    text = repr(v)
    return f"{type(v).__name__} {text if len(text) <= 40 else text[:37] + '...'}"
