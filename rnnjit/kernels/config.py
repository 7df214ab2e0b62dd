"""Compile flags for every kernel, in one place (tests check no other module sets them).

- ``fastmath``: lets LLVM reassociate and contract to FMA, needed for the
  activation loops to vectorize.
- ``error_model="numpy"``: a division does not get a zero check, which
  would otherwise block vectorization of the rational tanh.
- ``cache``: compiled machine code is stored next to the sources (or in
  ``NUMBA_CACHE_DIR``), so a second process starts without compiling.
- ``boundscheck=False``: indexes are computed by the kernels, not by users.
- ``nogil``: the worker runs in several Python threads at once.
"""

from __future__ import annotations

JIT = dict(fastmath=True, error_model="numpy", cache=True, nogil=True, boundscheck=False)
"""Options for serial kernels and helpers."""

# No ``parallel=True``: threads are started from Python around the nogil
# worker (see rnnjit/kernels/__init__.py for the measured reason).

HELPER_JIT = dict(fastmath=True, error_model="numpy", boundscheck=False)
"""Options for `numba.extending.overload` helpers (activations); LLVM inlines them into the kernels."""
