"""The shapes a model declares: tensors, and the input that takes images."""

from __future__ import annotations

import re
from dataclasses import dataclass

import onnx

Dim = int | str | None  # fixed size, symbolic name, or unknown
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,31}$")


def dim_text(d: Dim) -> str:
    """A dimension as a person reads it: a size, a short symbolic name, or "?"
    (unknown, or an exporter's expression such as ``floor(height/2 - 1/2) + 1``)."""
    if isinstance(d, int):
        return str(d)
    if isinstance(d, str) and _NAME.match(d):
        return d
    return "?"


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[Dim, ...] | None  # None: rank unknown
    dtype: str  # numpy-style name: float32, float16, int64, ...

    @property
    def shape_text(self) -> str:
        if self.shape is None:
            return "?"
        return "[" + ", ".join(dim_text(d) for d in self.shape) + "]"


@dataclass(frozen=True)
class ImageInput:
    """The model input that takes images, and how."""

    name: str
    layout: str  # "nchw" or "nhwc"
    channels: int
    height: Dim
    width: Dim
    batch: Dim

    @property
    def dynamic_axes(self) -> tuple[str, ...]:
        """Which of batch, height and width are not fixed."""
        return tuple(n for n, d in (("batch", self.batch), ("height", self.height), ("width", self.width)) if not isinstance(d, int))

    @property
    def size(self) -> tuple[int, int] | None:
        """(height, width) when both are fixed."""
        if isinstance(self.height, int) and isinstance(self.width, int):
            return (self.height, self.width)
        return None

    @property
    def fixed_batch(self) -> int | None:
        return self.batch if isinstance(self.batch, int) else None


def dtype_name(elem_type: int) -> str:
    if elem_type == onnx.TensorProto.UNDEFINED:
        return "undefined"
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    except (KeyError, TypeError, ValueError):
        pass
    try:
        return onnx.TensorProto.DataType.Name(elem_type).lower()
    except ValueError:  # not a defined type at all (a damaged file)
        return f"unknown type {elem_type}"


def tensor_info(vi: onnx.ValueInfoProto) -> TensorInfo:
    t = vi.type.tensor_type
    shape: tuple[Dim, ...] | None = None
    if t.HasField("shape"):
        dims: list[Dim] = []
        for d in t.shape.dim:
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param") and d.dim_param:
                dims.append(d.dim_param)
            else:  # unknown, or a non-positive size (PaddlePaddle writes -1 for dynamic)
                dims.append(None)
        shape = tuple(dims)
    return TensorInfo(vi.name, shape, dtype_name(t.elem_type))
