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


def _at(context, builder, arrty, arr, off, vecty):
    return builder.bitcast(_ptr(context, builder, arrty, arr, off), vecty.as_pointer())


@intrinsic
def rows_to_lanes(typingctx, src, offs, ooff, add, dst, doff, ldd):
    """``dst[doff + j * ldd + i] = src[offs[ooff + i] + add + j]`` for i, j < L (lanes per vector of ``dst``)."""
    sig = types.void(src, offs, ooff, add, dst, doff, ldd)

    def codegen(context, builder, signature, args):
        sty, oty, _, _, dty = signature.args[:5]
        src_, offs_, ooff_, add_, dst_, doff_, ldd_ = args
        L = _vector_lanes(dty.dtype.bitwidth)
        vecty = ir.VectorType(context.get_value_type(dty.dtype), L)
        size = dty.dtype.bitwidth // 8
        i64 = ir.IntType(64)
        rows = []
        for i in range(L):
            o = builder.load(_ptr(context, builder, oty, offs_, builder.add(ooff_, ir.Constant(i64, i))))
            rows.append(builder.load(_at(context, builder, sty, src_, builder.add(o, add_), vecty), align=size))
        for j, v in enumerate(_transposed(builder, rows)):
            at = builder.add(doff_, builder.mul(ldd_, ir.Constant(i64, j)))
            builder.store(v, _at(context, builder, dty, dst_, at, vecty), align=size)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def lanes_to_rows(typingctx, src, soff, lds, dst, offs, ooff, add):
    """``dst[offs[ooff + i] + add + j] = src[soff + j * lds + i]`` for i, j < L (lanes per vector of ``src``)."""
    sig = types.void(src, soff, lds, dst, offs, ooff, add)

    def codegen(context, builder, signature, args):
        sty, _, _, dty, oty = signature.args[:5]
        src_, soff_, lds_, dst_, offs_, ooff_, add_ = args
        L = _vector_lanes(sty.dtype.bitwidth)
        vecty = ir.VectorType(context.get_value_type(sty.dtype), L)
        size = sty.dtype.bitwidth // 8
        i64 = ir.IntType(64)
        feats = []
        for j in range(L):
            at = builder.add(soff_, builder.mul(lds_, ir.Constant(i64, j)))
            feats.append(builder.load(_at(context, builder, sty, src_, at, vecty), align=size))
        for i, v in enumerate(_transposed(builder, feats)):
            o = builder.load(_ptr(context, builder, oty, offs_, builder.add(ooff_, ir.Constant(i64, i))))
            builder.store(v, _at(context, builder, dty, dst_, builder.add(o, add_), vecty), align=size)
        return context.get_dummy_value()

    return sig, codegen


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
