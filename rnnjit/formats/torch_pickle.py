"""Restricted unpickling of ``torch.save`` pickles into numpy arrays, without torch.

The pickle inside a ``.pth`` file names every Python global it needs to rebuild
its objects. `TorchUnpickler` resolves the few a state_dict needs (tensor
rebuild functions, storage types, dtypes, ``OrderedDict``) to small stand-ins
defined here, refuses the globals only an attack names (``os.system``,
``builtins.eval``, see `rnnjit.formats.placeholder.is_hostile`) and turns every
other one (``argparse.Namespace``, numpy scalars, the user's dataclasses) into
an inert `Placeholder`. Nothing is imported and nothing from the file is ever
executed. Before unpickling, `check_opcodes` walks the opcodes once so that a
tiny pickle cannot make the unpickler allocate gigabytes (a memo index of 2**31).

Tensors come out of the pickle as `LazyTensor` records. Reading the bytes is
left to the container format (zip member or legacy stream): `LazyTensor.to_numpy`
takes those bytes and builds the array, checking every index against the
storage so a hostile file cannot read out of range.
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import pickle
from collections import OrderedDict
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from rnnjit.errors import UnsafePickleError, WeightFileError
from rnnjit.formats import numpy_pickle
from rnnjit.formats.guard import guarded, printable
from rnnjit.formats.limits import MAX_EXPANDED_BYTES
from rnnjit.formats.pickle_scan import check_opcodes
from rnnjit.formats.placeholder import PlaceholderTypes, is_hostile
from rnnjit.memory import MemoryBudget

# Element type codes: numpy dtype strings without byte order; "bf16" is bfloat16,
# read as uint16 and widened to float32 (numpy has no bfloat16).
ITEMSIZE = {
    "f8": 8, "f4": 4, "f2": 2, "bf16": 2,
    "i8": 8, "i4": 4, "i2": 2, "i1": 1,
    "u8": 8, "u4": 4, "u2": 2, "u1": 1,
    "b1": 1, "c8": 8, "c16": 16,
}  # fmt: skip

# ``torch.<Name>Storage`` globals (typed storages, as torch.save writes them).
STORAGE_TYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2",
    "BFloat16Storage": "bf16", "LongStorage": "i8", "IntStorage": "i4",
    "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "b1", "ComplexFloatStorage": "c8", "ComplexDoubleStorage": "c16",
    "UntypedStorage": "u1",
}  # fmt: skip

# ``torch.<dtype>`` globals (``_rebuild_tensor_v3`` passes the dtype explicitly).
TORCH_DTYPES = {
    "float64": "f8", "float32": "f4", "float16": "f2", "bfloat16": "bf16",
    "int64": "i8", "int32": "i4", "int16": "i2", "int8": "i1",
    "uint64": "u8", "uint32": "u4", "uint16": "u2", "uint8": "u1",
    "bool": "b1", "complex64": "c8", "complex128": "c16",
}  # fmt: skip


SAVE_HINT = "rnnjit only loads state_dicts; save with torch.save(model.state_dict(), path)"


def _no_state(obj: Any) -> WeightFileError:
    # pickle's BUILD opcode would otherwise set attributes after validation.
    return WeightFileError(
        f"the pickle tries to set the state of a {type(obj).__name__}; torch.save never does that (corrupt file?)"
    )


class _TorchName:
    """A named torch global reduced to its element type code."""

    __slots__ = ("name", "code")

    def __init__(self, name: str, code: str) -> None:
        self.name = name
        self.code = code

    def __setstate__(self, state: Any) -> None:
        raise _no_state(self)

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class StorageType(_TorchName):
    """Stand-in for ``torch.FloatStorage`` and friends: just the element type."""

    __slots__ = ()


class TorchDType(_TorchName):
    """Stand-in for a ``torch.float32``-style dtype global (not accepted where a storage type is)."""

    __slots__ = ()


class StorageRef:
    """A storage named by a persistent id: ``numel`` elements of ``code``.

    ``key`` names the bytes in the container (``data/<key>`` in a zip archive).
    A legacy storage view reads ``numel`` elements from ``elem_offset`` of the
    storage ``key``.
    """

    __slots__ = ("key", "code", "numel", "elem_offset")

    def __init__(self, key: str, code: str, numel: int, elem_offset: int = 0) -> None:
        self.key = key
        self.code = code
        self.numel = numel
        self.elem_offset = elem_offset

    def __setstate__(self, state: Any) -> None:
        raise _no_state(self)

    @property
    def nbytes(self) -> int:
        return self.numel * ITEMSIZE[self.code]


def _check_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise WeightFileError(f"tensor {what} is {value!r:.40}; expected a non-negative integer (corrupt file?)")
    return value


def _check_dims(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or len(value) > 32:
        raise WeightFileError(f"tensor {what} is {value!r:.80}; expected a tuple of at most 32 integers (corrupt file?)")
    return tuple(_check_int(v, what) for v in value)


class LazyTensor:
    """A tensor found in the pickle: a view (offset, size, stride) of a storage."""

    __slots__ = ("storage", "offset", "size", "stride", "code", "neg", "conj")

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any, code: str | None = None) -> None:
        if not isinstance(storage, StorageRef):
            raise WeightFileError(
                f"a tensor in the pickle is built from {type(storage).__name__}, not a storage (corrupt file?)"
            )
        self.storage = storage
        self.offset = _check_int(offset, "storage offset")
        self.size = _check_dims(size, "size")
        self.stride = _check_dims(stride, "stride")
        if len(self.stride) != len(self.size):
            raise WeightFileError(
                f"tensor has size {self.size} but stride {self.stride}; expected one stride per dimension (corrupt file?)"
            )
        self.code = code or storage.code
        self.neg = False
        self.conj = False

    def __setstate__(self, state: Any) -> None:
        raise _no_state(self)

    @property
    def out_nbytes(self) -> int:
        """Bytes of the array `to_numpy` returns (bfloat16 widens to 4 bytes)."""
        return math.prod(self.size) * (4 if self.code == "bf16" else ITEMSIZE[self.code])

    def to_numpy(self, buf: bytes | memoryview, byteorder: str, name: str) -> np.ndarray:
        """Build the array from the storage bytes ``buf``, bounds-checked.

        ``buf`` holds the whole storage ``self.storage.key`` as written in the
        file (``byteorder`` is ``"<"`` or ``">"``).
        """
        code, ref = self.code, self.storage
        itemsize = ITEMSIZE[code]
        start = ref.elem_offset * ITEMSIZE[ref.code]
        end = start + ref.nbytes
        if end > len(buf):
            raise WeightFileError(
                f"tensor {name!r}: its storage {ref.key!r} holds {len(buf)} bytes but {end} are needed; "
                "the file is truncated or corrupt, save it again"
            )
        avail = (end - start) // itemsize
        count = math.prod(self.size)
        if count:
            last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
            if last >= avail:
                raise WeightFileError(
                    f"tensor {name!r} with size {self.size}, stride {self.stride} and offset {self.offset} reaches "
                    f"element {last} of a storage of {avail} elements; expected a view inside its storage (corrupt file?)"
                )
            # An expanded tensor (stride 0) may legitimately have more elements than its storage.
            if count > avail and count * itemsize > MAX_EXPANDED_BYTES:
                raise WeightFileError(
                    f"tensor {name!r} expands a {avail}-element storage to {count} elements; refusing to allocate that"
                )
        raw = "u2" if code == "bf16" else code
        file_dtype = np.dtype(raw if itemsize == 1 else byteorder + raw)
        base = np.frombuffer(buf, dtype=file_dtype, count=avail, offset=start)
        if count:
            view = as_strided(
                base[self.offset :],
                shape=self.size,
                strides=[s * itemsize for s in self.stride],
                writeable=False,
            )
        else:
            view = np.empty(self.size, dtype=file_dtype)
        try:
            arr = np.array(view, dtype=file_dtype.newbyteorder("="), order="C")
        except MemoryError:
            raise WeightFileError(f"tensor {name!r} of size {self.size} does not fit in memory") from None
        if code == "bf16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        if self.neg:
            arr = np.negative(arr)
        if self.conj:
            arr = np.conj(arr)
        return arr


# --------------------------------------------------------------- stand-ins
# The same signatures as the functions in torch._utils, building LazyTensors.


def _set_metadata(tensor: LazyTensor, metadata: Any) -> LazyTensor:
    if isinstance(metadata, dict):
        tensor.neg = bool(metadata.get("neg", False))
        tensor.conj = bool(metadata.get("conj", False))
    return tensor


def _rebuild_tensor(storage, storage_offset, size, stride):
    return LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _set_metadata(LazyTensor(storage, storage_offset, size, stride), metadata)


def _rebuild_tensor_v3(
    storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None
):  # fmt: skip
    if not isinstance(dtype, TorchDType):
        raise WeightFileError(f"a tensor in the pickle has dtype {dtype!r}; expected a torch dtype (corrupt file?)")
    return _set_metadata(LazyTensor(storage, storage_offset, size, stride, code=dtype.code), metadata)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    if not isinstance(data, LazyTensor):
        raise WeightFileError(f"a Parameter in the pickle wraps {type(data).__name__}, not a tensor (corrupt file?)")
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return _rebuild_parameter(data, requires_grad, backward_hooks)


def _torch_size(dims=()):
    return tuple(dims)


def _codecs_encode(text, encoding="utf-8"):
    # Protocol-2 pickles store bytes as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refused _codecs.encode({type(text).__name__}, {encoding!r}); {SAVE_HINT}")
    return text.encode("latin1")


class Global:
    """An allow-listed function as the unpickler hands it out: callable, and nothing can be set on it.

    pickle's BUILD sets state or attributes on whatever object is on the stack,
    including a global it loaded: on a plain function that would set
    ``__defaults__`` of rnnjit's own stand-in and change every later load in the
    process. A `Global` has no ``__dict__`` and refuses a state, so BUILD only
    ever reaches the fresh objects the stand-ins return (`LazyTensor`,
    ``OrderedDict``, placeholders), never something shared between loads.
    """

    __slots__ = ("name", "_fn")

    def __init__(self, name: str, fn: Any) -> None:
        self.name = name
        self._fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)

    def __setstate__(self, state: Any) -> None:
        raise WeightFileError(
            f"the pickle tries to set the state of the global {self.name}; torch.save never does that "
            "(corrupt or hostile file?)"
        )

    def __repr__(self) -> str:
        return self.name


def _inert(name: str, obj: Any) -> Any:
    """``obj`` as `find_class` may return it: a `Global`, or a builtin type nothing can be set on.

    ``OrderedDict``, ``set``, ``frozenset`` and ``complex`` stay types (NEWOBJ
    needs a type); as immutable builtin types they refuse BUILD and setattr.
    """
    if isinstance(obj, numpy_pickle.NdarrayClass):  # no state, no attributes (__slots__ = ())
        return obj
    if isinstance(obj, type):
        if not obj.__flags__ & _IMMUTABLE_TYPE:
            raise TypeError(f"{name}: only immutable builtin types may be allow-listed")
        return obj
    return Global(name, obj)


_IMMUTABLE_TYPE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE (static builtin types)

_ALLOWED: dict[str, Any] = {
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter_with_state,
    "torch.Size": _torch_size,
    "collections.OrderedDict": OrderedDict,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "builtins.complex": complex,
    "_codecs.encode": _codecs_encode,
}
ALLOWED_GLOBALS: dict[str, Any] = {name: _inert(name, obj) for name, obj in _ALLOWED.items()}
# Plain pickles of numpy arrays (not torch.save files): numpy's own array pickling, rebuilt from validated data.
NUMPY_GLOBALS: dict[str, Any] = {name: _inert(name, obj) for name, obj in numpy_pickle.globals_table().items()}


def _py3_name(module: str, name: str) -> tuple[str, str]:
    """The global Python 3 would load: protocol-2 pickles may say ``__builtin__``/``commands``."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _refusal(module: str, name: str, source: str) -> UnsafePickleError:
    return UnsafePickleError(
        f"refused pickle global '{printable(module + '.' + name)}' in {source}: it runs code or touches the system, "
        f"which no checkpoint needs and nothing from a weight file is executed (hostile file?); {SAVE_HINT}"
    )


