"""What a precision means to the kernels: one descriptor per precision, in one table.

Every place that decides a SIMD width, an element type or how weights are
packed reads it from here (in jitted code, from the arrays' dtypes through
the same rule, `VECTOR_BYTES`):

- ``dtype``: what everything outside the products computes in: activations,
  states, outputs, and the accumulators of the products;
- ``lanes``: accumulators per SIMD vector, ``VECTOR_BYTES // dtype.itemsize``
  (16 float32, 8 float64): the sequences of one vector of a lane tile;
- ``operand``: the element type the products read (packed weights, and the
  step's input ``z`` when it is not ``dtype``), and ``k_pack`` consecutive
  reduction indices held by one operand element;
- ``product``: the instruction a micro-kernel step emits (`rnnjit.kernels._simd`);
- ``cpu_features``: host features (llvmlite's names) the product needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VECTOR_BYTES = 64
"""One SIMD vector: an AVX-512 register (two AVX2 registers where AVX-512 is missing; LLVM splits it)."""


@dataclass(frozen=True)
class Precision:
    """How one precision computes the gate products (see the module docstring)."""

    name: str
    dtype: np.dtype
    operand: np.dtype
    k_pack: int
    product: str
    cpu_features: tuple[str, ...] = ()

    @property
    def lanes(self) -> int:
        """Accumulators per SIMD vector: the sequences one vector of a lane tile holds."""
        return VECTOR_BYTES // self.dtype.itemsize


PRECISIONS = {
    "float32": Precision("float32", np.dtype(np.float32), np.dtype(np.float32), 1, "fma"),
    "float64": Precision("float64", np.dtype(np.float64), np.dtype(np.float64), 1, "fma"),
}
"""Every precision the kernels run, by name."""


def precision_of(dtype) -> Precision:
    """The full-precision entry for a weights dtype: float64 stays float64, anything else is float32."""
    return PRECISIONS["float64" if np.dtype(dtype) == np.float64 else "float32"]


def lanes(dtype) -> int:
    """Sequences per SIMD vector for the compute ``dtype``: 16 float32 or 8 float64 (one 512-bit register)."""
    return VECTOR_BYTES // np.dtype(dtype).itemsize
