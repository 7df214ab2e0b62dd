"""Compile flags for every kernel, in one place (tests check no other module sets them).

- ``fastmath``: only the flags that keep results bit-reproducible: FMA
  contraction, no NaN/inf/signed-zero special cases (min/max clamps compile to
  single instructions). Not ``arcp``/``afn``/``reassoc``: with them LLVM uses an
  approximate reciprocal in vector loops but an exact division in their scalar
  remainder, so the same input gave results differing in the last bit
  depending on the arrays' alignment.
- ``error_model="numpy"``: a division does not get a zero check, which
  would otherwise block vectorization of the rational tanh.
- ``cache``: compiled machine code is stored next to the sources (or in
  ``NUMBA_CACHE_DIR``), so a second process starts without compiling.
- ``boundscheck=False``: indexes are computed by the kernels, not by users.
- ``nogil``: the worker runs in several Python threads at once.

numba's cache is keyed on the kernel file's own timestamp, not on this file:
after changing a flag here, delete ``rnnjit/kernels/__pycache__/*.nb[ic]``.
"""

from __future__ import annotations

FASTMATH = {"contract", "nnan", "ninf", "nsz"}

JIT = dict(fastmath=FASTMATH, error_model="numpy", cache=True, nogil=True, boundscheck=False)
"""Options for serial kernels and helpers."""

# No ``parallel=True``: threads are started from Python around the nogil
# worker (see rnnjit/kernels/__init__.py for the measured reason).

HELPER_JIT = dict(fastmath=FASTMATH, error_model="numpy", boundscheck=False)
"""Options for `numba.extending.overload` helpers (activations); LLVM inlines them into the kernels."""
