"""safetensors files, read by hand (the ``safetensors`` package is not needed).

Layout: an 8-byte little-endian header length N, N bytes of JSON
``{name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}``,
then the data; offsets are relative to the end of the header, data is little-endian.
"""

from __future__ import annotations

import json
import math

import numpy as np

from rnnjit.errors import WeightFileError
from rnnjit.formats.guard import printable
from rnnjit.memory import MemoryBudget

DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1",
    "BOOL": "?", "C64": "<c8",
}  # fmt: skip

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the limit the reference implementation uses


def looks_like_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    n = int.from_bytes(data[:8], "little")
    return 2 <= n <= MAX_HEADER_BYTES and data[8:9] == b"{"


def _bad(source: str, what: str) -> WeightFileError:
    return WeightFileError(f"{source}: safetensors {what}; the file is corrupt or truncated, save it again")


def read(data: bytes, source: str, budget: MemoryBudget) -> tuple[dict[str, np.ndarray], list[str]]:
    """Return the tensors in header order (as ``safetensors.safe_open().keys()``), BF16 widened to float32,
    and the names of the widened ones.

    safetensors does not keep the state_dict's order: its writer sorts the header by name.
    """
    n = int.from_bytes(data[:8], "little")
    if 8 + n > len(data):
        raise _bad(source, f"header claims {n} bytes but the file has {len(data) - 8} after the length")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(source, f"header is not valid JSON ({exc})") from None
    except RecursionError:  # '[[[[...' nested past the interpreter's limit
        raise _bad(source, "header nests JSON deeper than Python can parse") from None
    if not isinstance(header, dict):
        raise _bad(source, f"header is a JSON {type(header).__name__}, expected an object")
    header.pop("__metadata__", None)
    body = memoryview(data)[8 + n :]

    entries = []
    for name, entry in header.items():
        if not isinstance(entry, dict):
            raise _bad(source, f"entry {name!r} is {entry!r:.60}, expected an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in DTYPES:  # a JSON list or object is not hashable
            raise WeightFileError(
                f"{source}: tensor {name!r} has safetensors dtype {dtype!r:.40}; "
                f"expected one of {', '.join(DTYPES)} - convert it to float32 before saving"
            )
        ok_shape = isinstance(shape, list) and len(shape) <= 32 and all(type(d) is int and d >= 0 for d in shape)
        ok_offsets = (
            isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int and o >= 0 for o in offsets)
        )
        if not (ok_shape and ok_offsets):
            raise _bad(source, f"entry {name!r} has shape {shape!r:.60} and data_offsets {offsets!r:.60}")
        begin, end = offsets
        need = math.prod(shape) * np.dtype(DTYPES[dtype]).itemsize
        if not begin <= end <= len(body):
            raise _bad(source, f"tensor {name!r} claims bytes {begin}..{end} of a {len(body)}-byte data section")
        if end - begin != need:
            raise _bad(source, f"tensor {name!r} of shape {shape} and dtype {dtype} needs {need} bytes, has {end - begin}")
        entries.append((begin, name, dtype, tuple(shape), end))

    out: dict[str, np.ndarray] = {}
    widened = []
    for begin, name, dtype, shape, end in entries:
        # ranges may overlap: each tensor is a copy, charged (a widened BF16 twice its bytes)
        budget.take((end - begin) * (2 if dtype == "BF16" else 1), f"tensor {printable(name, 80)!r}")
        raw = np.frombuffer(body[begin:end], dtype=DTYPES[dtype]).reshape(shape)
        arr = np.array(raw, dtype=raw.dtype.newbyteorder("="), order="C")
        if dtype == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
            widened.append(name)
        out[name] = arr
    return out, widened