class TorchUnpickler(pickle.Unpickler):
    """A `pickle.Unpickler` that knows only the globals a state_dict needs.

    ``storages`` collects every storage named by a persistent id, by key.
    """

    def __init__(
        self, file: io.BufferedIOBase, source: str, *, legacy: bool = False, numpy_arrays: bool = False
    ) -> None:
        super().__init__(file)
        self.source = source
        self.legacy = legacy
        self.numpy_arrays = numpy_arrays
        self.storages: dict[str, StorageRef] = {}
        self.placeholders = PlaceholderTypes(source)

    def find_class(self, module: str, name: str) -> Any:
        module, name = _py3_name(module, name)
        key = f"{module}.{name}"
        if key in ALLOWED_GLOBALS:
            return ALLOWED_GLOBALS[key]
        if self.numpy_arrays and key in NUMPY_GLOBALS:
            return NUMPY_GLOBALS[key]
        if (module == "torch" and name in STORAGE_TYPES) or key == "torch.storage.UntypedStorage":
            return StorageType(name, STORAGE_TYPES[name])
        if module == "torch" and name in TORCH_DTYPES:
            return TorchDType(name, TORCH_DTYPES[name])
        if is_hostile(module, name):
            raise _refusal(module, name, self.source)
        return self.placeholders.get(module, name)

    def persistent_load(self, pid: Any) -> StorageRef:
        if isinstance(pid, tuple) and pid and pid[0] == "module":
            raise WeightFileError(
                f"{self.source} holds a whole pickled nn.Module, not a state_dict; {SAVE_HINT}"
            )
        n = 6 if self.legacy else 5
        if not (isinstance(pid, tuple) and len(pid) == n and pid[0] == "storage"):
            raise WeightFileError(
                f"{self.source}: unexpected persistent id {pid!r:.80}; expected a torch storage reference (corrupt file?)"
            )
        stype, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(stype, StorageType) or not isinstance(key, str):
            raise WeightFileError(f"{self.source}: malformed storage reference {pid!r:.80} (corrupt file?)")
        numel = _check_int(numel, "storage size")
        ref = self.storages.get(key)
        if ref is None:
            ref = self.storages[key] = StorageRef(key, stype.code, numel)
        elif ref.code != stype.code:
            raise WeightFileError(
                f"{self.source}: storage {key!r} is read as both {ref.code} and {stype.code} (corrupt file?)"
            )
        else:
            ref.numel = max(ref.numel, numel)
        view = pid[5] if self.legacy else None
        if view is not None:
            # Legacy storage view: (view_key, element offset, view size) of storage `key`.
            if not (isinstance(view, tuple) and len(view) == 3):
                raise WeightFileError(f"{self.source}: malformed storage view {view!r:.80} (corrupt file?)")
            offset, size = _check_int(view[1], "storage view offset"), _check_int(view[2], "storage view size")
            if offset + size > ref.numel:
                raise WeightFileError(
                    f"{self.source}: a view of elements {offset}..{offset + size} exceeds storage {key!r} "
                    f"of {ref.numel} elements (corrupt file?)"
                )
            return StorageRef(key, ref.code, size, offset)
        return ref


