"""``.npz`` archives of arrays (``np.savez``), including rnnjit bundles.

Members are read here rather than through ``np.load``: each ``.npy`` header is
parsed first and the size it claims is checked against the member's bytes
before anything is allocated (``np.load`` of a zip member allocates the
claimed shape up front). An object array is an error, never unpickled.
Arrays that are not numbers (strings, such as a bundle's ``__rnnjit__`` JSON)
are skipped and reported by `read`.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy

from rnnjit.errors import WeightFileError
from rnnjit.formats.guard import guarded
from rnnjit.formats.limits import check_zip_member
from rnnjit.memory import MemoryBudget

BUNDLE_KEY = "__rnnjit__"
NUMERIC_KINDS = "fiucb"
MAX_HEADER_BYTES = 10_000  # numpy's own default for np.load
READ_CHUNK = 16 << 20
_HEADER_READERS = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}


def is_npz(zf: zipfile.ZipFile) -> bool:
    names = zf.namelist()
    return bool(names) and all(n.endswith(".npy") for n in names)


class _Prefixed:
    """A file-like that first returns ``head``, then reads on from ``f`` (what the npy header reader needs)."""

    def __init__(self, head: bytes, f) -> None:
        self._head, self._f = head, f

    def read(self, n: int = -1) -> bytes:
        if not self._head:
            return self._f.read(n)
        if n < 0:
            out, self._head = self._head + self._f.read(), b""
            return out
        out, self._head = self._head[:n], self._head[n:]
        return out + (self._f.read(n - len(out)) if len(out) < n else b"")


def _read_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, file_size: int, source: str, budget: MemoryBudget
) -> np.ndarray:
    with zf.open(info) as f:
        version = npy.read_magic(f)
        if version not in _HEADER_READERS:
            raise WeightFileError(f"{source}: array {key!r} is in .npy format {version}; expected 1.0 or 2.0 (np.savez)")
        # The header's length field, checked here: numpy < 1.24 has no max_header_size.
        # The zip member stream cannot seek back, so the reader gets the bytes again.
        width = 2 if version == (1, 0) else 4
        raw_len = f.read(width)
        if len(raw_len) != width:
            raise WeightFileError(f"{source}: array {key!r} ends inside its .npy header (truncated file?)")
        header_len = int.from_bytes(raw_len, "little")
        if header_len > MAX_HEADER_BYTES:
            raise WeightFileError(
                f"{source}: array {key!r} has a .npy header of {header_len} bytes; expected at most "
                f"{MAX_HEADER_BYTES} (corrupt or hostile file?)"
            )
        shape, fortran, dtype = _HEADER_READERS[version](_Prefixed(raw_len, f))
        if dtype.hasobject:
            raise WeightFileError(
                f"{source}: array {key!r} is an object array; expected numeric arrays only, "
                "save plain arrays, e.g. np.savez(path, w=np.asarray(w, dtype=np.float32))"
            )
        nbytes = math.prod(shape) * dtype.itemsize
        check_zip_member(info, f.tell() + nbytes, file_size, source, f"array {key!r}", budget)
        buf = bytearray(nbytes)  # writeable: numba kernels take no read-only arrays
        got, view = 0, memoryview(buf)
        while got < nbytes:  # in chunks: a zip member's readinto reads the whole request into a second buffer
            n = f.readinto(view[got : got + READ_CHUNK])
            if not n:
                break
            got += n
        if got != nbytes:
            raise WeightFileError(f"{source}: array {key!r} ends after {got} of {nbytes} bytes; save it again")
    if fortran or not dtype.isnative:  # astype below copies: a second array of the same size
        budget.take(nbytes, f"array {key!r} (reordered)")
    arr = np.frombuffer(buf, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    # astype, not np.ascontiguousarray: that would make a 0-d array (the bundle's JSON) 1-d
    return arr.astype(dtype.newbyteorder("="), order="C", copy=False)


def arrays(file: bytes | BinaryIO, source: str, budget: MemoryBudget | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """``(key, array)`` for every member of an ``np.savez`` archive, in archive order.

    Every member's inflated bytes are charged to ``budget`` (a new one, at the
    limit in force, when None): the total over all members is bounded, not
    only each one.

    Raises `WeightFileError` for a member that is not a ``.npy`` array, an
    object array, or a header that claims more bytes than the member holds.
    """
    if isinstance(file, (bytes, bytearray)):
        file_size = len(file)
        file = io.BytesIO(file)
    else:
        file_size = file.seek(0, io.SEEK_END)
        file.seek(0)
    budget = budget or MemoryBudget(source)
    zf = guarded("the .npz archive", source, lambda: zipfile.ZipFile(file))
    with zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                raise WeightFileError(
                    f"{source}: member {info.filename[:80]!r} is not a .npy array; expected an archive written by np.savez"
                )
            key = info.filename[: -len(".npy")]
            yield key, guarded(f"array {key!r}", source, lambda: _read_member(zf, info, key, file_size, source, budget))  # noqa: B023


def read(data: bytes, source: str, budget: MemoryBudget) -> tuple[dict[str, np.ndarray], list[str]]:
    """Return the numeric arrays in archive order and the keys skipped."""
    out: dict[str, np.ndarray] = {}
    skipped: list[str] = []
    for key, arr in arrays(data, source, budget):
        if key == BUNDLE_KEY or arr.dtype.kind not in NUMERIC_KINDS:
            skipped.append(key)
        else:
            out[key] = arr
    return out, skipped
