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
    "bf16": Precision("bf16", np.dtype(np.float32), np.dtype(np.uint32), 2, "dpbf16", ("avx512bf16", "avx512vl")),
    "int8": Precision("int8", np.dtype(np.float32), np.dtype(np.int32), 4, "dpbusd", ("avx512vnni", "avx512vl")),
}
"""Every precision the kernels run, by name.

bf16: weights and each step's input ``z`` rounded to bfloat16 (round to
nearest even), two consecutive reduction indices per uint32 (the even one in
the low half), products by ``vdpbf16ps`` into float32 accumulators; the
one-sequence kernel's 8-row vectors use its 256-bit form (AVX512_VL).

int8: weights symmetric per row, the x and h columns of a row with a scale
each, four per int32 (`rnnjit.kernels.pack.int8_rows`); each step's x and h
quantized per sequence (a scale each, `max|v| / 127`), offset by 128 to
unsigned bytes; products by ``vpdpbusd`` into int32, then rescaled to float32
with the biases added in float32 (`rnnjit.kernels.layer.gate_products`).
"""


def precision_of(dtype) -> Precision:
    """The full-precision entry for a weights dtype: float64 stays float64, anything else is float32."""
    return PRECISIONS["float64" if np.dtype(dtype) == np.float64 else "float32"]


def target_features() -> set[str]:
    """CPU features numba compiles for: ``NUMBA_CPU_FEATURES`` when set, else the host's (as numba reads them)."""
    from numba import config
    from numba.core.codegen import get_host_cpu_features

    flat = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    return {f[1:] for f in flat.split(",") if f.startswith("+")}


def target_cpu() -> str:
    """The CPU name numba compiles for (``NUMBA_CPU_NAME`` or the host's), for messages."""
    from llvmlite import binding
    from numba import config

    return config.CPU_NAME or binding.get_host_cpu_name()


def missing_features(precision: Precision) -> list[str]:
    """The CPU features ``precision``'s product needs that the compile target lacks (empty: it can run)."""
    if not precision.cpu_features:
        return []
    have = target_features()
    return [f for f in precision.cpu_features if f not in have]


def lanes(dtype) -> int:
    """Sequences per SIMD vector for the compute ``dtype``: 16 float32 or 8 float64 (one 512-bit register)."""
    return VECTOR_BYTES // np.dtype(dtype).itemsize
