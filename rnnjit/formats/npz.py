"""``.npz`` archives of arrays (``np.savez``), including rnnjit bundles.

Loaded with ``allow_pickle=False``: an object array is an error, never unpickled.
Arrays that are not numbers (strings, such as a bundle's ``__rnnjit__`` JSON)
are skipped and reported.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np

from rnnjit.errors import WeightFileError
from rnnjit.formats.guard import guarded

BUNDLE_KEY = "__rnnjit__"
NUMERIC_KINDS = "fiucb"


def is_npz(zf: zipfile.ZipFile) -> bool:
    names = zf.namelist()
    return bool(names) and all(n.endswith(".npy") for n in names)


def read(data: bytes, source: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """Return the numeric arrays in archive order and the keys skipped."""
    npz = guarded("the .npz archive", source, lambda: np.load(io.BytesIO(data), allow_pickle=False))

    def member(key: str) -> np.ndarray:
        try:
            return npz[key]
        except ValueError as exc:
            if "allow_pickle" not in str(exc):
                raise
            raise WeightFileError(
                f"{source}: array {key!r} is an object array; expected numeric arrays only, "
                "save plain arrays, e.g. np.savez(path, w=np.asarray(w, dtype=np.float32))"
            ) from None

    out: dict[str, np.ndarray] = {}
    skipped: list[str] = []
    with npz:
        for key in npz.files:
            arr = guarded(f"array {key!r}", source, lambda k=key: member(k))
            if key == BUNDLE_KEY or arr.dtype.kind not in NUMERIC_KINDS:
                skipped.append(key)
                continue
            out[key] = np.ascontiguousarray(arr)
    return out, skipped
