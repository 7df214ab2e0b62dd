"""Square transposes of one SIMD vector's worth of lanes, as numba intrinsics: rows in, lanes out, and back.

The tile kernels keep sequences (or rows) along the contiguous axis,
``(features, lanes)``, while the arrays a user hands in and gets back are
``(rows, features)``. Moving a value between the two one at a time costs a
strided scalar load or store per value (about two cycles each on the
reference machine: ~11 us of a 48-row tile of the 262 -> 150 linear layer
whose product takes ~15). These move an L x L block (L = lanes per vector:
16 float32, 8 float64) with L vector loads, log2(L) rounds of L two-vector
shuffles and L vector stores. Pure data movement: no value changes a bit.

- `rows_to_lanes(src, offs, ooff, add, dst, doff, ldd)`: L rows of ``src``,
  row i from ``offs[ooff + i] + add``, L features each, into L rows of ``dst``
  (feature j at ``doff + j * ldd``, row i in lane i);
- `lanes_to_rows(src, soff, lds, dst, offs, ooff, add)`: the way back, L
  feature rows of ``src`` (``soff + j * lds``) into row i of ``dst`` at
  ``offs[ooff + i] + add``.
"""

from __future__ import annotations

from llvmlite import ir
from numba import config, types
from numba.extending import intrinsic

from rnnjit.kernels._simd import _ptr, _vector_lanes


def _transposed(builder, vecs):
    """The L x L transpose of ``vecs`` (L vectors of L): log2(L) rounds of interleaving row i with row i + L/2."""
    L = len(vecs)
    i32 = ir.IntType(32)
    zipped = [k // 2 + (L if k % 2 else 0) for k in range(2 * L)]  # a0 b0 a1 b1 ...
    lo = ir.Constant(ir.VectorType(i32, L), zipped[:L])
    hi = ir.Constant(ir.VectorType(i32, L), zipped[L:])
    for _ in range(L.bit_length() - 1):
        out = [None] * L
        for i in range(L // 2):
            a, b = vecs[i], vecs[i + L // 2]
            out[2 * i] = builder.shuffle_vector(a, b, lo)
            out[2 * i + 1] = builder.shuffle_vector(a, b, hi)
        vecs = out
    return vecs


def _block_codegen(rows_in: bool):
    """The code of `rows_to_lanes` (``rows_in``: rows at offsets in, feature rows out) or `lanes_to_rows`."""

    def codegen(context, builder, signature, args):
        if rows_in:
            (sty, oty, _, _, dty), vty = signature.args[:5], signature.args[4]
            src_, offs_, ooff_, add_, dst_, doff_, ldd_ = args
        else:
            (sty, _, _, dty, oty), vty = signature.args[:5], signature.args[0]
            src_, soff_, lds_, dst_, offs_, ooff_, add_ = args
        L = _vector_lanes(vty.dtype.bitwidth)
        vecty = ir.VectorType(context.get_value_type(vty.dtype), L)
        size = vty.dtype.bitwidth // 8
        i64 = ir.IntType(64)

        def at(arrty, arr, off):
            return builder.bitcast(_ptr(context, builder, arrty, arr, off), vecty.as_pointer())

        def row(arrty, arr, i):  # row i of a block: at offs[ooff + i] + add
            o = builder.load(_ptr(context, builder, oty, offs_, builder.add(ooff_, ir.Constant(i64, i))))
            return at(arrty, arr, builder.add(o, add_))

        def feature(arrty, arr, off, ld, j):  # feature row j of a block: ld apart from off
            return at(arrty, arr, builder.add(off, builder.mul(ld, ir.Constant(i64, j))))

        if rows_in:
            loads = [row(sty, src_, i) for i in range(L)]
            stores = [feature(dty, dst_, doff_, ldd_, j) for j in range(L)]
        else:
            loads = [feature(sty, src_, soff_, lds_, j) for j in range(L)]
            stores = [row(dty, dst_, i) for i in range(L)]
        vecs = _transposed(builder, [builder.load(p, align=size) for p in loads])
        for v, p in zip(vecs, stores):
            builder.store(v, p, align=size)
        return context.get_dummy_value()

    return codegen


@intrinsic
def rows_to_lanes(typingctx, src, offs, ooff, add, dst, doff, ldd):
    """``dst[doff + j * ldd + i] = src[offs[ooff + i] + add + j]`` for i, j < L (lanes per vector of ``dst``)."""
    return types.void(src, offs, ooff, add, dst, doff, ldd), _block_codegen(True)


@intrinsic
def lanes_to_rows(typingctx, src, soff, lds, dst, offs, ooff, add):
    """``dst[offs[ooff + i] + add + j] = src[soff + j * lds + i]`` for i, j < L (lanes per vector of ``src``)."""
    return types.void(src, soff, lds, dst, offs, ooff, add), _block_codegen(False)


if config.DISABLE_JIT:  # pragma: no cover - exercised by the NUMBA_DISABLE_JIT=1 test run
    from rnnjit.kernels.precision import VECTOR_BYTES

    def rows_to_lanes(src, offs, ooff, add, dst, doff, ldd):  # noqa: F811
        L = VECTOR_BYTES // dst.itemsize
        for i in range(L):
            o = int(offs[ooff + i]) + add
            dst[doff + i : doff + i + L * ldd : ldd] = src[o : o + L]

    def lanes_to_rows(src, soff, lds, dst, offs, ooff, add):  # noqa: F811
        L = VECTOR_BYTES // src.itemsize
        for i in range(L):
            o = int(offs[ooff + i]) + add
            dst[o : o + L] = src[soff + i : soff + i + L * lds : lds]
