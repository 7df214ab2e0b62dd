"""``torch.save`` zip archives (PyTorch >= 1.6).

Layout: one top folder ``<name>/`` holding ``data.pkl`` (the pickled object,
storages as persistent ids), ``data/<key>`` (one raw storage each),
``byteorder`` (``little``/``big``; absent in old files, meaning little) and
``version``.
"""

from __future__ import annotations

import zipfile
from typing import Any, Callable

import numpy as np

from rnnjit.errors import WeightFileError
from rnnjit.formats.guard import guarded, printable
from rnnjit.formats.limits import check_zip_member
from rnnjit.formats.torch_pickle import SAVE_HINT, LazyTensor, load_pickle
from rnnjit.memory import MemoryBudget

# A state_dict pickle is kilobytes; refuse to inflate something absurd.
MAX_PICKLE_BYTES = 1 << 28


def is_torch_zip(zf: zipfile.ZipFile) -> bool:
    return any(n.endswith("/data.pkl") and n.count("/") == 1 for n in zf.namelist())


def _member(
    zf: zipfile.ZipFile, name: str, nbytes: int, file_size: int, source: str, what: str, budget: MemoryBudget
) -> bytes:
    """Read the first ``nbytes`` of member ``name``, with clear errors."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise WeightFileError(
            f"{source}: {what} ({printable(name, 80)}) is missing from the archive; "
            "the file is incomplete, save it again"
        ) from None
    check_zip_member(info, nbytes, file_size, source, what, budget)

    def read() -> bytes:
        with zf.open(info) as f:
            return f.read(nbytes)

    buf = guarded(what, source, read)
    if len(buf) < nbytes:
        raise WeightFileError(
            f"{source}: {what} ({printable(name, 80)}) ends after {len(buf)} of {nbytes} bytes; save it again"
        )
    return buf


def read(
    zf: zipfile.ZipFile, file_size: int, source: str, budget: MemoryBudget
) -> tuple[Any, Callable[[LazyTensor, str], np.ndarray]]:
    """Unpickle the archive's object; return it and a function that builds one tensor.

    ``file_size`` is the archive's size in bytes: no member may claim more.
    Every member read (inflated) is charged to ``budget``: each storage once,
    whatever the number of tensors that view it.

    The object holds `LazyTensor` leaves; ``build(tensor, name)`` reads its
    storage (once per storage) and returns the numpy array.
    """
    names = zf.namelist()
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise WeightFileError(
            f"{source} is a TorchScript archive (torch.jit.save), not a state_dict; "
            f"load it with torch.jit.load and {SAVE_HINT}"
        )
    pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkls) != 1:
        raise WeightFileError(
            f"{source}: the archive has {len(pkls)} top-level data.pkl files "
            f"({', '.join(printable(n, 60) for n in pkls[:3])}); "
            "expected exactly one as torch.save writes"
        )
    root = pkls[0][: -len("data.pkl")]
    byteorder = "<"
    if root + "byteorder" in names:
        raw = guarded("the byteorder record", source, lambda: zf.read(root + "byteorder")).strip()
        if raw not in (b"little", b"big"):
            raise WeightFileError(f"{source}: byteorder record is {raw[:20]!r}; expected b'little' or b'big'")
        byteorder = "<" if raw == b"little" else ">"
    size = zf.getinfo(pkls[0]).file_size
    if size > MAX_PICKLE_BYTES:
        raise WeightFileError(f"{source}: data.pkl claims {size} bytes; a state_dict pickle is far smaller (corrupt file?)")
    pkl = _member(zf, pkls[0], size, file_size, source, "data.pkl", budget)
    obj, unpickler = load_pickle(pkl, source, budget=budget)
    cache: dict[str, bytes] = {}

    def build(tensor: LazyTensor, name: str) -> np.ndarray:
        ref = tensor.storage
        buf = cache.get(ref.key)
        if buf is None:
            whole = unpickler.storages[ref.key]
            buf = cache[ref.key] = _member(
                zf, f"{root}data/{ref.key}", whole.nbytes, file_size, source,
                f"the storage of tensor {printable(name, 80)!r}", budget,
            )
        return tensor.to_numpy(buf, byteorder, name)

    def release(key: str) -> None:
        """Drop storage ``key`` once every tensor that views it is built, and give its bytes back."""
        buf = cache.pop(key, None)
        if buf is not None:
            budget.give_back(len(buf))

    build.release = release  # type: ignore[attr-defined]
    return obj, build
