"""Read PyTorch weights without torch: ``.pth``/``.pt`` (zip and legacy), safetensors, ``.npz``.

>>> from rnnjit.formats import read_state_dict
>>> sd, info = read_state_dict("model.pth")          # doctest: +SKIP
>>> info["format"], info["unwrapped"], info["stripped_prefix"]  # doctest: +SKIP
('pth-zip', 'model', 'module.')
>>> info["placeholders"]  # doctest: +SKIP
["argparse.Namespace (at 'args')", "numpy.core.multiarray.scalar (at 'epoch')"]

The format is told from the content, not the file name. Pickles are read with a
restricted unpickler (`rnnjit.formats.torch_pickle`): nothing in a weight file
is ever imported or executed; objects other than tensors and plain values
become inert placeholders (`rnnjit.formats.placeholder`). Every size a header
claims is checked against the file before anything is allocated
(`rnnjit.formats.limits`).
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from rnnjit.errors import WeightFileError
from rnnjit.files import regular_file
from rnnjit.formats import checkpoint, npz, placeholder, safetensors, torch_legacy, torch_zip
from rnnjit.formats.guard import guarded, printable
from rnnjit.memory import MemoryBudget
from rnnjit.formats.numpy_pickle import NumpyArray
from rnnjit.formats.torch_pickle import LazyTensor

__all__ = ["FORMATS", "read_state_dict"]

FORMATS = ("pth-zip", "pth-legacy", "safetensors", "npz", "pickle")
SUPPORTED = (
    "a PyTorch .pth/.pt written by torch.save (zip or legacy), "
    "a .safetensors file, a .npz of arrays, or a pickle of numpy arrays"
)


def _read_bytes(path: Path) -> bytes:
    if not path.is_dir():  # a FIFO would block the open, a device read without end: stat first
        regular_file(path, f"weight file ({SUPPORTED})", WeightFileError)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise WeightFileError(f"{path}: no such file; expected {SUPPORTED}") from None
    except IsADirectoryError:
        raise WeightFileError(f"{path} is a directory; expected {SUPPORTED}") from None
    except OSError as exc:
        raise WeightFileError(f"{path}: cannot read the file ({exc.strerror or exc}); check its permissions") from None


def _unknown(data: bytes, source: str) -> WeightFileError:
    if not data:
        return WeightFileError(f"{source} is empty (0 bytes); expected {SUPPORTED} - save or copy it again")
    if data[257:262] == b"ustar":
        what = "a tar archive (the PyTorch < 0.4 torch.save format?)"
        fix = "load it with an old PyTorch and save the state_dict again"
    elif data[:6] == b"\x93NUMPY":
        what = "a single .npy array"
        fix = "save the named weights with np.savez(path, **state_dict)"
    else:
        what = f"an unrecognised file (starts with {data[:8].hex(' ')})"
        fix = "check the path"
    return WeightFileError(f"{source} is {what}; expected {SUPPORTED}; {fix}")


def _load(data: bytes, source: str, budget: MemoryBudget) -> tuple[str, Any, Any, list[str], list[str]]:
    """Return ``(format, object, build, skipped, widened)``.

    ``build`` makes arrays of `LazyTensor`s (None when the object holds
    arrays already); ``widened`` names the tensors already widened from
    bfloat16 (a LazyTensor says so itself, when built).
    """
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        zf = guarded("the zip archive", source, lambda: zipfile.ZipFile(io.BytesIO(data)))
        if torch_zip.is_torch_zip(zf):
            obj, build = torch_zip.read(zf, len(data), source, budget)
            return "pth-zip", obj, build, [], []
        if npz.is_npz(zf):
            arrays, skipped = npz.read(data, source, budget)
            return "npz", arrays, None, skipped, []
        names = ", ".join(printable(n, 60) for n in zf.namelist()[:4]) or "nothing"
        raise WeightFileError(
            f"{source} is a zip archive holding {names}; expected */data.pkl (torch.save) or .npy members (np.savez)"
        )
    if torch_legacy.is_legacy_pickle(data):
        if not torch_legacy.has_magic(data):
            return "pickle", torch_legacy.read_plain(data, source, budget), None, [], []
        obj, build = torch_legacy.read(data, source, budget)
        return "pth-legacy", obj, build, [], []
    if safetensors.looks_like_safetensors(data):
        tensors, widened = safetensors.read(data, source, budget)
        return "safetensors", tensors, None, [], widened
    raise _unknown(data, source)


def read_state_dict(
    path: str | os.PathLike, *, memory_limit: int | str | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a flat state_dict of numpy arrays from a weight file, without torch.

    Parameters
    ----------
    path : str or os.PathLike
        A ``torch.save`` file (zip archive or legacy stream, ``.pth``/``.pt``),
        a ``.safetensors`` file, a ``.npz`` of arrays, or a plain pickle of
        numpy arrays (``pickle.dump({"w": array, ...})``). The format is detected
        from the content. A checkpoint that wraps the state_dict
        (``{"model": sd, "optimizer": ...}``) is unwrapped.
    memory_limit : int or str, optional
        What the file may make rnnjit allocate beyond its own bytes (inflated
        members, storages, tensors, the pickle's objects, key text), e.g.
        ``"4G"``; default ``$RNNJIT_MEMORY_LIMIT`` or 1 GiB (`rnnjit.memory`).

    Returns
    -------
    state_dict : dict[str, numpy.ndarray]
        PyTorch keys in file order, without a ``module.``/``model.`` prefix
        shared by every key. float64/float32/float16 and integer/bool arrays
        keep their dtype; bfloat16 becomes float32. Arrays are C-contiguous copies.
    info : dict
        ``format`` (one of `FORMATS`), ``unwrapped`` (key path of the wrapper
        such as ``"model"``, or None), ``stripped_prefix`` (``"module."``,
        ``"model."``, ``"_orig_mod."`` (torch.compile), ``"module._orig_mod."``
        or None), ``sha256`` (hex digest of the file), ``source`` (file name),
        ``skipped`` (keys dropped because they hold no model weights, e.g.
        ``"optimizer"``, ``"epoch"``, and an ``AveragedModel``'s
        ``"n_averaged"`` counter) and ``placeholders``: one short string per
        pickled object rnnjit did not build because its class is outside the
        allow-list, with where it sat, e.g. ``"argparse.Namespace (at 'args')"``,
        ``"pathlib.PosixPath (at 'paths.data')"``; empty for safetensors and
        ``.npz``. Such objects are never imported or called and never become
        weights; at most 50 are listed, then ``"... and N more"``.
        ``widened``: the keys stored as bfloat16 and read as float32 (exactly).

    Raises
    ------
    UnsafePickleError
        A pickle names a global that only an attack uses (``os.system``,
        ``builtins.eval``, ``subprocess.Popen``, ...; the message names it).
    MemoryLimitError
        Reading the file would allocate more than ``memory_limit``.
    WeightFileError
        The file is missing, not a regular file, empty, truncated, corrupt, of an unknown format,
        claims more bytes than it holds, holds no tensors, or holds a tensor
        in a form rnnjit cannot read (a placeholder among the weights).
    """
    path = Path(path)
    source = printable(path.name)
    data = _read_bytes(path)
    budget = MemoryBudget(source, memory_limit)
    fmt, obj, build, skipped, widened = _load(data, source, budget)
    # guarded: a hostile pickle can nest or loop containers past the recursion limit
    placeholders = guarded("the checkpoint's structure", source, lambda: placeholder.find(obj))
    flat, unwrapped, dropped = guarded(
        "the checkpoint's structure", source, lambda: checkpoint.unwrap(obj, source, placeholders, budget)
    )
    sd: dict[str, np.ndarray] = {}
    # views left per storage: a storage is dropped (and its bytes given back) after its last tensor is built
    views = collections.Counter(v.storage.key for v in flat.values() if isinstance(v, LazyTensor))
    release = getattr(build, "release", None)
    for key, value in flat.items():
        if isinstance(value, LazyTensor):
            if value.code == "bf16":
                widened.append(key)
            budget.take(value.out_nbytes, f"tensor {printable(key, 80)!r}")
            storage = value.storage.key
            value = guarded(f"tensor {key!r}", source, lambda: build(value, key))  # noqa: B023 - called at once
            views[storage] -= 1
            if release is not None and not views[storage]:
                release(storage)
        elif isinstance(value, NumpyArray):
            value = value.value()
        sd[key] = value
    sd, prefix, not_weights = checkpoint.strip_prefix(sd)
    cut = len(prefix or "")
    widened = [k[cut:] for k in widened if k[cut:] in sd]
    info = {
        "format": fmt,
        "unwrapped": unwrapped,
        "stripped_prefix": prefix,
        "sha256": hashlib.sha256(data).hexdigest(),
        "source": source,
        "skipped": skipped + dropped + not_weights,
        "placeholders": placeholders,
        "widened": widened,
    }
    return sd, info
