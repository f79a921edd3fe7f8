"""ONNX Runtime's quantizer, without redoing its per-weight work.

Each run of ``quantize_static`` computes every weight's scales and zero points
channel by channel and then quantizes the weight, in Python loops (MobileNetV2:
about 0.35 s of a 0.7 s run, for 17,000 channels). A search runs the quantizer
once per set of float layers, on the same weights with the same settings, so
that work repeats identically. The functions doing it are pure: their results
depend on their arguments alone (nothing they return is changed in place by
the quantizer, and they change none of their arguments). :func:`install` wraps the names the quantizer calls
them by with a memo keyed by the arguments' contents (arrays and tensors by
digest) that hands out copies. The quantizer stays the one writer, and writes
byte for byte what it writes without the memo (tests/test_weight_memo.py).

An argument of a type not known here (another ONNX Runtime's signature), or a
tensor whose data lives in another file, is passed through uncached.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import threading
from collections import OrderedDict
from typing import Any, Callable, Iterator

import numpy as np
import onnx

WRAPPED = {  # module -> the names it calls the per-weight functions by
    "onnxruntime.quantization.qdq_quantizer": ("compute_data_quant_params", "quantize_onnx_initializer"),  # QDQ
    "onnxruntime.quantization.base_quantizer": ("quantize_data",),  # QOperator
}
MAX_BYTES = 128 * 2**20  # quantized weights and per-channel parameters kept, at most (int8 weights of ~100 M parameters)
_ENTRY_BYTES = 2048  # a per-channel entry's key, tuples and dict slot (about 1.4 KB measured), on top of its arrays

_UNKEYABLE = object()  # a value of a type this module cannot key (or copy)


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _plain(value):
    return type(value).__name__, value  # 1, 1.0 and True stay apart


def _float(value: float):
    return "float", value.hex()  # -0.0 is not 0.0


def _array(value: np.ndarray):
    # The dtype itself: int4 and uint4, or the float8 types, share dtype.str ('<V1')
    if value.dtype.hasobject:
        return _UNKEYABLE  # its bytes are pointers
    return "ndarray", value.dtype, value.shape, value.flags.c_contiguous, _digest(np.ascontiguousarray(value).tobytes())


def _tensor(value: onnx.TensorProto):
    if value.data_location == onnx.TensorProto.EXTERNAL:
        return _UNKEYABLE  # its data is a file's: the proto does not hold it
    return "tensor", _digest(value.SerializeToString(deterministic=True))


_KEYS = {type(None): _plain, bool: _plain, int: _plain, float: _float, str: _plain, bytes: _plain,
         np.ndarray: _array, onnx.TensorProto: _tensor}  # by exact type: called ~18,000 times a run


def _key(value: Any) -> Any:
    """A hashable stand-in for ``value``'s contents, or _UNKEYABLE."""
    leaf = _KEYS.get(type(value))
    if leaf is not None:
        return leaf(value)
    if isinstance(value, np.generic):
        return _UNKEYABLE if value.dtype.hasobject else ("scalar", value.dtype, value.tobytes())
    if isinstance(value, (tuple, list)):
        keys = tuple(_key(v) for v in value)
        return _UNKEYABLE if any(k is _UNKEYABLE for k in keys) else (type(value).__name__, keys)
    return _UNKEYABLE  # subclasses too (an IntEnum is not its int)


def _call_key(fn: Callable, args: tuple, kwargs: dict) -> Any:
    parts = [fn.__name__]
    for value in args:
        parts.append(_key(value))
    for name in sorted(kwargs):
        parts.append(name)
        parts.append(_key(kwargs[name]))
    return _UNKEYABLE if any(k is _UNKEYABLE for k in parts) else tuple(parts)


def _copy(value: Any) -> Any:
    """A copy through which the memo cannot be changed, or _UNKEYABLE for a
    type not known here (then the result is not kept)."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, onnx.TensorProto):
        out = onnx.TensorProto()
        out.CopyFrom(value)
        return out
    if isinstance(value, (tuple, list)):
        items = [_copy(v) for v in value]
        return _UNKEYABLE if any(i is _UNKEYABLE for i in items) else type(value)(items)
    if value is None or isinstance(value, (np.generic, bool, int, float, str, bytes)):
        return value  # immutable
    return _UNKEYABLE


def _size(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, onnx.TensorProto):
        return value.ByteSize()
    if isinstance(value, (tuple, list)):
        return sum(_size(v) for v in value)
    return 16


class WeightMemo:
    """Results by the contents of their arguments, least recently used out first."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._off = threading.local()  # disabled() in this thread
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._bytes

    def call(self, fn: Callable, args: tuple, kwargs: dict) -> Any:
        key = _UNKEYABLE if getattr(self._off, "depth", 0) else _call_key(fn, args, kwargs)
        if key is _UNKEYABLE:
            return fn(*args, **kwargs)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                self.hits += 1
        if hit is not None:
            return _copy(hit[0])
        value = fn(*args, **kwargs)
        with self._lock:
            self.misses += 1
        kept = _copy(value)
        if kept is not _UNKEYABLE:
            self._store(key, kept)
        return value

    def _store(self, key: Any, value: Any) -> None:
        size = _size(value) + _ENTRY_BYTES
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._entries[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self.hits = self.misses = 0

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """The quantizer as it is, for a comparison (in this thread; nests)."""
        self._off.depth = getattr(self._off, "depth", 0) + 1
        try:
            yield
        finally:
            self._off.depth -= 1


MEMO = WeightMemo()


def install() -> None:
    """Wrap the quantizer's per-weight functions with :data:`MEMO` (once; a
    module or name this ONNX Runtime lacks is left alone)."""
    for module_name, names in WRAPPED.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name in names:
            fn = getattr(module, name, None)
            if fn is None or getattr(fn, "__guiapp_memo__", False):
                continue
            setattr(module, name, _wrapped(fn))


def _wrapped(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def remembered(*args, **kwargs):
        return MEMO.call(fn, args, kwargs)

    remembered.__guiapp_memo__ = True
    return remembered
