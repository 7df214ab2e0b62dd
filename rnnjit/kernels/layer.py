"""The recurrent kernel: one launch runs one layer in one direction for the whole batch.

Layout ("sequences in lanes"): a tile holds up to ``BT`` sequences (48 for
float32, 24 for float64: three SIMD vectors), and every per-tile buffer is (rows, BT) with the
sequences along the contiguous axis. Per step a thread

1. gathers ``x_t`` of each sequence into ``z = [1; x_t; h; 1]`` (h stays in
   z between steps; the two constant rows carry the biases): a row of the
   (B*T, I) features, or for a model that starts with an embedding the
   table row of the step's token id, so the (B, T, E) embedded batch is
   never materialized,
2. computes all gate pre-activations, biases included, ``g = W @ z`` with the
   register-blocked micro-kernel (`rnnjit.kernels._simd`),
3. applies the activations and the state update in one flat pass over
   (hidden unit, sequence), which LLVM vectorizes (AVX-512: 16 float32 per op),
4. writes the step's output for the sequences still running (or adds it to
   their sum, or keeps their maximum: pooling over time in the same pass), and
   the final state of each sequence at its own last step.

No masks in the vectorized pass: a lane whose sequence has ended keeps
computing on garbage that nobody reads (lanes never mix: every product is per
column of z), until the tile is done.

Tiles come from sequences sorted by length, so a tile stops at its longest
member and steps past every sequence's length are (nearly) never computed.
`run_worker` is one thread's share: it takes the next tile from a shared
atomic counter until none is left (a thread slowed down by another process
takes fewer tiles), with its scratch allocated once. It releases the GIL (``nogil``); `rnnjit.kernels` runs one per thread.
Small batches: ``bt == 1`` (one sequence per tile, the matrix-vector
micro-kernel `mk_rows_grouped`) and ``bt == FEW`` (4 sequences,
`mk_rows_grouped_few`), both reading the grouped weights (``wg``, and
``wrg`` for an LSTM projection). A one-sequence tile of float or bf16
weights projects its input columns `STEP_BLOCK` steps at a time
(`project_steps`) and per step reads only the h columns (``wgh``).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba import types as numba_types
from numba.extending import overload

from rnnjit.kernels._simd import (
    FEW, FEW_VECS, GROUP_ROWS, MR, NV, P_ROWS, fetch_add, mk_lanes, mk_lanes1, mk_lanes2, mk_rows_grouped,
    mk_rows_grouped_few, mk_rows_grouped_few1, mk_rows_grouped_few2, mk_rows_grouped_few3, mk_rows_grouped_from,
    mk_rows_grouped2_from,
)
from rnnjit.kernels._transpose import lanes_to_rows, rows_to_lanes
from rnnjit.kernels.config import HELPER_JIT, JIT
from rnnjit.kernels.pack import to_operand
from rnnjit.kernels.precision import PRECISIONS, VECTOR_BYTES
from rnnjit.kernels.update import LSTM, cell_update
from rnnjit.kernels.wavefront import step_done, wait_for_step

OUT_NONE, OUT_LAST, OUT_ALL, OUT_SUM, OUT_MAX = 0, 1, 2, 3, 4
"""What a layer writes per step: nothing (final state only), the output at each sequence's last
position, every output, or each sequence's sum / maximum over its valid steps (``y`` is then (B, 1, F))."""


PAGE = 4096


@njit(**JIT)
def _skewed_zeros(n, like, skew):
    """Zeros of ``like``'s dtype starting ``skew`` bytes (a multiple of 64) into a 4 KiB page.

    The update loops read the gate blocks (16 KiB apart, so at one page
    offset) while storing c and h at the same index; a load whose low 12
    address bits match an older in-flight store waits for it ("4K aliasing").
    Giving each buffer its own page offset, stores below loads, keeps the
    streams apart whatever the allocator returns; cache-line alignment keeps
    every vector access within one line. (A precaution: it did not change the
    timings measured on the reference machine by more than their noise.)
    Only the ``n`` values returned are zeroed, not the page of slack around
    them (`_skewed_empty`).
    """
    a = _skewed_empty(n, like, skew)
    a[:] = 0
    return a


@njit(**JIT)
def _skewed_empty(n, like, skew):
    """`_skewed_zeros` without the zeros, for buffers whose every value read is written first.

    A worker of a small call (a batch of one's sentence) allocates eight of
    these; zeroing each with its page of slack was ~40 KB of stores per
    call, more than a short sequence's steps write (bench/report_notes.md,
    "A batch of one's Python").
    """
    extra = PAGE // like.itemsize
    buf = np.empty(n + extra, like.dtype)
    off = ((skew - buf.ctypes.data % PAGE) % PAGE) // like.itemsize
    return buf[off : off + n]


def operand_of(a, w, n):
    """The buffer the products read for ``a`` against weights ``w``: ``a`` itself when ``w`` holds ``a``'s
    dtype, else ``n`` zeroed uint32 of packed inputs (`pack_operand` fills them each step)."""
    return a if w.dtype == a.dtype else np.zeros(n, np.uint32)  # the plain-Python twin (NUMBA_DISABLE_JIT=1)


@overload(operand_of, jit_options=HELPER_JIT)
def _operand_of(a, w, n):
    if w.dtype == a.dtype:
        return lambda a, w, n: a
    return lambda a, w, n: np.zeros(n, np.uint32)  # bf16 pairs, or int8 inputs' unsigned quads


@njit(inline="always", **JIT)
def _bf16(bits):
    """float32 bits -> the nearest bfloat16's bits (ties to even), in the low half (`rnnjit.reference.bf16_bits`)."""
    u = np.uint32(bits)
    return (u + 0x7FFF + ((u >> 16) & 1)) >> 16


