"""Engine selection: ``"numba"`` (compiled kernels, default) or ``"numpy"`` (reference).

An engine is a module with ``prepare(spec, weights, precision=None)`` and
``run(prepared, x, lengths, h0, c0, select, threads, table=None)``; the
contract is in `rnnjit.reference`. ``select`` and ``table`` also carry the
steps an engine runs inside its launch (a pooling, an embedding's table; see
`rnnjit.kinds.Fusion`). numba is imported only when the numba engine is asked for,
so ``import rnnjit`` and ``engine="numpy"`` work where numba cannot be loaded.

When numba cannot be loaded (not installed; ``import numba`` failing with
``OSError`` from libllvmlite on an old glibc; no writable cache directory, see
`rnnjit.numba_loader`):

- the default engine (``engine=None``) falls back to the numpy engine, which
  gives the same numbers, slower, and warns once per process with a
  `NumbaUnavailableWarning` that says what failed and how to fix it;
- ``engine="numba"`` raises `EngineUnavailableError` (exit code 2 in the CLI),
  naming the failure and ``engine="numpy"``.
"""

from __future__ import annotations

import importlib
import threading
import warnings
from types import ModuleType

from rnnjit.errors import InputError
from rnnjit.numba_loader import CachePlan, NumbaLoadError, load_kernels

ENGINES = ("numba", "numpy")
_REFERENCE = "rnnjit.reference"


class NumbaUnavailableWarning(RuntimeWarning):
    """numba cannot be loaded, so the default engine is the (exact, slower) numpy engine."""


class EngineUnavailableError(InputError):
    """``engine="numba"`` was asked for and numba cannot be loaded on this machine."""


_lock = threading.Lock()
_loaded: tuple[ModuleType, CachePlan] | NumbaLoadError | None = None
_warned = False


def _load_numba() -> tuple[ModuleType, CachePlan]:
    """The kernels module and its cache plan, loaded once per process; raises `NumbaLoadError`."""
    global _loaded
    with _lock:  # the local runner warms the engine up in a thread while the main thread reads
        if _loaded is None:
            try:
                _loaded = load_kernels()
            except NumbaLoadError as exc:
                _loaded = exc
    if isinstance(_loaded, NumbaLoadError):
        raise _loaded
    return _loaded


def numba_load_error() -> NumbaLoadError | None:
    """None when the numba engine loads here, else why not (``.reason``) and what to do (``.fix``)."""
    try:
        _load_numba()
    except NumbaLoadError as exc:
        return exc
    return None


def numba_problem() -> str | None:
    """None when the numba engine loads here, else the one-line fallback warning (why, what to do)."""
    exc = numba_load_error()
    if exc is None:
        return None
    return (
        f"the numba engine cannot be loaded: {exc.reason}; using the numpy engine instead (exact, but slower). "
        f"To fix: {exc.fix}; pass engine='numpy' (--engine numpy) to choose it and silence this warning"
    )


def numba_available() -> bool:
    """True when the numba engine can be loaded on this machine."""
    return numba_problem() is None


def default_engine() -> str:
    """``"numba"`` when it loads here, else ``"numpy"``."""
    return "numba" if numba_available() else "numpy"


def cache_plan() -> CachePlan | None:
    """Where the numba kernels cache their machine code (None when numba cannot be loaded)."""
    try:
        return _load_numba()[1]
    except NumbaLoadError:
        return None


def warn_fallback(stacklevel: int = 2) -> None:
    """Warn (once per process) that the default engine fell back to numpy; no-op when numba loads."""
    global _warned
    problem = numba_problem()
    if problem is None or _warned:
        return
    _warned = True
    warnings.warn(NumbaUnavailableWarning(problem), stacklevel=stacklevel + 1)


def resolve(name: str | None) -> str:
    """The engine that ``name`` runs on this machine: None becomes numba or (warning once) numpy.

    Raises `EngineUnavailableError` for ``"numba"`` when numba cannot be loaded.
    """
    if name is None:
        if numba_available():
            return "numba"
        warn_fallback(stacklevel=4)  # the warning points at the caller of predict()
        return "numpy"
    if name not in ENGINES:
        raise InputError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}")
    if name == "numba":
        try:
            _load_numba()
        except NumbaLoadError as exc:
            raise EngineUnavailableError(
                f"the numba engine cannot be loaded: {exc.reason}. Use the exact (slower) numpy engine with "
                f"engine='numpy' (--engine numpy), or fix numba: {exc.fix}"
            ) from None
    return name


def get_engine(name: str | None) -> ModuleType:
    """Return the engine module for ``name`` (None picks the default, see `resolve`)."""
    loaded = _loaded
    if isinstance(loaded, tuple) and (name is None or name == "numba"):
        return loaded[0]  # numba loaded in this process: what `resolve` gives, without its lock (once per predict)
    name = resolve(name)
    if name == "numba":
        return _load_numba()[0]
    return importlib.import_module(_REFERENCE)


def engine_threads(name: str, threads: int | None) -> int:
    """Threads the engine ``name`` (already resolved) uses for ``threads=`` (None: the engine's default)."""
    if name == "numpy":
        return 1  # the reference engine is a plain loop over steps
    if threads is not None:
        return int(threads)
    import numba

    return int(numba.get_num_threads())


def check_precision(precision: str, name: str) -> None:
    """Raise `PrecisionUnavailableError` when engine ``name`` (resolved) cannot run ``precision`` here.

    The numba engine needs the CPU instructions of the precision's products
    (`rnnjit.kernels.check_precision`); the numpy engine emulates them (slowly).
    """
    if name == "numba" and precision != "float32":
        _load_numba()[0].check_precision(precision)
