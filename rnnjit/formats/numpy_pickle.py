"""numpy arrays in plain pickles (``pickle.dump({"w": np_array, ...})``), rebuilt without numpy's reconstructors.

A pickled ndarray is ``numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b"b")``
followed by a BUILD of ``(version, shape, dtype, is_fortran, raw_bytes)``; its
dtype is ``numpy.dtype("f4", False, True)`` plus a BUILD of
``(3, "<", None, None, None, -1, -1, 0)``; protocol 5 writes
``numpy.core.numeric._frombuffer(bytearray, dtype, shape, order)``; a numpy
scalar is ``numpy.core.multiarray.scalar(dtype, raw_bytes)``. numpy >= 2 spells
the module ``numpy._core``; both spellings are allowed.

Why not call numpy's own functions with the file's arguments: ``ndarray.__setstate__``
accepts object arrays (the elements are then whatever the pickle built) and
``dtype.__setstate__`` accepts fields, sub-arrays and metadata objects. The
stand-ins here accept only plain numbers: a dtype is one of `CODES` with a
byte order, an array is shape + dtype + exactly ``prod(shape) * itemsize``
bytes, and the array is built fresh by ``np.frombuffer(...).copy()``. Each
stand-in takes its state once; nothing else can be set on it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rnnjit.errors import WeightFileError

# numpy type codes a weight can have; no objects, strings, structured or datetime types.
CODES = ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1", "c8", "c16")
_ALIASES = {"?": "b1", "b": "i1", "B": "u1"}
MAX_DIMS = 32


def _bad(what: str) -> WeightFileError:
    return WeightFileError(f"a pickled numpy {what} (corrupt or hostile file?)")


class NumpyDType:
    """Stand-in for ``numpy.dtype(code, align, copy)``: a plain numeric dtype, byte order set by its state."""

    __slots__ = ("code", "order", "_set")

    def __init__(self, code: Any, align: Any = False, copy: Any = False) -> None:
        code = _ALIASES.get(code, code) if isinstance(code, str) else code
        if not isinstance(code, str) or code.lstrip("<>|=") not in CODES:
            raise _bad(f"dtype is {code!r:.40}; expected a plain number type ({', '.join(CODES)})")
        self.code = code.lstrip("<>|=")
        self.order = code[0] if code[0] in "<>" else "<"
        self._set = False

    def __setstate__(self, state: Any) -> None:
        # (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
        if self._set or not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
            raise _bad(f"dtype state {state!r:.80}; expected numpy's (3, '<', None, None, None, -1, -1, 0)")
        if state[1] not in ("<", ">", "|", "=") or any(s is not None for s in state[2:5]):
            raise _bad(f"dtype state {state!r:.80}; expected a plain number type without fields")
        if len(state) == 9 and state[8] is not None:
            raise _bad("dtype with metadata; expected a plain number type")
        self.order = {"|": "<", "=": "<"}.get(state[1], state[1])
        self._set = True

    def dtype(self) -> np.dtype:
        return np.dtype(self.order + self.code if np.dtype(self.code).itemsize > 1 else self.code)


class NumpyArray:
    """Stand-in for a pickled ndarray: the validated array once its state arrived."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if self.array is not None or not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _bad(f"array state {state!r:.80}; expected (version, shape, dtype, is_fortran, bytes)")
        shape, dtype, fortran, raw = state[-4:]
        self.array = _build(raw, dtype, shape, "F" if fortran is True else "C" if fortran is False else None)

    @property
    def ndim(self) -> int:
        return self.value().ndim

    @property
    def out_nbytes(self) -> int:
        return self.value().nbytes

    def value(self) -> np.ndarray:
        if self.array is None:
            raise _bad("array without its data; expected the state numpy pickles after _reconstruct")
        return self.array


def _build(raw: Any, dtype: Any, shape: Any, order: str | None) -> np.ndarray:
    if not isinstance(dtype, NumpyDType):
        raise _bad(f"array of dtype {type(dtype).__name__}; expected a numpy.dtype")
    if order is None:
        raise _bad("array order; expected is_fortran True or False")
    if (
        not isinstance(shape, tuple)
        or len(shape) > MAX_DIMS
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
    ):
        raise _bad(f"array shape {shape!r:.80}; expected a tuple of at most {MAX_DIMS} non-negative integers")
    if not isinstance(raw, (bytes, bytearray)):
        raise _bad(f"array data of type {type(raw).__name__}; expected bytes (an object array?)")
    dt = dtype.dtype()
    if len(raw) != math.prod(shape) * dt.itemsize:
        raise _bad(f"array of shape {shape} and dtype {dt} with {len(raw)} bytes of data; expected {math.prod(shape) * dt.itemsize}")
    flat = np.frombuffer(raw, dtype=dt)
    return flat.reshape(shape, order=order).astype(dt.newbyteorder("="), order="C", copy=True)


class NdarrayClass:
    """Stand-in for the ``numpy.ndarray`` class: only ever an argument of ``_reconstruct``; holds nothing."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise _bad("ndarray class given a state")


NDARRAY = NdarrayClass()


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> NumpyArray:
    if cls is not NDARRAY:
        raise _bad(f"_reconstruct of {type(cls).__name__}; expected numpy.ndarray")
    return NumpyArray()


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> NumpyArray:
    arr = NumpyArray()
    arr.array = _build(buf, dtype, shape, {"C": "C", "F": "F"}.get(order) if isinstance(order, str) else None)
    return arr


def _scalar(dtype: Any, raw: Any = None) -> Any:
    if not isinstance(dtype, NumpyDType) or not isinstance(raw, bytes):
        raise _bad(f"scalar of {type(dtype).__name__} and {type(raw).__name__}; expected a numpy.dtype and bytes")
    return _build(raw, dtype, (), "C")[()]  # a fresh numpy scalar; BUILD on it is refused by numpy


def _dtype(code: Any, align: Any = False, copy: Any = False) -> NumpyDType:
    return NumpyDType(code, align, copy)


def globals_table() -> dict[str, Any]:
    """``module.name`` -> stand-in factory, for both the ``numpy.core`` and ``numpy._core`` spellings."""
    table: dict[str, Any] = {"numpy.ndarray": NDARRAY, "numpy.dtype": _dtype}
    for core in ("numpy.core", "numpy._core"):
        table[f"{core}.multiarray._reconstruct"] = _reconstruct
        table[f"{core}.multiarray.scalar"] = _scalar
        table[f"{core}.numeric._frombuffer"] = _frombuffer
    return table
