"""Hand-made weight files for tests/test_formats.py: hostile pickles and odd tensors.

torch is used only for the names of its globals: pickle records
``torch._utils._rebuild_tensor_v2`` and ``torch.FloatStorage`` by module and name,
exactly as torch.save does, while the storage bytes and the
size/stride/offset are whatever the test asks for.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path

import torch

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class Storage:
    """A storage reference, pickled as torch.save's persistent id."""

    def __init__(self, key: str, numel: int, storage_type=torch.FloatStorage, view=None) -> None:
        self.key, self.numel, self.storage_type = key, numel, storage_type
        self.view = view  # legacy (view_key, offset, size), as PyTorch < 1.0 wrote storage views


class Tensor:
    """Pickles as ``_rebuild_tensor_v2(storage, offset, size, stride, ...)``."""

    def __init__(self, storage: Storage, offset: int, size: tuple, stride: tuple, state=None) -> None:
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())
        self.state = state  # pickled as a BUILD after the call, as an attacker could

    def __reduce__(self):
        if self.state is not None:
            return (torch._utils._rebuild_tensor_v2, self.args, self.state)
        return (torch._utils._rebuild_tensor_v2, self.args)


class Call:
    """Pickles as a call ``func(*args)``: what a malicious pickle does."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


class _Pickler(pickle.Pickler):
    def __init__(self, f, legacy: bool) -> None:
        super().__init__(f, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            pid = ("storage", obj.storage_type, obj.key, "cpu", obj.numel)
            return pid + (obj.view,) if self.legacy else pid
        return None


def dumps(obj, *, legacy: bool = False) -> bytes:
    f = io.BytesIO()
    _Pickler(f, legacy).dump(obj)
    return f.getvalue()


def write_zip(path: Path, obj, storages: dict[str, bytes], *, byteorder: str | None = "little") -> Path:
    """A torch.save-style zip archive holding ``obj`` (bytes: the pickle itself) and the raw ``storages``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", obj if isinstance(obj, bytes) else dumps(obj))
        if byteorder is not None:
            zf.writestr("archive/byteorder", byteorder)
        for key, raw in storages.items():
            zf.writestr(f"archive/data/{key}", raw)
        zf.writestr("archive/version", "3\n")
    return path


def deep_dict_pickle(depth: int) -> bytes:
    """``{"level": {"level": ... {} ...}}`` nested ``depth`` times, which pickle.dumps cannot write."""
    key = b"X" + len(b"level").to_bytes(4, "little") + b"level"
    return b"\x80\x02" + (b"}(" + key) * depth + b"}" + b"u" * depth + b"."


def write_legacy(path: Path, obj, storages: dict[str, tuple[int, bytes]]) -> Path:
    """A legacy torch.save stream holding ``obj`` (bytes: the pickle itself); ``storages`` maps key -> (numel, raw bytes)."""
    f = io.BytesIO()
    for header in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, f, protocol=2)
    f.write(obj if isinstance(obj, bytes) else dumps(obj, legacy=True))
    pickle.dump(sorted(storages), f, protocol=2)
    for key in sorted(storages):
        numel, raw = storages[key]
        f.write(numel.to_bytes(8, "little", signed=True) + raw)
    path.write_bytes(f.getvalue())
    return path
