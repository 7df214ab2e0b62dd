"""The legacy ``torch.save`` stream (``_use_new_zipfile_serialization=False``).

One file, read front to back: five pickles, then the storages.

1. the magic number ``0x1950a86a20f9469cfc6c``,
2. the protocol version ``1001``,
3. ``sys_info`` (byte order and C type sizes of the writer),
4. the object, storages as persistent ids
   ``('storage', type, key, location, numel, view_metadata)``,
5. the storage keys, in the order their bytes follow,

then for every key an int64 element count and the raw elements. PyTorch
writes both little-endian whatever the machine (``torch/csrc/serialization.cpp``).
"""

from __future__ import annotations

import io
from typing import Any, Callable

import numpy as np

from rnnjit.errors import WeightFileError
from rnnjit.formats.torch_pickle import ITEMSIZE, LazyTensor, load_pickle, load_plain
from rnnjit.memory import MemoryBudget

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001


def is_legacy_pickle(data: bytes) -> bool:
    """True when ``data`` starts like a pickle (PROTO opcode, protocol 2..5)."""
    return len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5


def has_magic(data: bytes) -> bool:
    """True when the first pickle is torch's magic number (a LONG1 of 10 bytes, after an optional FRAME)."""
    head = data[2:]
    if head[:1] == b"\x95":  # FRAME (protocol 4+) and its 8-byte length
        head = head[9:]
    return head[:2] == b"\x8a\x0a" and int.from_bytes(head[2:12], "little", signed=True) == MAGIC_NUMBER


def read_plain(data: bytes, source: str, budget: MemoryBudget) -> Any:
    """A plain pickle (``pickle.dump`` of a dict of numpy arrays): the object, numpy arrays rebuilt."""
    obj, _ = load_pickle(data, source, numpy_arrays=True, budget=budget)
    return obj


def read(data: bytes, source: str, budget: MemoryBudget) -> tuple[Any, Callable[[LazyTensor, str], np.ndarray]]:
    """Unpickle the stream's object; return it and a function that builds one tensor."""
    f = io.BytesIO(data)
    magic = load_plain(f, source, "the file header")
    if magic != MAGIC_NUMBER:
        raise WeightFileError(
            f"{source} is a plain pickle, not a torch.save file (no torch magic number); "
            "expected a .pth/.pt written by torch.save, a .safetensors or a .npz file"
        )
    version = load_plain(f, source, "the protocol version")
    if version != PROTOCOL_VERSION:
        raise WeightFileError(
            f"{source}: legacy torch.save protocol version {version!r}; expected {PROTOCOL_VERSION}, "
            "re-save it with a current PyTorch"
        )
    load_plain(f, source, "the sys_info record")
    obj, unpickler = load_pickle(f, source, legacy=True, budget=budget)
    keys = load_plain(f, source, "the storage key list")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise WeightFileError(f"{source}: the storage key list is {type(keys).__name__}; expected a list of strings")

    view = memoryview(data)
    pos = f.tell()
    spans: dict[str, tuple[int, int]] = {}
    for key in keys:
        ref = unpickler.storages.get(key)
        if ref is None:
            raise WeightFileError(f"{source}: storage {key!r} is listed but no tensor names it (corrupt file?)")
        if pos + 8 > len(data):
            raise WeightFileError(f"{source}: the file ends before storage {key!r}; it is truncated, save it again")
        numel = int.from_bytes(data[pos : pos + 8], "little", signed=True)
        nbytes = numel * ITEMSIZE[ref.code]
        pos += 8
        if numel < 0 or pos + nbytes > len(data):
            raise WeightFileError(
                f"{source}: storage {key!r} claims {numel} elements ({nbytes} bytes) but only "
                f"{len(data) - pos} bytes remain; the file is truncated, save it again"
            )
        spans[key] = (pos, nbytes)
        pos += nbytes

    def build(tensor: LazyTensor, name: str) -> np.ndarray:
        key = tensor.storage.key
        if key not in spans:
            raise WeightFileError(
                f"{source}: storage {key!r} of tensor {name!r} is missing from the file (corrupt file?)"
            )
        start, nbytes = spans[key]
        return tensor.to_numpy(view[start : start + nbytes], "<", name)

    return obj, build
