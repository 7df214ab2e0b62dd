"""Register-blocked matrix-product micro-kernels, written as numba intrinsics.

LLVM's loop vectorizer keeps matmul accumulators in memory when it cannot
prove the arrays do not alias (a straight numba triple loop reaches about a
third of this machine's sgemm peak). These intrinsics emit the micro-kernel
directly: the accumulators are LLVM vector values that live in registers for
the whole reduction, so the product runs near the FMA throughput of the core
whatever BLAS is installed. Vectors of 16 float32 / 8 float64 map to one
AVX-512 register, or two AVX2 registers where AVX-512 is missing.

The lane kernels (`mk_lanes`, `mk_lanes1`: many sequences per tile) read a
weight matrix packed in panels of ``MR`` rows, ``packed[p, k, r] = W[p*MR + r, k]``;
the one- and few-sequence kernels (`mk_rows_grouped`, `mk_rows_grouped_few`)
read groups of ``P_ROWS`` panels interleaved, k-major over 64 rows (see
`rnnjit.kernels.pack`).
"""

from __future__ import annotations

import platform

from llvmlite import ir
from numba import config, types
from numba.core import cgutils
from numba.extending import intrinsic

from rnnjit.kernels.precision import VECTOR_BYTES

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")

MR = 8  # rows per weight panel
NV = 3  # vectors of sequences per tile: 8x3 accumulators + 3 + 1 of 32 registers (measured best of 8x2, 8x3, 4x4, 6x4, 12x2)
P_ROWS = 8  # panels per call in the single-sequence kernel: 8 accumulator chains cover the FMA latency


def _vector_lanes(bitwidth: int) -> int:
    """Accumulators of ``bitwidth`` bits per SIMD vector (`rnnjit.kernels.precision.VECTOR_BYTES`)."""
    return VECTOR_BYTES * 8 // bitwidth


def _ptr(context, builder, arrty, arr, off):
    data = context.make_array(arrty)(context, builder, arr).data
    return builder.gep(data, [off])


_FMA_SUFFIX = {ir.FloatType: "f32", ir.DoubleType: "f64"}


def _fma(builder, vecty):
    """``llvm.fma`` for ``vecty``: the product of the full-precision entries (`rnnjit.kernels.precision`)."""
    name = f"llvm.fma.v{vecty.count}{_FMA_SUFFIX[type(vecty.element)]}"
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(vecty, [vecty] * 3), name)


class _BFloat(ir.types.Type):
    """LLVM's ``bfloat`` (llvmlite has no class for it): the element type of the bf16 dot-product intrinsic."""

    def _to_string(self):
        return "bfloat"

    def __eq__(self, other):
        return isinstance(other, _BFloat)

    def __hash__(self):
        return hash("bfloat")


def _dpbf16(builder, vecty):
    """``acc + x.even * y.even + x.odd * y.odd`` per float32 lane (AVX512_BF16 ``vdpbf16ps``) on i32 pair vectors."""
    count = vecty.count
    bf = ir.VectorType(_BFloat(), 2 * count)
    name = f"llvm.x86.avx512bf16.dpbf16ps.{32 * count}"
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vecty, [vecty, bf, bf]), name)
    return lambda x, y, acc: builder.call(fn, [acc, builder.bitcast(x, bf), builder.bitcast(y, bf)])


def _dpbusd(builder, vecty):
    """``acc + sum of 4 products`` per int32 lane (AVX512_VNNI ``vpdpbusd``): ``y``'s bytes unsigned, ``x``'s signed."""
    count = vecty.count
    i8 = ir.VectorType(ir.IntType(8), 4 * count)
    name = f"llvm.x86.avx512.vpdpbusd.{32 * count}"
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vecty, [vecty, i8, i8]), name)
    return lambda x, y, acc: builder.call(fn, [acc, builder.bitcast(y, i8), builder.bitcast(x, i8)])


def _product(builder, weights, vecty):
    """``mul_add(x, y, acc)``: ``x`` a vector of weights (numba dtype ``weights``), ``y`` of inputs, into ``vecty``.

    Float weights: one FMA per element. uint32 weights hold pairs of bf16
    (`rnnjit.kernels.precision`, ``k_pack`` 2): one ``vdpbf16ps`` adds both
    products of each pair. int32 weights hold four int8 against four unsigned
    input bytes (``k_pack`` 4): ``vpdpbusd`` into int32. The intrinsics are
    emitted only into kernels compiled for such operands, so a float32 model
    never needs the instructions.
    """
    if isinstance(weights, types.Float):
        fma = _fma(builder, vecty)
        return lambda x, y, acc: builder.call(fma, [x, y, acc])
    if weights == types.uint32:
        return _dpbf16(builder, vecty)
    return _dpbusd(builder, vecty)


