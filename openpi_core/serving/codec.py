"""msgpack with numpy arrays, in the wire format of openpi's `openpi_client.msgpack_numpy`.

An array travels as a map ``{b"__ndarray__": True, b"data": <raw bytes>, b"dtype": <dtype.str>, b"shape": [...]}``
and a numpy scalar as ``{b"__npgeneric__": True, b"data": <python value>, b"dtype": <dtype.str>}``. Only boolean,
integer and floating dtypes are accepted in either direction (object or structured dtypes would let a peer make
us build arbitrary Python objects), and an array's byte count must match its dtype and shape.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

from openpi_core.errors import OpenpiError

__all__ = ["CodecError", "packb", "unpackb"]

_ARRAY = b"__ndarray__"
_SCALAR = b"__npgeneric__"
_KINDS = frozenset("biuf")


class CodecError(OpenpiError, ValueError):
    """A frame that is not valid msgpack, or an array map that does not describe a numeric array."""


def _dtype(value: Any) -> np.dtype:
    try:
        dtype = np.dtype(value.decode() if isinstance(value, bytes) else value)
    except (TypeError, ValueError, UnicodeDecodeError) as e:
        raise CodecError(f"unknown dtype {value!r}") from e
    if dtype.kind not in _KINDS:
        raise CodecError(f"dtype {dtype.str!r} is not allowed (only bool, int, uint and float)")
    return dtype


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic):
        if obj.dtype.kind not in _KINDS:
            raise TypeError(f"cannot send a numpy value of dtype {obj.dtype} (only bool, int, uint and float)")
        if isinstance(obj, np.generic):
            return {_SCALAR: True, b"data": obj.item(), b"dtype": obj.dtype.str}
        return {
            _ARRAY: True,
            b"data": np.ascontiguousarray(obj).tobytes(),
            b"dtype": obj.dtype.str,
            b"shape": list(obj.shape),
        }
    raise TypeError(f"cannot send a {type(obj).__name__}")


def _decode(obj: dict) -> Any:
    if _ARRAY in obj:
        dtype = _dtype(obj.get(b"dtype"))
        data, shape = obj.get(b"data"), obj.get(b"shape")
        if not isinstance(data, bytes):
            raise CodecError("array 'data' must be bytes")
        if not isinstance(shape, list | tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise CodecError(f"array 'shape' must be a list of non-negative ints, got {shape!r}")
        expected = math.prod(shape) * dtype.itemsize
        if len(data) != expected:
            raise CodecError(f"array of shape {list(shape)}, dtype {dtype.str} needs {expected} bytes, got {len(data)}")
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    if _SCALAR in obj:
        dtype = _dtype(obj.get(b"dtype"))
        try:
            return dtype.type(obj.get(b"data"))
        except (TypeError, ValueError, OverflowError) as e:
            raise CodecError(f"bad numpy scalar of dtype {dtype.str}: {e}") from e
    return obj


def packb(obj: Any) -> bytes:
    """Serialise nested dicts/lists of numpy arrays, numbers and strings."""
    return msgpack.packb(obj, default=_encode, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    """Inverse of `packb`; raises `CodecError` for anything that is not a well-formed frame. Arrays are read-only."""
    try:
        return msgpack.unpackb(data, object_hook=_decode, raw=False, strict_map_key=False)
    except CodecError:
        raise
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError) as e:
        raise CodecError(f"not a valid msgpack frame: {e}") from e
