"""What a session is fed: the image batch, plus constants the user set for a
model's other inputs (an image size, a scale factor, a threshold)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import JobError, ModelError
from .modelinfo import ModelInfo
from .tensors import TensorInfo


@dataclass(frozen=True)
class Constant:
    name: str
    value: np.ndarray  # with a leading batch axis of 1 when ``batched``
    batched: bool  # the model's first dimension is dynamic: repeat per image


@dataclass(frozen=True)
class Feeds:
    image: str
    constants: tuple[Constant, ...] = ()

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        feed = {self.image: batch}
        for c in self.constants:
            feed[c.name] = np.repeat(c.value, batch.shape[0], axis=0) if c.batched else c.value
        return feed


def input_hint(t: TensorInfo) -> str:
    """How to give a value for ``t``, in words."""
    n = _fixed_size(t)
    many = f" or all {n} values" if n and n > 1 else ""
    return f"{t.name} {t.shape_text} {t.dtype}: one number fills it{many} (--input-value {t.name}=VALUE)"


def make_feeds(info: ModelInfo, values: dict[str, tuple[float, ...]]) -> Feeds:
    """Feeds for ``info``'s image input and its other inputs, from the values
    the user set. A JobError names each input still missing or mis-shaped."""
    if info.image_input is None:
        raise ModelError(info.blockers[0] if info.blockers else "the model has no image input.")
    known = {t.name for t in info.extra_inputs}
    for name in values:
        if name not in known:
            raise JobError(f"inputs.{name}", "the model has no such input besides the image",
                           f"Its other inputs: {', '.join(sorted(known)) or 'none'}.")
    missing = [t for t in info.extra_inputs if t.name not in values]
    if missing:
        raise ModelError(
            "besides the image, the model needs " + "; ".join(input_hint(t) for t in missing) + ".",
            "Set a value for each (on the Model page, or with --input-value).",
        )
    return Feeds(info.image_input.name, tuple(_constant(t, values[t.name]) for t in info.extra_inputs))


def _fixed_size(t: TensorInfo) -> int | None:
    if t.shape is None:
        return None
    dims = list(t.shape)
    if dims and not isinstance(dims[0], int):
        dims = dims[1:]
    return math.prod(dims) if all(isinstance(d, int) for d in dims) else None


def _constant(t: TensorInfo, values: tuple[float, ...]) -> Constant:
    field = f"inputs.{t.name}"
    if t.shape is None:
        raise JobError(field, f"the model does not declare the shape of {t.name}", "A constant needs a known shape.")
    dims = list(t.shape)
    batched = bool(dims) and not isinstance(dims[0], int)
    inner = dims[1:] if batched else dims
    if not all(isinstance(d, int) for d in inner):
        raise JobError(field, f"{t.name} {t.shape_text} has dynamic dimensions besides the batch", "A constant needs a fixed shape.")
    size = math.prod(inner)
    if len(values) not in (1, size):
        raise JobError(field, f"{len(values)} values for {t.name} {t.shape_text}", f"Give 1 value (fills it) or {size}.")
    try:
        dtype = np.dtype(t.dtype)
    except TypeError:
        raise JobError(field, f"{t.name} has type {t.dtype}, which cannot be set as a constant") from None
    array = np.full(inner, values[0], dtype=dtype) if len(values) == 1 else np.asarray(values, dtype=dtype).reshape(inner)
    return Constant(t.name, array[None] if batched else array, batched)