def _splat(builder, vecty, scalar):
    v = builder.insert_element(ir.Constant(vecty, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
    mask = ir.Constant(ir.VectorType(ir.IntType(32), vecty.count), [0] * vecty.count)
    return builder.shuffle_vector(v, ir.Constant(vecty, ir.Undefined), mask)


def _vload(builder, vecty, ptr, align):
    return builder.load(builder.bitcast(ptr, vecty.as_pointer()), align=align)


def _reduction_loop(builder, n, init, body):
    """Emit ``for k in range(n): accs = body(k, accs)``; returns the final accs (init if n <= 0)."""
    i64 = ir.IntType(64)
    entry = builder.basic_block
    loop = builder.append_basic_block("mk.loop")
    done = builder.append_basic_block("mk.done")
    builder.cbranch(builder.icmp_signed(">", n, ir.Constant(i64, 0)), loop, done)
    builder.position_at_end(loop)
    k = builder.phi(i64)
    k.add_incoming(ir.Constant(i64, 0), entry)
    phis = []
    for v in init:
        p = builder.phi(v.type)
        p.add_incoming(v, entry)
        phis.append(p)
    new = body(k, phis)
    k1 = builder.add(k, ir.Constant(i64, 1))
    latch = builder.basic_block
    k.add_incoming(k1, latch)
    for p, v in zip(phis, new):
        p.add_incoming(v, latch)
    builder.cbranch(builder.icmp_signed("<", k1, n), loop, done)
    builder.position_at_end(done)
    out = []
    for v0, v1 in zip(init, new):
        p = builder.phi(v0.type)
        p.add_incoming(v0, entry)
        p.add_incoming(v1, latch)
        out.append(p)
    return out


def _prologue(context, builder, aty, cty, width, ptrs):
    """What every micro-kernel opens with: the accumulators' vector type (``width`` elements of the
    output ``cty``'s dtype), the operands' vector type (``width`` elements of ``aty``'s dtype), the
    alignment of both (operand and accumulator elements have one size), the product (`_product`),
    the operands' element pointers (``ptrs``: (type, array, offset) each) and a zero vector."""
    vecty = ir.VectorType(context.get_value_type(cty.dtype), width)
    opty = ir.VectorType(context.get_value_type(aty.dtype), width)
    pointers = [_ptr(context, builder, ty, arr, off) for ty, arr, off in ptrs]
    return vecty, opty, cty.dtype.bitwidth // 8, _product(builder, aty.dtype, vecty), pointers, ir.Constant(vecty, None)


def _lanes_kernel(nv: int, doc: str):
    """The MR x (nv * lanes) micro-kernel as an intrinsic (one per width: the vector count is unrolled)."""

    def kernel(typingctx, a, aoff, b, boff, ldb, c, coff, ldc, n):
        return types.void(a, aoff, b, boff, ldb, c, coff, ldc, n), _lanes_codegen(nv)

    kernel.__name__ = kernel.__qualname__ = f"mk_lanes_{nv}"
    kernel.__doc__ = doc
    return intrinsic(kernel)


def _lanes_codegen(NV):

    def codegen(context, builder, signature, args):
        aty, _, bty, _, _, cty, _, _, _ = signature.args
        a_, aoff_, b_, boff_, ldb_, c_, coff_, ldc_, n_ = args
        L = _vector_lanes(cty.dtype.bitwidth)
        vecty, opty, align, mul_add, (pa, pb, pc), zero = _prologue(
            context, builder, aty, cty, L, [(aty, a_, aoff_), (bty, b_, boff_), (cty, c_, coff_)]
        )
        i64 = ir.IntType(64)

        def body(k, accs):
            bk = builder.gep(pb, [builder.mul(k, ldb_)])
            bv = [_vload(builder, opty, builder.gep(bk, [ir.Constant(i64, v * L)]), align) for v in range(NV)]
            ak = builder.gep(pa, [builder.mul(k, ir.Constant(i64, MR))])
            out = list(accs)
            for q in range(MR):
                s = _splat(builder, opty, builder.load(builder.gep(ak, [ir.Constant(i64, q)])))
                for v in range(NV):
                    out[q * NV + v] = mul_add(s, bv[v], accs[q * NV + v])
            return out

        res = _reduction_loop(builder, n_, [zero] * (MR * NV), body)
        for q in range(MR):
            row = builder.gep(pc, [builder.mul(ir.Constant(i64, q), ldc_)])
            for v in range(NV):
                p = builder.bitcast(builder.gep(row, [ir.Constant(i64, v * L)]), vecty.as_pointer())
                builder.store(res[q * NV + v], p, align=align)
        return context.get_dummy_value()

    return codegen


mk_lanes = _lanes_kernel(NV, """C[r, l] = sum_k A[r, k] * B[k, l] for MR rows r and NV*lanes columns l.

``mk_lanes(a, aoff, b, boff, ldb, c, coff, ldc, n)``: ``a`` packed panel data
starting at ``aoff`` (k-major, MR values per k); ``b`` rows of ``ldb`` lane
values from ``boff``; ``c`` rows of ``ldc`` from ``coff``; ``n`` the
reduction length.
""")
mk_lanes2 = _lanes_kernel(2, "`mk_lanes` for two vectors of lanes: a tile's remainder of two vectors.")
mk_lanes1 = _lanes_kernel(1, "`mk_lanes` for one vector of lanes (16 float32 / 8 float64): a tile's remainder.")


def _rows_grouped_codegen(from_init: bool):
    """`mk_rows_grouped`'s code; ``from_init``: the accumulators start from ``init[ioff:]`` instead of zero."""

    def codegen(context, builder, signature, args):
        aty, _, bty, _, cty = signature.args[:5]
        a_, aoff_, b_, boff_, c_, coff_, n_ = args[:7]
        vecty, opty, align, mul_add, (pa, pb, pc), zero = _prologue(
            context, builder, aty, cty, MR, [(aty, a_, aoff_), (bty, b_, boff_), (cty, c_, coff_)]
        )
        i64 = ir.IntType(64)
        init = [zero] * P_ROWS
        if from_init:
            pi = _ptr(context, builder, signature.args[7], args[7], args[8])
            init = [_vload(builder, vecty, builder.gep(pi, [ir.Constant(i64, p * MR)]), align) for p in range(P_ROWS)]

        def body(k, accs):
            s = _splat(builder, opty, builder.load(builder.gep(pb, [k])))
            ak = builder.gep(pa, [builder.mul(k, ir.Constant(i64, MR * P_ROWS))])
            return [
                mul_add(_vload(builder, opty, builder.gep(ak, [ir.Constant(i64, p * MR)]), align), s, accs[p])
                for p in range(P_ROWS)
            ]

        res = _reduction_loop(builder, n_, init, body)
        for p in range(P_ROWS):
            ptr = builder.bitcast(builder.gep(pc, [ir.Constant(i64, p * MR)]), vecty.as_pointer())
            builder.store(res[p], ptr, align=align)
        return context.get_dummy_value()

    return codegen


@intrinsic
def mk_rows_grouped(typingctx, a, aoff, b, boff, c, coff, n):
    """c[coff + p*MR + r] = sum_k A_p[r, k] * b[boff + k] for a group of P_ROWS panels stored interleaved.

    The one-sequence kernel of the tile paths: the group's data is k-major
    over all its P_ROWS * MR rows (``a[aoff + (k*P_ROWS + p)*MR + r]``, see
    `rnnjit.kernels.pack.group_panels`), one contiguous stream instead of
    P_ROWS streams 8 rows apart. Measured (H=128 LSTM, weights from L2):
    1.73 us per product, 192 GB/s, against 2.56 us, 129 GB/s, for the same
    kernel over the 8 separate panel streams (removed).
    """
    return types.void(a, aoff, b, boff, c, coff, n), _rows_grouped_codegen(False)


@intrinsic
def mk_rows_grouped_from(typingctx, a, aoff, b, boff, c, coff, n, init, ioff):
    """`mk_rows_grouped` continuing the sums in ``init[ioff : ioff + P_ROWS*MR]`` (partial sums over earlier k).

    Each output is then the same chain of products as one `mk_rows_grouped`
    over all k whose first terms were summed elsewhere in the same order
    (every step's input projection at once, `rnnjit.kernels.layer.project_steps`):
    the same bits. ``init`` holds accumulators (``c``'s dtype), whatever the operands.
    """
    return types.void(a, aoff, b, boff, c, coff, n, init, ioff), _rows_grouped_codegen(True)


@intrinsic
def mk_rows_grouped2_from(typingctx, a, aoff0, aoff1, b, boff, c, coff0, coff1, n, init, ioff0, ioff1):
    """Two `mk_rows_grouped_from` at once: groups at ``aoff0`` and ``aoff1`` into ``c[coff0:]`` and ``c[coff1:]``.

    Full-width vectors (`rnnjit.kernels.precision.VECTOR_BYTES`) over the
    2 x 64 rows, 8 accumulators for float32, one loop over k: a lane's
    output is the same chain as in `mk_rows_grouped_from` (the same
    products into the same accumulator, from ``init``), so the same bits.
    `mk_rows_grouped`'s 8-row vectors fill half an AVX-512 register for
    float32: one group per call runs 8 FMAs per k at the FMA latency, two
    groups at full width run 8 FMAs per k for twice the rows (measured:
    bench/report_notes.md, "The tagger's batch of one on one thread").
    """
    sig = types.void(a, aoff0, aoff1, b, boff, c, coff0, coff1, n, init, ioff0, ioff1)

    def codegen(context, builder, signature, args):
        aty, _, _, bty, _, cty = signature.args[:6]
        a_, aoff0_, aoff1_, b_, boff_, c_, coff0_, coff1_, n_, init_, ioff0_, ioff1_ = args
        L = _vector_lanes(cty.dtype.bitwidth)
        RV = GROUP_ROWS // L
        vecty, opty, align, mul_add, (pa0, pa1, pb, pc0, pc1, pi0, pi1), zero = _prologue(
            context, builder, aty, cty, L,
            [(aty, a_, aoff0_), (aty, a_, aoff1_), (bty, b_, boff_), (cty, c_, coff0_), (cty, c_, coff1_),
             (signature.args[9], init_, ioff0_), (signature.args[9], init_, ioff1_)],
        )
        i64 = ir.IntType(64)
        init = [_vload(builder, vecty, builder.gep(pi, [ir.Constant(i64, v * L)]), align)
                for pi in (pi0, pi1) for v in range(RV)]

        def body(k, accs):
            s = _splat(builder, opty, builder.load(builder.gep(pb, [k])))
            out = []
            for g, pa in enumerate((pa0, pa1)):
                ak = builder.gep(pa, [builder.mul(k, ir.Constant(i64, GROUP_ROWS))])
                for v in range(RV):
                    w = _vload(builder, opty, builder.gep(ak, [ir.Constant(i64, v * L)]), align)
                    out.append(mul_add(w, s, accs[g * RV + v]))
            return out

        res = _reduction_loop(builder, n_, init, body)
        for g, pc in enumerate((pc0, pc1)):
            for v in range(RV):
                ptr = builder.bitcast(builder.gep(pc, [ir.Constant(i64, v * L)]), vecty.as_pointer())
                builder.store(res[g * RV + v], ptr, align=align)
        return context.get_dummy_value()

    return sig, codegen


FEW = 4  # sequences per tile in the few-sequence kernel (`mk_rows_grouped_few`)
GROUP_ROWS = P_ROWS * MR  # rows of one group of the grouped layout (`rnnjit.kernels.pack.group_panels`)
FEW_VECS = 4  # SIMD vectors of rows per `mk_rows_grouped_few` call: 64 float32 rows (a whole group), 32 float64


def _few_codegen(RV: int):
    """`mk_rows_grouped_few`'s code for ``RV`` vectors of rows (unrolled; each row's sum is the same chain of
    FMAs whatever ``RV``, so a call on fewer vectors gives those rows the same bits)."""

    def codegen(context, builder, signature, args):
        aty, _, bty, _, cty, _, _ = signature.args
        a_, aoff_, b_, boff_, c_, coff_, n_ = args
        L = _vector_lanes(cty.dtype.bitwidth)
        vecty, opty, align, mul_add, (pa, pb, pc), zero = _prologue(
            context, builder, aty, cty, L, [(aty, a_, aoff_), (bty, b_, boff_), (cty, c_, coff_)]
        )
        i64, i32 = ir.IntType(64), ir.IntType(32)

        def body(k, accs):
            ak = builder.gep(pa, [builder.mul(k, ir.Constant(i64, GROUP_ROWS))])
            wv = [_vload(builder, opty, builder.gep(ak, [ir.Constant(i64, v * L)]), align) for v in range(RV)]
            bk = builder.gep(pb, [builder.mul(k, ir.Constant(i64, FEW))])
            out = list(accs)
            for s in range(FEW):
                sp = _splat(builder, opty, builder.load(builder.gep(bk, [ir.Constant(i64, s)])))
                for v in range(RV):
                    out[v * FEW + s] = mul_add(wv[v], sp, accs[v * FEW + s])
            return out

        res = _reduction_loop(builder, n_, [zero] * (RV * FEW), body)
        wide = ir.VectorType(vecty.element, 2 * L)
        for v in range(RV):
            # rows v*L .. v*L+L-1 of the FEW sequences -> FEW vectors of L/FEW rows x FEW sequences
            lo = builder.shuffle_vector(res[v * FEW], res[v * FEW + 1], ir.Constant(ir.VectorType(i32, 2 * L), list(range(2 * L))))
            hi = builder.shuffle_vector(res[v * FEW + 2], res[v * FEW + 3], ir.Constant(ir.VectorType(i32, 2 * L), list(range(2 * L))))
            assert lo.type == wide
            for u in range(FEW):
                mask = [s * L + u * (L // FEW) + i for i in range(L // FEW) for s in range(FEW)]
                vec = builder.shuffle_vector(lo, hi, ir.Constant(ir.VectorType(i32, L), mask))
                ptr = builder.gep(pc, [ir.Constant(i64, v * L * FEW + u * L)])
                builder.store(vec, builder.bitcast(ptr, vecty.as_pointer()), align=align)
        return context.get_dummy_value()

    return codegen


@intrinsic
def mk_rows_grouped_few(typingctx, a, aoff, b, boff, c, coff, n):
    """c[coff + j*FEW + s] = sum_k A[j, k] * b[boff + k*FEW + s] for FEW_VECS vectors of rows j of a group, FEW sequences s.

    The few-sequence kernel on the grouped layout (``a[aoff + k*GROUP_ROWS + j]``,
    k-major, rows contiguous): per k, four full-width weight vectors (the
    rows) each serve FEW sequences from broadcasts of ``b``, 16 accumulators.
    (Its predecessor ran its vectors over one panel's 8 rows, half an AVX-512
    register for float32, and cost twice as much.) The results are
    interleaved in registers into the (row, sequence) layout of the FEW tile
    and stored as full vectors.
    """
    return types.void(a, aoff, b, boff, c, coff, n), _few_codegen(FEW_VECS)


@intrinsic
def mk_rows_grouped_few1(typingctx, a, aoff, b, boff, c, coff, n):
    """`mk_rows_grouped_few` on one vector of rows (the same bits for those rows): a team chunk's rows that do not
    fill a call of FEW_VECS vectors (`rnnjit.kernels.team`)."""
    return types.void(a, aoff, b, boff, c, coff, n), _few_codegen(1)


@intrinsic
def mk_rows_grouped_few2(typingctx, a, aoff, b, boff, c, coff, n):
    """`mk_rows_grouped_few` on two vectors of rows (see `mk_rows_grouped_few1`)."""
    return types.void(a, aoff, b, boff, c, coff, n), _few_codegen(2)


@intrinsic
def mk_rows_grouped_few3(typingctx, a, aoff, b, boff, c, coff, n):
    """`mk_rows_grouped_few` on three vectors of rows (see `mk_rows_grouped_few1`)."""
    return types.void(a, aoff, b, boff, c, coff, n), _few_codegen(3)


@intrinsic
def fetch_add(typingctx, arr, idx, val):
    """Atomically ``old = arr[idx]; arr[idx] += val; return old`` (int64 array), for work sharing."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None
    sig = types.int64(arr, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        arr_, idx_, val_ = args
        ptr = _ptr(context, builder, signature.args[0], arr_, idx_)
        return builder.atomic_rmw("add", ptr, val_, "seq_cst")

    return sig, codegen


@intrinsic
def atomic_load(typingctx, arr, idx):
    """``arr[idx]`` read as one atomic (acquire) load (int64 array): a spin-wait that does not take the line."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None
    sig = types.int64(arr, types.intp)

    def codegen(context, builder, signature, args):
        arr_, idx_ = args
        ptr = _ptr(context, builder, signature.args[0], arr_, idx_)
        return builder.load_atomic(ptr, "acquire", 8)

    return sig, codegen


@intrinsic
def atomic_store(typingctx, arr, idx, val):
    """``arr[idx] = val`` as one sequentially consistent store (int64 array)."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None
    sig = types.void(arr, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        arr_, idx_, val_ = args
        builder.store_atomic(val_, _ptr(context, builder, signature.args[0], arr_, idx_), "seq_cst", 8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def cpu_relax(typingctx):
    """The x86 ``pause`` hint inside a spin-wait (frees the pipeline, saves power; a no-op elsewhere)."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        if _X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()

    return sig, codegen


if config.DISABLE_JIT:  # pragma: no cover - exercised by the NUMBA_DISABLE_JIT=1 test run
    # Plain-Python equivalents, so the kernel logic runs (and is covered) without numba.
    import numpy as _np

    def _k_major(x, weights):
        """(n, m) operands -> (n * k_pack, m): bf16 pairs unpacked to float32 (uint32 weights: both operands),
        int8 quads to int64 (int32 weights: signed; their inputs: unsigned bytes)."""
        if weights == _np.uint32:
            u = _np.ascontiguousarray(x, _np.uint32)
            pair = _np.stack([(u << 16).view(_np.float32), (u & 0xFFFF0000).view(_np.float32)], axis=1)
            return pair.reshape(2 * x.shape[0], *x.shape[1:])
        if weights == _np.int32:
            b = _np.ascontiguousarray(x).view(_np.int8 if x.dtype == _np.int32 else _np.uint8)
            quad = b.reshape(*x.shape, 4).astype(_np.int64)
            return _np.moveaxis(quad, -1, 1).reshape(4 * x.shape[0], *x.shape[1:])
        return x

    def _mk_lanes(nv, a, aoff, b, boff, ldb, c, coff, ldc, n):
        width = nv * (VECTOR_BYTES // c.dtype.itemsize)
        A = a[aoff : aoff + n * MR].reshape(n, MR) if n > 0 else _np.zeros((0, MR), c.dtype)
        rows = _np.stack([b[boff + k * ldb : boff + k * ldb + width] for k in range(n)]) if n > 0 else None
        out = _k_major(A, a.dtype).T @ _k_major(rows, a.dtype) if n > 0 else _np.zeros((MR, width), c.dtype)
        for q in range(MR):
            c[coff + q * ldc : coff + q * ldc + width] = out[q]

    def mk_lanes(*args):  # noqa: F811
        _mk_lanes(NV, *args)

    def mk_lanes2(*args):  # noqa: F811
        _mk_lanes(2, *args)

    def mk_lanes1(*args):  # noqa: F811
        _mk_lanes(1, *args)

    def cpu_relax():  # noqa: F811
        pass

    def atomic_load(arr, idx):  # noqa: F811
        return int(arr[idx])

    def atomic_store(arr, idx, val):  # noqa: F811
        arr[idx] = val

    def fetch_add(arr, idx, val):  # noqa: F811
        old = int(arr[idx])
        arr[idx] += val
        return old

    def _few(nv, a, aoff, b, boff, c, coff, n):
        rows = nv * (VECTOR_BYTES // c.dtype.itemsize)
        A = _np.stack([a[aoff + k * GROUP_ROWS : aoff + k * GROUP_ROWS + rows] for k in range(n)])
        Z = b[boff : boff + n * FEW].reshape(n, FEW)
        c[coff : coff + rows * FEW] = (_k_major(A, a.dtype).T @ _k_major(Z, a.dtype)).reshape(-1)

    def mk_rows_grouped_few(*args):  # noqa: F811
        _few(FEW_VECS, *args)

    def mk_rows_grouped_few1(*args):  # noqa: F811
        _few(1, *args)

    def mk_rows_grouped_few2(*args):  # noqa: F811
        _few(2, *args)

    def mk_rows_grouped_few3(*args):  # noqa: F811
        _few(3, *args)

    def mk_rows_grouped(a, aoff, b, boff, c, coff, n):  # noqa: F811
        A = a[aoff : aoff + n * P_ROWS * MR].reshape(n, P_ROWS * MR)
        c[coff : coff + P_ROWS * MR] = _k_major(A, a.dtype).T @ _k_major(b[boff : boff + n].reshape(n, 1), a.dtype)[:, 0]

    def mk_rows_grouped_from(a, aoff, b, boff, c, coff, n, init, ioff):  # noqa: F811
        mk_rows_grouped(a, aoff, b, boff, c, coff, n)
        c[coff : coff + P_ROWS * MR] += init[ioff : ioff + P_ROWS * MR]

    def mk_rows_grouped2_from(a, aoff0, aoff1, b, boff, c, coff0, coff1, n, init, ioff0, ioff1):  # noqa: F811
        mk_rows_grouped_from(a, aoff0, b, boff, c, coff0, n, init, ioff0)
        mk_rows_grouped_from(a, aoff1, b, boff, c, coff1, n, init, ioff1)
