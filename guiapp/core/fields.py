"""Frozen settings dataclasses to and from JSON, derived from their fields.

A document's shape is its dataclass: one key per field, typed by the field's
annotation (bool, int, float, str, Path, tuples of those, ``X | None``,
nested dataclasses, ``dict[str, tuple[float, ...]]``). Values are checked
for their type here and for their meaning by the dataclass's own
``__post_init__``; every error names the field by its whole path
(``job.calibration.max_images``). Keys nobody declared are refused, so a typo
in a job file is reported instead of silently ignored.

A field whose JSON is not its value (a task's options kept by task kind) says
so with ``metadata={"codec": (to_json, from_json)}``; one that a run sets and
a document never holds, with ``metadata={"json": False}``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from .errors import JobError

Rel = Callable[[Path], str]


class Reader:
    """Where values come from: the document path for errors, the folder that
    relative paths resolve against."""

    def __init__(self, prefix: str, base_dir: Path | None = None) -> None:
        self.prefix = prefix
        self.base_dir = base_dir

    def at(self, key: str) -> "Reader":
        return Reader(f"{self.prefix}.{key}", self.base_dir)

    def error(self, problem: str, fix: str = "") -> JobError:
        return JobError(self.prefix, problem, fix)

    def path(self, value: Any) -> Path:
        if not isinstance(value, str) or not value:
            raise self.error(f"expected a path, got {kind_of(value)}")
        p = Path(value).expanduser()
        if not p.is_absolute() and self.base_dir is not None:
            p = self.base_dir / p
        return p


def to_json(obj: Any, rel: Rel = str) -> dict:
    """``obj``'s fields as JSON values (paths through ``rel``)."""
    out = {}
    for f in dataclasses.fields(obj):
        if not f.metadata.get("json", True):
            continue
        value = getattr(obj, f.name)
        codec = f.metadata.get("codec")
        out[f.name] = codec[0](value, rel) if codec else _value_to_json(value, rel)
    return out


def _value_to_json(value: Any, rel: Rel) -> Any:
    if dataclasses.is_dataclass(value):
        return to_json(value, rel)
    if isinstance(value, Path):
        return rel(value)
    if isinstance(value, (tuple, list)):
        return [_value_to_json(v, rel) for v in value]
    if isinstance(value, dict):
        return {str(k): _value_to_json(v, rel) for k, v in value.items()}
    return value


def from_json(cls: type, data: Any, reader: Reader) -> Any:
    """An instance of ``cls`` from ``data`` (a JSON object); missing keys take
    the field's default, null too unless the field admits None."""
    if not isinstance(data, dict):
        raise reader.error(f"expected an object, got {kind_of(data)}")
    hints = _hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init and f.metadata.get("json", True)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise reader.at(unknown[0]).error("unknown setting", "Remove it or check its spelling.")
    values = {}
    for name, f in known.items():
        if name not in data:
            continue
        sub = reader.at(name)
        codec = f.metadata.get("codec")
        raw = data[name]
        if codec:
            values[name] = codec[1](raw, sub)
        elif raw is None:
            if _optional(hints[name]):
                values[name] = None
        else:
            values[name] = read_value(hints[name], raw, sub)
    try:
        return cls(**values)
    except JobError as exc:
        raise JobError(f"{reader.prefix}.{exc.field.rsplit('.', 1)[-1]}", exc.detail, exc.fix) from None


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional(tp: Any) -> bool:
    return type(None) in typing.get_args(tp) and _is_union(tp)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def read_value(tp: Any, raw: Any, reader: Reader) -> Any:
    """One JSON value as the type ``tp``, or a JobError naming it."""
    if _is_union(tp):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if raw is None:
            return None
        return read_value(inner[0], raw, reader)
    if dataclasses.is_dataclass(tp):
        return from_json(tp, raw, reader)
    origin = typing.get_origin(tp)
    if origin is tuple:
        return _read_tuple(typing.get_args(tp), raw, reader)
    if origin is dict:
        if not isinstance(raw, dict):
            raise reader.error(f"expected an object, got {kind_of(raw)}")
        value_type = typing.get_args(tp)[1]
        return {str(k): read_value(value_type, v, reader.at(str(k))) for k, v in raw.items()}
    return _read_scalar(tp, raw, reader)


def _read_tuple(args: tuple, raw: Any, reader: Reader) -> tuple:
    variadic = len(args) == 2 and args[1] is Ellipsis
    if variadic and not isinstance(raw, list):
        raw = [raw]  # one value where a list is expected: a list of one
    if not isinstance(raw, list):
        raise reader.error(f"expected a list, got {kind_of(raw)}")
    if not variadic and len(raw) != len(args):
        raise reader.error(f"expected {len(args)} values, got {kind_of(raw)}")
    types_ = [args[0]] * len(raw) if variadic else list(args)
    try:
        return tuple(read_value(t, v, reader) for t, v in zip(types_, raw))
    except JobError as exc:
        what = {bool: "true/false values", int: "integers", float: "numbers", str: "strings", Path: "paths"}.get(types_[0], "values")
        raise reader.error(f"expected a list of {what}, got {kind_of(raw)}") from exc


def _read_scalar(tp: Any, raw: Any, reader: Reader) -> Any:
    if tp is bool:
        if not isinstance(raw, bool):
            raise reader.error(f"expected true or false, got {kind_of(raw)}")
        return raw
    if tp is int:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or (isinstance(raw, float) and not raw.is_integer()):
            raise reader.error(f"expected an integer, got {kind_of(raw)}")
        return int(raw)
    if tp is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            raise reader.error(f"expected a number, got {kind_of(raw)}")
        return float(raw)
    if tp is str:
        if not isinstance(raw, str):
            raise reader.error(f"expected text, got {kind_of(raw)}")
        return raw
    if tp is Path:
        return reader.path(raw)
    raise TypeError(f"no JSON reading for {tp!r}")  # a settings class with a field type this module does not know


def kind_of(v: Any) -> str:
    """A value as an error message shows it: its type and a short repr."""
    if v is None:
        return "nothing"
    text = repr(v)
    return f"{type(v).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def check_choice(name: str, value: str, choices: typing.Iterable[str], what: str) -> None:
    """A JobError naming ``name`` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise JobError(name, f"unknown {what} {value!r}", f"Choose one of {', '.join(choices)}.")


def check_at_least(name: str, value: int | float, minimum: int | float) -> None:
    if value < minimum:
        raise JobError(name, f"must be at least {minimum}, got {value}")


def check_between(name: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise JobError(name, f"must lie in [{lo}, {hi}], got {value}")