class _NoGlobals(pickle.Unpickler):
    """For the header pickles of the legacy format: plain values only."""

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafePickleError(
            f"refused pickle global '{printable('.'.join(_py3_name(module, name)))}' in a header of {self.source}: "
            "the headers of a legacy torch.save file hold plain values only (corrupt or hostile file?)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise WeightFileError(f"{self.source}: unexpected persistent id in a header pickle (corrupt file?)")


def load_pickle(
    data: bytes | io.BufferedIOBase,
    source: str,
    *,
    legacy: bool = False,
    numpy_arrays: bool = False,
    budget: MemoryBudget | None = None,
) -> tuple[Any, TorchUnpickler]:
    """Unpickle one torch pickle; return the object and the unpickler (its ``storages``).

    ``numpy_arrays``: also rebuild pickled numpy arrays (`rnnjit.formats.numpy_pickle`),
    for plain pickles; in a torch.save file they stay placeholders (side data, not weights).
    """
    f = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    check_opcodes(f, source, budget)
    up = TorchUnpickler(f, source, legacy=legacy, numpy_arrays=numpy_arrays)
    obj = guarded("the pickled state_dict", source, up.load)
    return obj, up


def load_plain(f: io.BufferedIOBase, source: str, what: str) -> Any:
    """Unpickle one header pickle that may hold no globals at all."""
    check_opcodes(f, source)
    return guarded(what, source, _NoGlobals(f, source).load)