def pack_operand(a, aq, w, rows, bt, x0, nx, h0, nh, scales):
    """Fill the products' input ``aq`` from ``rows`` rows of ``bt`` floats of ``a`` for weights ``w``;
    nothing when ``aq`` is ``a`` (float weights, `operand_of`).

    bf16 (uint32 ``w``): every row rounded to bfloat16, rows 2k and 2k+1 in
    one uint32 (`rnnjit.reference.bf16_bits`, the same rounding). int8 (int32
    weights, so uint32 ``aq`` of quads): the segments of rows ``[x0, x0+nx)``
    and ``[h0, h0+nh)`` quantized per lane, each to ``floor(v * 127 / max|v| + 0.5) + 128``
    (an unsigned byte), four rows per element, the second segment from the
    next whole element; the lane's scales ``max|v| / 127`` go to ``scales[j * bt + lane]``.
    """
    if w.dtype == np.uint32:  # the plain-Python twins (NUMBA_DISABLE_JIT=1)
        aq[: -(-rows // 2) * bt] = to_operand(a[: rows * bt].reshape(rows, bt).T, PRECISIONS["bf16"]).T.reshape(-1)
    elif w.dtype == np.int32:
        _int8_inputs(a, aq, bt, x0, nx, h0, nh, scales)


@overload(pack_operand, jit_options=HELPER_JIT)
def _pack_operand(a, aq, w, rows, bt, x0, nx, h0, nh, scales):
    if isinstance(w.dtype, numba_types.Float):
        return lambda a, aq, w, rows, bt, x0, nx, h0, nh, scales: None
    if w.dtype == numba_types.int32:
        return lambda a, aq, w, rows, bt, x0, nx, h0, nh, scales: _int8_inputs(a, aq, bt, x0, nx, h0, nh, scales)

    def bf16(a, aq, w, rows, bt, x0, nx, h0, nh, scales):
        au = a.view(np.uint32)
        if bt == 1:  # a loop of its own: the lane loop of one would keep the pair loop from vectorizing
            for k in range(rows // 2):
                aq[k] = _bf16(au[2 * k]) | (_bf16(au[2 * k + 1]) << 16)
            if rows % 2:
                aq[rows // 2] = _bf16(au[rows - 1])
            return
        if bt < 16:  # FEW tiles: plain indexes (a slice per row pair cost ~1 us per step)
            for k in range(rows // 2):
                for l in range(bt):
                    aq[k * bt + l] = _bf16(au[2 * k * bt + l]) | (_bf16(au[(2 * k + 1) * bt + l]) << 16)
            if rows % 2:
                for l in range(bt):
                    aq[(rows // 2) * bt + l] = _bf16(au[(rows - 1) * bt + l])
            return
        # lane tiles: slices, so the lane loop vectorizes (see `rnnjit.kernels.update`); whole pairs in a
        # loop of their own, the odd last row after it (a branch in the loop cost 6x: 14.1 us per step at
        # K=770, 48 lanes, against 2.2)
        for k in range(rows // 2):
            lo = au[2 * k * bt : (2 * k + 1) * bt]
            hi = au[(2 * k + 1) * bt : (2 * k + 2) * bt]
            out = aq[k * bt : (k + 1) * bt]
            for l in range(bt):
                out[l] = _bf16(lo[l]) | (_bf16(hi[l]) << 16)
        if rows % 2:
            lo = au[(rows - 1) * bt : rows * bt]
            out = aq[(rows // 2) * bt : (rows // 2 + 1) * bt]
            for l in range(bt):
                out[l] = _bf16(lo[l])

    return bf16


@njit(inline="always", **JIT)
def _int8_byte(v, inv):
    """One input quantized to an unsigned byte: ``floor(v * inv + 0.5) + 128``, ``inv`` being ``127 / max|v|``."""
    return np.uint32(np.int32(np.floor(v * inv + np.float32(0.5))) + 128)


@njit(**JIT)
def _int8_inputs(a, aq, bt, x0, nx, h0, nh, scales):
    """`pack_operand` for int8: two segments of rows, quantized per lane to unsigned bytes, four rows per uint32.

    One sequence: each segment is contiguous in ``a`` and in the bytes of
    ``aq``, one flat loop each. Lane tiles: each whole quad of rows is
    combined into one uint32 per lane (the lane loop vectorizes; byte stores
    four apart did not: 19 us per step at H=512 in a tile of 48, bench/precision_notes.md);
    a segment's last partial quad and FEW tiles by plain byte indexes.
    """
    ab = aq.view(np.uint8)
    q0 = 0
    for j in range(2):
        r0, n = (x0, nx) if j == 0 else (h0, nh)
        top = scales[j * bt : (j + 1) * bt]
        if bt == 1:
            seg = a[r0 : r0 + n]
            m = np.float32(0)
            for i in range(n):
                m = max(m, abs(seg[i]))
            inv = np.float32(127) / m if m > 0 else np.float32(0)
            out = ab[4 * q0 : 4 * q0 + n]
            for i in range(n):
                out[i] = np.uint8(_int8_byte(seg[i], inv))
            top[0] = np.float32(1) / inv if inv > 0 else np.float32(0)  # the scale max|v| / 127
            q0 += (n + 3) // 4
            continue
        top[:] = 0
        for i in range(n):
            row = a[(r0 + i) * bt : (r0 + i + 1) * bt]
            for l in range(bt):
                top[l] = max(top[l], abs(row[l]))
        for l in range(bt):
            top[l] = np.float32(127) / top[l] if top[l] > 0 else np.float32(0)  # the inverse scale, for now
        whole = n // 4 if bt >= 16 else 0
        for k in range(whole):
            r = (r0 + 4 * k) * bt
            v0, v1 = a[r : r + bt], a[r + bt : r + 2 * bt]
            v2, v3 = a[r + 2 * bt : r + 3 * bt], a[r + 3 * bt : r + 4 * bt]
            out = aq[(q0 + k) * bt : (q0 + k + 1) * bt]
            for l in range(bt):
                inv = top[l]
                out[l] = (_int8_byte(v0[l], inv) | (_int8_byte(v1[l], inv) << 8) | (_int8_byte(v2[l], inv) << 16)
                          | (_int8_byte(v3[l], inv) << 24))  # fmt: skip
        for i in range(4 * whole, n):
            at = (q0 + i // 4) * bt * 4 + i % 4
            for l in range(bt):
                ab[at + 4 * l] = np.uint8(_int8_byte(a[(r0 + i) * bt + l], top[l]))
        for l in range(bt):
            top[l] = np.float32(1) / top[l] if top[l] > 0 else np.float32(0)  # the scale max|v| / 127
        q0 += (n + 3) // 4


@njit(inline="always", **JIT)
def lanes_row(wf, a0, z, zoff, g, goff, bt, n, nvec, lv):
    """One weight panel against the first ``nvec`` vectors of lanes: NV vectors at a time, then two or one.

    Every lane's sum is the same FMA chain in each kernel, so the bits do not
    depend on which kernel ran a lane (the tile width, the batch around it).
    """
    v = 0
    while v < nvec:
        if v + NV <= nvec:
            mk_lanes(wf, a0, z, zoff + v * lv, bt, g, goff + v * lv, bt, n)
            v += NV
        elif v + 2 <= nvec:
            mk_lanes2(wf, a0, z, zoff + v * lv, bt, g, goff + v * lv, bt, n)
            v += 2
        else:
            mk_lanes1(wf, a0, z, zoff + v * lv, bt, g, goff + v * lv, bt, n)
            v += 1


@njit(inline="always", **JIT)
def running_vectors(s, slen, nvec, lv):
    """Vectors of lanes whose first sequence still runs at step ``s`` (lengths are sorted within the tile)."""
    v = 0
    while v < nvec and s < slen[v * lv]:
        v += 1
    return v


@njit(inline="always", **JIT)
def panel_lanes(wf, a0, z, zoff, g, goff, bt, n, s, slen, nvec, lv):
    """One weight panel against every vector of lanes of the tile whose sequences still run at step ``s``.

    Inlined at numba-IR level, so the worker and the team compile the same loop.
    """
    lanes_row(wf, a0, z, zoff, g, goff, bt, n, running_vectors(s, slen, nvec, lv), lv)


L1_SETS = 64
"""Sets of the L1 data cache (64-byte lines): addresses 64 x 64 bytes apart share a set."""

L1_LANES_PER_SET = 12
"""Lanes whose input lines may share an L1 set before gathering a step feature by feature thrashes: the
ways of the L1 data cache (12 on this machine's 48 KiB L1, and on recent Intel cores)."""


@njit(inline="always", **JIT)
def gather_by_lane(tok, seq, slen, nb, reverse, T, I, itemsize, sets):
    """Whether a tile gathers each step's inputs lane by lane rather than feature by feature.

    Feature by feature (for each input column, every lane's value) stores
    whole rows of z and vectorizes, but keeps one source line open per lane:
    when many lanes' rows start in the same L1 set (rows a multiple of 4 KiB
    apart: x of (B, T, I) with T * I * 4 a multiple of 4096), they evict each
    other before their next column is read. Lane by lane (each lane's row read
    contiguously, stored down its column of z) does not care, but its stores
    are scalar. So: lane by lane when more than `L1_LANES_PER_SET` of the
    tile's first-step rows start in one set (``sets``: scratch of
    `L1_SETS`). Measured (one thread, LSTM, tiles of 48): I=256 T=100 (one
    set) 106 us per step feature by feature, 89-92 lane by lane; the other
    way round at I=32 T=100 (8 sets): the whole kernel at H=16, B=4096, two
    threads, 13 ms feature by feature, 21-24 lane by lane.
    """
    sets[:] = 0
    worst = 0
    for l in range(nb):
        t = slen[l] - 1 if reverse else 0
        at = (step_row(tok, seq[l], t, T) * I * itemsize // 64) % L1_SETS
        sets[at] += 1
        worst = max(worst, sets[at])
    return worst > L1_LANES_PER_SET


@njit(inline="always", **JIT)
def step_row(tok, seq, t, T):
    """Row of the layer's input rows holding sequence ``seq``'s step ``t``.

    ``tok`` is (B, T) token ids when the rows are an embedding table, or an
    empty (0, T) array when the rows are the (B*T, I) features themselves.
    """
    return tok[seq, t] if tok.shape[0] > 0 else seq * T + t


@njit(inline="always", **JIT)
def emit(cell, out_mode, s, nb, seq, slen, reverse, j0, j1, cu0, cu1, hsrc, h_at, csrc, c_at, bt, yf, Ty, Y, ycol,
         hn, cn, done):  # fmt: skip
    """Outputs of step ``s`` for units ``[j0, j1)`` of the lanes still running, and final states at their last step.

    ``done``: lanes below it have this step's `OUT_ALL` outputs written already (`emit_blocks`).

    ``hsrc`` holds the new h at ``h_at + j * bt + lane``, ``csrc`` the new c
    (units ``[cu0, cu1)``) at ``c_at + u * bt + lane``. Pooled modes
    accumulate in step order per lane; a maximum starts from step 0's value
    (every sequence has one), so no -inf is needed (the kernels compile with
    ``ninf``). Plain ints and arrays only: a tuple argument cost ~0.5 us per
    step (batch of one, H=128: 284-302 us per sequence against 229-243).
    """
    for l in range(nb):
        if s >= slen[l]:
            continue
        b = seq[l]
        t = slen[l] - 1 - s if reverse else s
        if (out_mode == OUT_ALL and l >= done) or (out_mode == OUT_LAST and t == slen[l] - 1):
            base = (b * Ty + (t if out_mode == OUT_ALL else 0)) * Y + ycol
            for j in range(j0, j1):
                yf[base + j] = hsrc[h_at + j * bt + l]
        elif out_mode == OUT_SUM:
            base = b * Y + ycol
            for j in range(j0, j1):
                yf[base + j] += hsrc[h_at + j * bt + l]
        elif out_mode == OUT_MAX:
            base = b * Y + ycol
            for j in range(j0, j1):
                v = hsrc[h_at + j * bt + l]
                yf[base + j] = v if s == 0 else max(yf[base + j], v)
        if s == slen[l] - 1:
            for j in range(j0, j1):
                hn[b, j] = hsrc[h_at + j * bt + l]
            if cell == LSTM:
                for u in range(cu0, cu1):
                    cn[b, u] = csrc[c_at + u * bt + l]


@njit(inline="always", **JIT)
def emit_blocks(s, nb, seq, slen, reverse, hw, hsrc, h_at, bt, yf, Ty, Y, ycol, lv, yo):
    """Step ``s``'s outputs (`OUT_ALL`, units ``[0, hw)``) of the leading blocks of ``lv`` lanes whose
    sequences all still run, ``lv`` x ``lv`` values at a time (`lanes_to_rows`); returns how many lanes it wrote
    (`emit` writes the rest one value at a time). ``yo``: scratch for each lane's output row."""
    done = 0
    while done + lv <= nb and s < slen[done + lv - 1]:  # lengths fall within a tile: its last lane runs, all do
        done += lv
    for l in range(done):
        t = slen[l] - 1 - s if reverse else s
        yo[l] = (seq[l] * Ty + t) * Y + ycol
    jw = hw // lv * lv
    for l0 in range(0, done, lv):
        for j0 in range(0, jw, lv):
            lanes_to_rows(hsrc, h_at + j0 * bt + l0, bt, yf, yo, l0, j0)
        for l in range(l0, l0 + lv):
            for j in range(jw, hw):
                yf[yo[l] + j] = hsrc[h_at + j * bt + l]
    return done


@njit(inline="always", **JIT)
def few_rows(nv, a, aoff, b, boff, c, coff, n):
    """`mk_rows_grouped_few` on ``nv`` (1 to FEW_VECS) vectors of rows of one group: each row is the same FMA chain
    whatever vectors it is computed with, so the same bits (a team's chunks, `rnnjit.kernels.team`; the last
    group's used rows, `products_into`)."""
    if nv == FEW_VECS:
        mk_rows_grouped_few(a, aoff, b, boff, c, coff, n)
    elif nv == 3:
        mk_rows_grouped_few3(a, aoff, b, boff, c, coff, n)
    elif nv == 2:
        mk_rows_grouped_few2(a, aoff, b, boff, c, coff, n)
    else:
        mk_rows_grouped_few1(a, aoff, b, boff, c, coff, n)


@njit(inline="always", **JIT)
def products_into(wf, wgf, zq, c, n_pan, Kw, bt, k0, nk, kstart, klen, ranges, s, slen, nvec, lv, rows_few):
    """Every panel of the packed weights against reduction elements ``[k0, k0 + nk)`` of ``zq``, into ``c``.

    ``ranges``: lane tiles read each panel's own ``kstart``/``klen`` instead
    (the float and bf16 gate product: GRU's zero blocks skipped), and FEW tiles skip the padding panels
    after the last gate (``klen`` 0; an LSTM of H=100 has 416 rows in 7 groups of 64, so 448 were computed).
    """
    if bt == 1:
        for q in range(n_pan // P_ROWS):
            mk_rows_grouped(wgf, (q * Kw + k0) * GROUP_ROWS, zq, k0, c, q * GROUP_ROWS, nk)
    elif bt == FEW:
        used = n_pan  # the panels that pad the rows to whole groups read nothing (``klen``): not computed
        while ranges and used > 0 and klen[used - 1] == 0:
            used -= 1
        rows = used * MR
        for r0 in range(0, rows, rows_few):  # groups of GROUP_ROWS rows, `rows_few` per call
            q, r = r0 // GROUP_ROWS, r0 % GROUP_ROWS
            few_rows(min(FEW_VECS, -(-(rows - r0) // lv)), wgf, (q * Kw + k0) * GROUP_ROWS + r, zq, k0 * FEW, c,
                     r0 * FEW, nk)  # fmt: skip
    else:
        # One weight panel at a time against every vector of the tile
        # (the panel stays in L1 while the vectors pass), three
        # vectors per call, one at a time for the remainder; vectors
        # whose sequences have all ended are skipped (lengths are
        # sorted within the tile, so the first such one ends the row).
        for p in range(n_pan):
            a0, n = (kstart[p], klen[p]) if ranges else (k0, nk)
            panel_lanes(wf, (p * Kw + a0) * MR, zq, a0 * bt, c, p * MR * bt, bt, n, s, slen, nvec, lv)


def acc_of(w, n):
    """The int32 accumulators of int8 products (int32 ``w``: ``n`` of them; otherwise none)."""
    return np.zeros(n if w.dtype == np.int32 else 0, np.int32)  # the plain-Python twin


@overload(acc_of, jit_options=HELPER_JIT)
def _acc_of(w, n):
    if w.dtype == numba_types.int32:
        return lambda w, n: np.zeros(n, np.int32)
    return lambda w, n: np.zeros(0, np.int32)


@njit(inline="always", **JIT)
def _int8_gates(wf, wgf, zq, g, acc, n_pan, Kw, bt, kstart, klen, s, slen, nvec, lv, rows_few, split, qs, qc, scales):
    """`gate_products` for int8: the x segment, then h from element ``split``, into ``acc``; rescaled into ``g``.

    Lane tiles go panel by panel: both segments of one panel's MR rows into
    the first ``2 * MR * bt`` accumulators, rescaled at once, so the int32
    accumulators stay in L1 instead of a buffer twice the size of ``g``
    (0.8 MB at H=512 in a tile of 48) passing through L2 beside the weights.
    """
    if bt == 1 or bt == FEW:
        n = n_pan * MR * bt
        products_into(wf, wgf, zq, acc[:n], n_pan, Kw, bt, 0, split, kstart, klen, False, s, slen, nvec, lv, rows_few)
        products_into(wf, wgf, zq, acc[n:], n_pan, Kw, bt, split, Kw - split, kstart, klen, False, s, slen, nvec, lv,
                      rows_few)  # fmt: skip
        _int8_rows(g, acc, n_pan * MR, bt, qs, qc, scales)
        return
    m = MR * bt
    for p in range(n_pan):
        panel_lanes(wf, p * Kw * MR, zq, 0, acc, 0, bt, split, s, slen, nvec, lv)
        panel_lanes(wf, (p * Kw + split) * MR, zq, split * bt, acc, m, bt, Kw - split, s, slen, nvec, lv)
        _int8_panel(g, p * m, acc, bt, qs, qc, p * MR, scales)


@njit(inline="always", **JIT)
def _int8_projection(wrf, wrgf, mq, pr, racc, n_pan_r, Hw, bt, kstart, klen, s, slen, nvec, lv, rows_few, rqs, rqc,
                     scales):  # fmt: skip
    """`proj_products` for int8: one segment into ``racc``, rescaled into ``pr``."""
    products_into(wrf, wrgf, mq, racc, n_pan_r, Hw, bt, 0, Hw, kstart, klen, False, s, slen, nvec, lv, rows_few)
    _int8_rows(pr, racc, n_pan_r * MR, bt, rqs, rqc, scales)


@njit(inline="always", **JIT)
def _float_projection(wrf, wrgf, mq, pr, n_pan_r, Hw, bt, s, slen, nvec, lv, rows_few):
    """The float and bf16 projection: the vectors of the tile still running (`proj_products`)."""
    if bt == 1:
        for q in range(n_pan_r // P_ROWS):
            mk_rows_grouped(wrgf, q * Hw * GROUP_ROWS, mq, 0, pr, q * GROUP_ROWS, Hw)
    elif bt == FEW:
        for r0 in range(0, n_pan_r * MR, rows_few):
            q, r = r0 // GROUP_ROWS, r0 % GROUP_ROWS
            mk_rows_grouped_few(wrgf, q * Hw * GROUP_ROWS + r, mq, 0, pr, r0 * FEW, Hw)
    else:
        for p in range(n_pan_r):
            panel_lanes(wrf, p * Hw * MR, mq, 0, pr, p * MR * bt, bt, Hw, s, slen, nvec, lv)


@njit(inline="always", **JIT)
def _float_gates(wf, wgf, zq, g, n_pan, Kw, bt, kstart, klen, s, slen, nvec, lv, rows_few):
    """`gate_products` for float and bf16 weights: one product over every element of ``zq``. (A one-sequence
    tile whose input columns are projected already runs its h product in `run_worker` itself, `h_operands`.)"""
    products_into(wf, wgf, zq, g, n_pan, Kw, bt, 0, Kw, kstart, klen, True, s, slen, nvec, lv, rows_few)


def h_operands(w, zq, g, proj, acc):
    """What the h product of a one-sequence tile with projected inputs reads and writes (`run_worker`):
    ``zq``, into ``g``, continuing ``proj``. int8 weights are never projected (``kx`` 0), but the branch is
    compiled: it gets the int32 accumulators ``acc`` instead, so its product types match."""
    return (zq, g, proj) if w.dtype != np.int32 else (zq, acc, acc)  # the plain-Python twin


@overload(h_operands, jit_options=HELPER_JIT)
def _h_operands(w, zq, g, proj, acc):
    if w.dtype != numba_types.int32:
        return lambda w, zq, g, proj, acc: (zq, g, proj)
    return lambda w, zq, g, proj, acc: (zq, acc, acc)


def gate_products(w, wf, wgf, zq, g, acc, n_pan, Kw, bt, kstart, klen, s, slen, nvec, lv, rows_few, split, qs, qc,
                  scales):  # fmt: skip
    """All gate pre-activations of a step into ``g`` (float): one product (float, bf16, `_float_gates`), or
    for int8 weights (int32 ``w``) `_int8_gates`. Chosen by ``w``'s dtype when compiling, so a float kernel
    holds no int8 code."""
    if w.dtype != np.int32:  # the plain-Python twin (NUMBA_DISABLE_JIT=1)
        _float_gates(wf, wgf, zq, g, n_pan, Kw, bt, kstart, klen, s, slen, nvec, lv, rows_few)
    else:
        _int8_gates(wf, wgf, zq, g, acc, n_pan, Kw, bt, kstart, klen, s, slen, nvec, lv, rows_few, split, qs, qc,
                    scales)  # fmt: skip


@overload(gate_products, inline="always", jit_options=HELPER_JIT)
def _gate_products(w, wf, wgf, zq, g, acc, n_pan, Kw, bt, kstart, klen, s, slen, nvec, lv, rows_few, split, qs, qc,
                   scales):  # fmt: skip
    if w.dtype != numba_types.int32:

        def one(w, wf, wgf, zq, g, acc, n_pan, Kw, bt, kstart, klen, s, slen, nvec, lv, rows_few, split, qs, qc,
                scales):  # fmt: skip
            _float_gates(wf, wgf, zq, g, n_pan, Kw, bt, kstart, klen, s, slen, nvec, lv, rows_few)

        return one

    def two(w, wf, wgf, zq, g, acc, n_pan, Kw, bt, kstart, klen, s, slen, nvec, lv, rows_few, split, qs, qc,
            scales):  # fmt: skip
        _int8_gates(wf, wgf, zq, g, acc, n_pan, Kw, bt, kstart, klen, s, slen, nvec, lv, rows_few, split, qs, qc,
                    scales)  # fmt: skip

    return two


def proj_products(wr, wrf, wrgf, mq, pr, racc, n_pan_r, Hw, bt, kstart, klen, s, slen, nvec, lv, rows_few, rqs,
                  rqc, scales):  # fmt: skip
    """An LSTMP's projection of the step's h (``mq``) into ``pr``: `_float_projection`, or for int8 weights
    `_int8_projection` (chosen when compiling, as `gate_products`)."""
    if wr.dtype == np.int32:  # the plain-Python twin (NUMBA_DISABLE_JIT=1)
        _int8_projection(wrf, wrgf, mq, pr, racc, n_pan_r, Hw, bt, kstart, klen, s, slen, nvec, lv, rows_few, rqs,
                         rqc, scales)  # fmt: skip
    else:
        _float_projection(wrf, wrgf, mq, pr, n_pan_r, Hw, bt, s, slen, nvec, lv, rows_few)


@overload(proj_products, inline="always", jit_options=HELPER_JIT)
def _proj_products(wr, wrf, wrgf, mq, pr, racc, n_pan_r, Hw, bt, kstart, klen, s, slen, nvec, lv, rows_few, rqs, rqc,
                   scales):  # fmt: skip
    if wr.dtype != numba_types.int32:

        def one(wr, wrf, wrgf, mq, pr, racc, n_pan_r, Hw, bt, kstart, klen, s, slen, nvec, lv, rows_few, rqs, rqc,
                scales):  # fmt: skip
            _float_projection(wrf, wrgf, mq, pr, n_pan_r, Hw, bt, s, slen, nvec, lv, rows_few)

        return one

    def rescaled(wr, wrf, wrgf, mq, pr, racc, n_pan_r, Hw, bt, kstart, klen, s, slen, nvec, lv, rows_few, rqs, rqc,
                 scales):  # fmt: skip
        _int8_projection(wrf, wrgf, mq, pr, racc, n_pan_r, Hw, bt, kstart, klen, s, slen, nvec, lv, rows_few, rqs,
                         rqc, scales)  # fmt: skip

    return rescaled


@njit(**JIT)
def _int8_rows(g, acc, rows, bt, qs, qc, scales):
    """int32 accumulators -> float rows: per segment ``(acc - correction) * row scale * lane scale``, plus the bias.

    ``acc`` holds the x segment's accumulators, then the h segment's (none
    for a projection). ``qs``: rows of x scales, h scales, biases; ``qc``: of
    x and h corrections (`rnnjit.kernels.pack.PackedLayer`).
    """
    n = rows * bt
    two = acc.shape[0] >= 2 * n
    sx, sh, bias, cx, ch = qs[0], qs[1], qs[2], qc[0], qc[1]
    if bt == 1:  # one loop over the rows: it vectorizes
        s0, s1 = scales[0], scales[1]
        ax, ah = acc[:n], acc[n : 2 * n]  # slices and int32 differences: 16 rows per vector op
        if two:
            for r in range(rows):
                g[r] = np.float32(np.int32(ax[r] - cx[r])) * (sx[r] * s0) + bias[r] + np.float32(
                    np.int32(ah[r] - ch[r])) * (sh[r] * s1)
        else:
            for r in range(rows):
                g[r] = np.float32(np.int32(ax[r] - cx[r])) * (sx[r] * s0) + bias[r]
        return
    if bt == FEW:  # one flat loop (FEW is a constant: the row and lane of an index are a shift and a mask)
        ah = acc[n:] if two else acc[:n]
        hs = scales[bt:] if two else scales[:bt]
        for i in range(n):
            r, l = i // FEW, i % FEW
            v = np.float32(acc[i] - cx[r]) * (sx[r] * scales[l]) + bias[r]
            g[i] = v + np.float32(ah[i] - ch[r]) * (sh[r] * hs[l]) if two else v
        return
    # lane tiles (an LSTMP's projection: one segment; the gates go by `_int8_panel`)
    s0 = scales[:bt]
    for r in range(rows):
        ax, out = acc[r * bt : (r + 1) * bt], g[r * bt : (r + 1) * bt]
        fx, b, kx = sx[r], bias[r], cx[r]
        for l in range(bt):
            out[l] = np.float32(np.int32(ax[l] - kx)) * (fx * s0[l]) + b


@njit(inline="always", **JIT)
def _int8_panel(g, goff, acc, bt, qs, qc, r0, scales):
    """`_int8_rows` of one panel of a lane tile: gate rows ``[r0, r0 + MR)``, their x accumulators in ``acc``'s
    first ``MR * bt``, h in the next, into ``g`` from ``goff``.

    A row's constants are scalars and the lane scales slices, so the lane
    loop vectorizes (indexing qs, qc and scales inside it kept it scalar:
    74 us per step at H=512 in a tile of 48 against 14, bench/precision_notes.md).
    """
    m = MR * bt
    s0, s1 = scales[:bt], scales[bt : 2 * bt]
    for q in range(MR):
        r = r0 + q
        ax, ah = acc[q * bt : (q + 1) * bt], acc[m + q * bt : m + (q + 1) * bt]
        out = g[goff + q * bt : goff + (q + 1) * bt]
        fx, fh, b, kx, kh = qs[0, r], qs[1, r], qs[2, r], qc[0, r], qc[1, r]
        for l in range(bt):
            out[l] = np.float32(np.int32(ax[l] - kx)) * (fx * s0[l]) + b + np.float32(np.int32(ah[l] - kh)) * (
                fh * s1[l])


PAIR_GROUPS_BYTES = 128 * 1024
"""A one-sequence tile's h weights up to this size run two row groups per call (`mk_rows_grouped2_from`: the
product at the FMA rate, not its latency); larger, one group per call (one stream from L2). Measured, direction
worker, T=40, one thread (bench/report_notes.md, "The tagger's batch of one on one thread"): H=32 (17 KB) and
H=64 (66 KB) faster with pairs, H=128 (264 KB) 82 -> 98 us slower."""

STEP_BLOCK = 48
"""Steps a one-sequence tile projects at once (`project_steps`; a multiple of ``MR``)."""

WAVE_BLOCK = 16
"""The same for an upper layer of a wavefront (`rnnjit.kernels.wavefront`): it waits for these steps of the layer below."""


def project_steps(w, wgf, zx, zxq, proj, xf, tok, b, blen, reverse, s0, ns, T, I, n_pan, Kw, kx, scales):
    """The bias and input columns of every gate row for steps ``s0 .. s0+ns-1`` of sequence ``b``, into
    ``proj[(s - s0) * R + r]`` (R gate rows; ``ns`` at most `STEP_BLOCK`).

    The lane micro-kernel with the roles turned: ``MR`` steps are the panel
    (``zx``, k-major: ``zx[(p * (I+1) + k) * MR + j]`` is column k of step
    ``p * MR + j``, column 0 the constant 1) and the gate rows are the lanes,
    read from the grouped weights (``wg``, k-major over a group's rows), over
    their first ``kx`` operand elements (``[b_ih | W_ih]``: ``I + 1``
    columns for float weights, the whole bf16 pairs among them for bf16).
    The results land step-major, as the row kernel reads them: per step it
    continues each sum over the remaining elements (`mk_rows_grouped_from`),
    the same chain of products as one product over all elements, so the same
    bits, and each input weight is read once per ``MR`` steps instead of once
    per step. ``zxq``: ``zx``'s operand (`operand_of`). Not for int8 weights,
    whose input columns are a product of their own with a per-step scale (the
    wrapper passes ``kx`` = 0).
    """
    R = n_pan * MR
    ZS = (I + 1) * MR  # one panel of steps in zx (and in zxq, whatever its packing)
    n_p = (ns + MR - 1) // MR
    zx[: n_p * ZS] = 0
    for j in range(ns):
        s = s0 + j
        t = blen - 1 - s if reverse else s
        off = step_row(tok, b, t, T) * I
        base = (j // MR) * ZS + j % MR
        zx[base] = 1
        for i in range(I):
            zx[base + (i + 1) * MR] = xf[off + i]
    for p in range(n_p):
        pack_operand(zx[p * ZS : (p + 1) * ZS], zxq[p * ZS : (p + 1) * ZS], w, I + 1, MR, 1, I, I + 1, 0, scales)
    lv = VECTOR_BYTES // proj.itemsize
    nvec = GROUP_ROWS // lv
    for q in range(n_pan // P_ROWS):  # a group's input weights stay in cache while the step panels pass
        a0 = q * Kw * GROUP_ROWS
        for p in range(n_p):
            c0 = p * MR * R + q * GROUP_ROWS
            v = 0
            while v < nvec:
                if v + NV <= nvec:
                    mk_lanes(zxq, p * ZS, wgf, a0 + v * lv, GROUP_ROWS, proj, c0 + v * lv, R, kx)
                    v += NV
                else:
                    mk_lanes1(zxq, p * ZS, wgf, a0 + v * lv, GROUP_ROWS, proj, c0 + v * lv, R, kx)
                    v += 1


@overload(project_steps, jit_options=HELPER_JIT)
def _project_steps(w, wgf, zx, zxq, proj, xf, tok, b, blen, reverse, s0, ns, T, I, n_pan, Kw, kx, scales):
    if w.dtype == numba_types.int32:  # int8: never projected (see the docstring); no lane product compiled for it
        return lambda w, wgf, zx, zxq, proj, xf, tok, b, blen, reverse, s0, ns, T, I, n_pan, Kw, kx, scales: None
    return project_steps


@njit(**JIT)
def project_all(w, wg, x, tok, b, blen, reverse, n_steps, kx, xproj, next_block):
    """`project_steps` for every step of sequence ``b`` into ``xproj`` (step-major, `STEP_BLOCK` steps per
    block, taken from a shared counter ``next_block[0]``): the threads of a team (`rnnjit.kernels.team`) share
    them before it starts. ``xproj`` holds whole blocks. With a second word, ``next_block[1]`` counts the
    blocks written (`rnnjit.kernels.hot` waits for all of them before the team's steps)."""
    T = tok.shape[1]
    I = x.shape[1]
    n_pan, Kw = w.shape[0], w.shape[1]
    R = n_pan * MR
    zx = _skewed_zeros((I + 1) * STEP_BLOCK, x, 0)
    zxq = operand_of(zx, w, (I + 1) * STEP_BLOCK)
    scales = np.zeros(2, x.dtype)
    xf = x.reshape(x.size)
    wgf = wg.reshape(wg.size)
    n_blocks = (n_steps + STEP_BLOCK - 1) // STEP_BLOCK
    while True:
        blk = fetch_add(next_block, 0, 1)
        if blk >= n_blocks:
            break
        s0 = blk * STEP_BLOCK
        project_steps(w, wgf, zx, zxq, xproj[s0 * R : (s0 + STEP_BLOCK) * R], xf, tok, b, blen, reverse, s0,
                      min(STEP_BLOCK, n_steps - s0), T, I, n_pan, Kw, kx, scales)  # fmt: skip
        if next_block.shape[0] > 1:
            fetch_add(next_block, 1, 1)


@njit(**JIT)
def run_worker(
    cell, x, tok, lens, order, tile_ptr, next_tile,
    w, wg, wgh, hgroup, kstart, klen, wr, wrg,
    h0, c0, y, ycol, out_mode, reverse, hn, cn,
    hidden, hp, h_out, proj, bt,
    qs, qc, rqs, rqc, split, kx, xk0, ready, lay, xt, yt, toff,
):  # fmt: skip
    """One thread's share: tiles from the shared counter, through every step, scratch allocated once.

    ``x`` is the layer's input rows: (B*T, I) features, or an embedding table
    (V, I) read through the token ids ``tok`` (B, T) (an empty (0, T) array
    for features; `step_row`). Token ids are checked by the caller.
    ``kx`` > 0 (one-sequence tiles of float and bf16 weights): the first ``kx``
    operand elements of every step are projected first
    (`project_steps`, `STEP_BLOCK` steps at a time), and per step only input columns ``[xk0, I)`` are
    gathered into ``z`` (none for float; the column a bf16 pair shares with h).

    ``ready``: empty, or the step counters of a stack of layers that run at
    once, one tile each (`rnnjit.kernels.wavefront`): step ``s`` first waits
    until layer ``lay - 1`` has written its step ``s`` (``x`` is that
    layer's output; with ``kx`` > 0, every step of the block projected at
    ``s``), and counts its own step once its outputs are written.

    ``xt``, ``yt``: empty, or a stack's outputs between two one-directional
    layers in the tiles' own layout (`tile_steps`): tile k's step s is
    ``h_out * bt`` values at ``(toff[k] + s) * h_out * bt``, (unit, lane) as in
    ``z``. A layer with ``yt`` copies each step's h there (``out_mode`` is
    then `OUT_NONE`: only the final states go to ``hn``/``cn``); the layer
    above, on the same tiles, with ``xt``, copies its step's input rows of
    ``z`` from there (``x`` then has no rows, only its width). Two contiguous
    copies instead of writing every step's h into the (B, T, H) output one
    lane at a time and gathering it back column by column.
    """
    T = tok.shape[1]
    I = x.shape[1]
    K = I + h_out + 2
    HB = h_out * bt  # h rows of z, flat
    H = hidden
    NB = H * bt  # one gate block (real rows only), flat
    GB = hp * bt  # distance between gate blocks in g, flat
    Ty = y.shape[1]
    Y = y.shape[2]
    xf = x.reshape(x.size)
    yf = y.reshape(y.size)
    wf = w.reshape(w.size)
    wgf = wg.reshape(wg.size)
    whf = wgh.reshape(wgh.size)
    wrf = wr.reshape(wr.size)
    wrgf = wrg.reshape(wrg.size)
    n_pan = w.shape[0]
    n_pan_r = wr.shape[0]
    g = _skewed_zeros(n_pan * MR * bt, x, 2048)  # loaded in the update loops
    # c and c' in one array, swapped by offset (`cell_update`): c at page offset 1536, c' at 2560, below and
    # above g's page offset ...
    cw = max(H, 1) * bt
    c2_at = (1024 + (max(cw * x.itemsize - 1024, 0) + PAGE - 1) // PAGE * PAGE) // x.itemsize
    cs = _skewed_zeros(c2_at + cw, x, 1536)
    c_at, cn_at = 0, c2_at
    m = _skewed_zeros(max(H, 1) * bt, x, 1024)
    z = _skewed_zeros(K * bt, x, 0)  # ... and z below m (the h copy reads m, stores z)
    pr = _skewed_zeros(n_pan_r * MR * bt, x, 3072)
    seq = np.zeros(bt, np.int64)
    slen = np.zeros(bt, np.int64)
    xoff = np.zeros(bt, np.int64)
    yo = np.zeros(bt, np.int64)  # each lane's output row (`emit_blocks`)
    sets = np.zeros(L1_SETS, np.int64)
    h_at = (I + 1) * bt  # first h row of z
    Kw = w.shape[1]  # reduction length of the gate product in operand elements (K, or K / k_pack)
    Hw = wr.shape[1]  # the same for the projection
    zq = operand_of(z, w, Kw * bt)  # what the products read: z itself, or z packed (`rnnjit.kernels.precision`)
    mq = operand_of(m, wr, Hw * bt)
    # int8: the x and h segments' int32 accumulators, of every row or (lane tiles) of one panel (`_int8_gates`)
    acc = acc_of(w, 2 * (n_pan if bt <= FEW else 1) * MR * bt)
    racc = acc_of(wr, n_pan_r * MR * bt)
    scales = np.zeros(2 * bt, x.dtype)  # int8: each lane's input scales (`pack_operand`)
    lv = VECTOR_BYTES // x.itemsize  # lanes per SIMD vector
    rows_few = FEW_VECS * lv  # rows per `mk_rows_grouped_few` call
    nvec = bt // lv  # SIMD vectors per tile row (bt > 1 is a multiple of lv)
    zh = z[h_at : h_at + HB]  # the h rows of z
    R = n_pan * MR
    on = kx > 0
    # written before read: `project_steps` zeroes the panels of zx it uses and writes whole panels of xproj
    xproj = _skewed_empty(STEP_BLOCK * R if on else 1, x, 0)
    zx = _skewed_empty((I + 1) * STEP_BLOCK if on else 1, x, 0)
    zxq = operand_of(zx, w, (I + 1) * STEP_BLOCK if on else 1)
    zin = z[bt:h_at]  # the x rows of z
    # a one-sequence tile with projected inputs: its h product's groups (`PackedLayer.wgh`, whose group ``i`` is
    # ``wg``'s group ``hgroup[i]``), two per call while they fit `PAIR_GROUPS_BYTES`, and its operands
    n_g, kh = n_pan // P_ROWS, Kw - kx
    n_two = n_g // 2 * 2 if n_g * kh * GROUP_ROWS * whf.itemsize <= PAIR_GROUPS_BYTES else 0
    hq, hc, hin = h_operands(w, zq, g, xproj, acc)
    # steps projected at once: a layer of a wavefront that waits for the layer below projects fewer, so it
    # follows that layer a few steps behind, not a whole `STEP_BLOCK`
    blk = WAVE_BLOCK if ready.shape[0] > 0 and lay > 0 else STEP_BLOCK
    n_tiles = tile_ptr.shape[0] - 1
    while True:
        tile = fetch_add(next_tile, 0, 1)  # tiles are longest first: dynamic LPT
        if tile >= n_tiles:
            break
        s0 = tile_ptr[tile]
        nb = tile_ptr[tile + 1] - s0
        # -- load the tile: constant rows, states in; unused lanes get length 0
        z[:] = 0
        cs[:] = 0
        for l in range(bt):
            z[l] = 1
            z[(K - 1) * bt + l] = 1
        maxlen = 0
        for l in range(bt):
            seq[l] = 0
            slen[l] = 0
            if l < nb:
                b = order[s0 + l]
                seq[l] = b
                slen[l] = lens[b]
                maxlen = max(maxlen, lens[b])
                for j in range(h_out):
                    z[h_at + j * bt + l] = h0[b, j]
                if cell == LSTM:
                    for u in range(H):
                        cs[c_at + u * bt + l] = c0[b, u]
        by_lane = gather_by_lane(tok, seq, slen, nb, reverse, T, I, xf.itemsize, sets)
        seen = 0  # steps of layer ``lay - 1`` known to be written (`ready`)
        for s in range(maxlen):
            if ready.shape[0] > 0 and lay > 0:
                need = min(s + blk, maxlen) - 1 if on and s % blk == 0 else s
                if need >= seen:
                    seen = wait_for_step(ready, lay - 1, need)
            if on and s % blk == 0:  # the input columns of the next steps at once
                project_steps(w, wgf, zx, zxq, xproj, xf, tok, seq[0], slen[0], reverse, s,
                              min(blk, maxlen - s), T, I, n_pan, Kw, kx, scales)  # fmt: skip
            # -- gather x_t per sequence (reverse: from its own last step; columns [xk0, I) only, the
            # rest are projected already), `gather_by_lane` picks the order. Lanes whose sequence has
            # ended read anything in range (garbage nobody reads, as in every other pass).
            if xt.shape[0] > 0:  # the layer below's h of this tile and step, in z's layout already
                at = (toff[tile] + s) * I * bt
                zx_t = xt[at : at + I * bt]
                for q in range(I * bt):
                    zin[q] = zx_t[q]
            elif by_lane:
                for l in range(bt):
                    if s < slen[l]:
                        t = slen[l] - 1 - s if reverse else s
                        off = step_row(tok, seq[l], t, T) * I
                        for i in range(xk0, I):
                            zin[i * bt + l] = xf[off + i]
            else:
                for l in range(bt):
                    t = slen[l] - 1 - s if reverse else s
                    xoff[l] = step_row(tok, seq[l], t if s < slen[l] else 0, T) * I
                i0 = xk0
                if bt >= lv:  # lane tiles: blocks of lv lanes and lv features by transposes (every lane's row exists)
                    while i0 + lv <= I:
                        for l0 in range(0, bt, lv):
                            rows_to_lanes(xf, xoff, l0, i0, zin, i0 * bt + l0, bt)
                        i0 += lv
                for i in range(i0, I):
                    zrow = zin[i * bt : (i + 1) * bt]  # a view: contiguous stores (see rnnjit/kernels/update.py)
                    for l in range(bt):
                        zrow[l] = xf[xoff[l] + i]
            # -- gate pre-activations with biases, all gates at once
            pack_operand(z, zq, w, K, bt, 1, I, I + 1, h_out, scales)
            if bt == 1 and on:
                # the h columns only, continuing the projected sums (`project_steps`), by the micro-kernels
                # directly: through an inlined helper every array argument is bound anew, a pair of atomic
                # reference-count updates per array and step (bench/report_notes.md, "Reference counts left")
                poff = (s % blk) * R
                for i in range(0, n_two, 2):  # in stored order, two groups at a time (`mk_rows_grouped2_from`)
                    q0, q1 = hgroup[i], hgroup[i + 1]
                    mk_rows_grouped2_from(whf, i * kh * GROUP_ROWS, (i + 1) * kh * GROUP_ROWS, hq, kx, hc,
                                          q0 * GROUP_ROWS, q1 * GROUP_ROWS, kh, hin, poff + q0 * GROUP_ROWS,
                                          poff + q1 * GROUP_ROWS)  # fmt: skip
                for i in range(n_two, n_g):  # the rest one group at a time, one stream
                    q = hgroup[i]
                    mk_rows_grouped_from(whf, i * kh * GROUP_ROWS, hq, kx, hc, q * GROUP_ROWS, kh, hin,
                                         poff + q * GROUP_ROWS)  # fmt: skip
            else:
                gate_products(w, wf, wgf, zq, g, acc, n_pan, Kw, bt, kstart, klen, s, slen, nvec, lv, rows_few, split,
                              qs, qc, scales)  # fmt: skip
            # -- activations and state update: flat, vectorized loops (`cell_update`)
            # The LSTM writes c' to a second buffer (the two swap every step)
            # instead of updating c in place. Measured: with the in-place
            # update the same worker ran 1.2-2.3x slower in a pool thread
            # than in the main thread; with the ping-pong buffers both run
            # alike. (Presumably the CPU's store-to-load prediction on the
            # read-modify-write stream, at thread-specific addresses.) h goes
            # to m, then into z (through the projection for LSTMP): the GRU
            # reads z's old h in the update.
            cell_update(cell, g, GB, 0, NB, cs, c_at, cn_at, m, zh, m)
            if cell == LSTM:
                c_at, cn_at = cn_at, c_at
            if proj > 0:
                pack_operand(m, mq, wr, H, bt, 0, H, H, 0, scales)
                proj_products(wr, wrf, wrgf, mq, pr, racc, n_pan_r, Hw, bt, kstart, klen, s, slen, nvec, lv,
                              rows_few, rqs, rqc, scales)  # fmt: skip
                for q in range(HB):
                    zh[q] = pr[q]
            else:
                for q in range(HB):
                    zh[q] = m[q]
            # -- outputs (or pooled outputs) and final states of the sequences that ran this step
            if yt.shape[0] > 0:
                at = (toff[tile] + s) * HB
                yt_s = yt[at : at + HB]
                for q in range(HB):
                    yt_s[q] = zh[q]
            done = 0
            if out_mode == OUT_ALL and bt >= lv:  # lane tiles: whole blocks of lanes by transposes
                done = emit_blocks(s, nb, seq, slen, reverse, h_out, z, h_at, bt, yf, Ty, Y, ycol, lv, yo)
            emit(cell, out_mode, s, nb, seq, slen, reverse, 0, h_out, 0, H, z, h_at, cs, c_at, bt, yf, Ty, Y, ycol, hn, cn,
                 done)  # fmt: skip
            if ready.shape[0] > 0:
                step_done(ready, lay)
