"""Engine selection: ``"numba"`` (compiled kernels, default) or ``"numpy"`` (reference).

An engine is a module with ``prepare(spec, weights)`` and
``run(prepared, x, lengths, h0, c0, select, threads)``; the contract is in
`rnnjit.reference`. numba is imported only when the numba engine is asked for,
so ``import rnnjit`` and ``engine="numpy"`` work where numba cannot be loaded.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from rnnjit.errors import InputError

ENGINES = ("numba", "numpy")
_MODULES = {"numba": "rnnjit.kernels", "numpy": "rnnjit.reference"}
_numba_failure: str | None = None


def numba_available() -> bool:
    """True when the numba engine can be imported on this machine."""
    try:
        get_engine("numba")
    except InputError:
        return False
    return True


def default_engine() -> str:
    return "numba" if numba_available() else "numpy"


def get_engine(name: str | None) -> ModuleType:
    """Return the engine module for ``name`` (None picks the default)."""
    global _numba_failure
    if name is None:
        name = default_engine()
    if name not in _MODULES:
        raise InputError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}")
    if name == "numba" and _numba_failure is not None:
        raise InputError(_numba_failure)
    try:
        return importlib.import_module(_MODULES[name])
    except ImportError as exc:  # numba missing or broken (old glibc, no wheel)
        if name != "numba":
            raise
        _numba_failure = (
            f"the numba engine cannot be loaded ({exc}); "
            "install numba, or pass engine='numpy' (--engine numpy) to use the reference engine"
        )
        raise InputError(_numba_failure) from exc
