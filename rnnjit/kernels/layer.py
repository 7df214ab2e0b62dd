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
``wrg`` for an LSTM projection).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rnnjit.kernels._simd import (
    FEW, FEW_VECS, GROUP_ROWS, MR, NV, P_ROWS, fetch_add, mk_lanes, mk_lanes1, mk_rows_grouped, mk_rows_grouped_few,
)
from rnnjit.kernels.config import JIT
from rnnjit.kernels.precision import VECTOR_BYTES
from rnnjit.kernels.update import LSTM, cell_update

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
    """
    extra = PAGE // like.itemsize
    buf = np.zeros(n + extra, like.dtype)
    off = ((skew - buf.ctypes.data % PAGE) % PAGE) // like.itemsize
    return buf[off : off + n]


@njit(inline="always", **JIT)
def panel_lanes(wf, a0, z, zoff, g, goff, bt, n, s, slen, nvec, lv):
    """One weight panel against every vector of lanes of the tile whose sequences still run at step ``s``.

    Lanes are sorted by length within the tile, so the first vector whose
    first sequence has ended ends the row; NV vectors at a time, then one.
    Inlined at numba-IR level, so the worker and the team compile the same loop.
    """
    v = 0
    while v < nvec and s < slen[v * lv]:
        if v + NV <= nvec:
            mk_lanes(wf, a0, z, zoff + v * lv, bt, g, goff + v * lv, bt, n)
            v += NV
        else:
            mk_lanes1(wf, a0, z, zoff + v * lv, bt, g, goff + v * lv, bt, n)
            v += 1


@njit(inline="always", **JIT)
def step_row(tok, seq, t, T):
    """Row of the layer's input rows holding sequence ``seq``'s step ``t``.

    ``tok`` is (B, T) token ids when the rows are an embedding table, or an
    empty (0, T) array when the rows are the (B*T, I) features themselves.
    """
    return tok[seq, t] if tok.shape[0] > 0 else seq * T + t


@njit(inline="always", **JIT)
def emit(cell, out_mode, s, nb, seq, slen, reverse, j0, j1, cu0, cu1, hsrc, h_at, csrc, c_at, bt, yf, Ty, Y, ycol, hn, cn):
    """Outputs of step ``s`` for units ``[j0, j1)`` of the lanes still running, and final states at their last step.

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
        if out_mode == OUT_ALL or (out_mode == OUT_LAST and t == slen[l] - 1):
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


@njit(**JIT)
def run_worker(
    cell, x, tok, lens, order, tile_ptr, next_tile,
    w, wg, kstart, klen, wr, wrg,
    h0, c0, y, ycol, out_mode, reverse, hn, cn,
    hidden, hp, h_out, proj, bt,
):  # fmt: skip
    """One thread's share: tiles from the shared counter, through every step, scratch allocated once.

    ``x`` is the layer's input rows: (B*T, I) features, or an embedding table
    (V, I) read through the token ids ``tok`` (B, T) (an empty (0, T) array
    for features; `step_row`). Token ids are checked by the caller.
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
    wrf = wr.reshape(wr.size)
    wrgf = wrg.reshape(wrg.size)
    n_pan = w.shape[0]
    n_pan_r = wr.shape[0]
    g = _skewed_zeros(n_pan * MR * bt, x, 2048)  # loaded in the update loops
    c = _skewed_zeros(max(H, 1) * bt, x, 1536)  # stored below g's page offset ...
    c2 = _skewed_zeros(max(H, 1) * bt, x, 2560)
    m = _skewed_zeros(max(H, 1) * bt, x, 1024)
    z = _skewed_zeros(K * bt, x, 0)  # ... and z below m (the h copy reads m, stores z)
    pr = _skewed_zeros(n_pan_r * MR * bt, x, 3072)
    seq = np.zeros(bt, np.int64)
    slen = np.zeros(bt, np.int64)
    xoff = np.zeros(bt, np.int64)
    h_at = (I + 1) * bt  # first h row of z
    lv = VECTOR_BYTES // x.itemsize  # lanes per SIMD vector
    rows_few = FEW_VECS * lv  # rows per `mk_rows_grouped_few` call
    nvec = bt // lv  # SIMD vectors per tile row (bt > 1 is a multiple of lv)
    zh = z[h_at : h_at + HB]  # the h rows of z
    n_tiles = tile_ptr.shape[0] - 1
    while True:
        tile = fetch_add(next_tile, 0, 1)  # tiles are longest first: dynamic LPT
        if tile >= n_tiles:
            break
        s0 = tile_ptr[tile]
        nb = tile_ptr[tile + 1] - s0
        # -- load the tile: constant rows, states in; unused lanes get length 0
        z[:] = 0
        c[:] = 0
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
                        c[u * bt + l] = c0[b, u]
        for s in range(maxlen):
            # -- gather x_t per sequence (reverse: from its own last step)
            for l in range(bt):
                t = slen[l] - 1 - s if reverse else s
                t = t if s < slen[l] else 0
                xoff[l] = step_row(tok, seq[l], t, T) * I
            for i in range(I):
                zrow = z[(i + 1) * bt : (i + 2) * bt]  # a view: contiguous stores (see rnnjit/kernels/update.py)
                for l in range(bt):
                    zrow[l] = xf[xoff[l] + i]
            # -- gate pre-activations with biases, all gates at once
            if bt == 1:
                for q in range(n_pan // P_ROWS):
                    mk_rows_grouped(wgf, q * K * P_ROWS * MR, z, 0, g, q * P_ROWS * MR, K)
            elif bt == FEW:
                for r0 in range(0, n_pan * MR, rows_few):  # groups of GROUP_ROWS rows, `rows_few` per call
                    q, r = r0 // GROUP_ROWS, r0 % GROUP_ROWS
                    mk_rows_grouped_few(wgf, q * K * GROUP_ROWS + r, z, 0, g, r0 * FEW, K)
            else:
                # One weight panel at a time against every vector of the tile
                # (the panel stays in L1 while the vectors pass), three
                # vectors per call, one at a time for the remainder; vectors
                # whose sequences have all ended are skipped (lengths are
                # sorted within the tile, so the first such one ends the row).
                for p in range(n_pan):
                    panel_lanes(wf, (p * K + kstart[p]) * MR, z, kstart[p] * bt, g, p * MR * bt, bt, klen[p],
                                s, slen, nvec, lv)
            # -- activations and state update: flat, vectorized loops (`cell_update`)
            # The LSTM writes c' to a second buffer (the two swap every step)
            # instead of updating c in place. Measured: with the in-place
            # update the same worker ran 1.2-2.3x slower in a pool thread
            # than in the main thread; with the ping-pong buffers both run
            # alike. (Presumably the CPU's store-to-load prediction on the
            # read-modify-write stream, at thread-specific addresses.) h goes
            # to m, then into z (through the projection for LSTMP): the GRU
            # reads z's old h in the update.
            cell_update(cell, g, GB, 0, NB, c, c2, m, zh, m)
            if cell == LSTM:
                c, c2 = c2, c
            if proj > 0:
                if bt == 1:
                    for q in range(n_pan_r // P_ROWS):
                        mk_rows_grouped(wrgf, q * H * GROUP_ROWS, m, 0, pr, q * GROUP_ROWS, H)
                elif bt == FEW:
                    for r0 in range(0, n_pan_r * MR, rows_few):
                        q, r = r0 // GROUP_ROWS, r0 % GROUP_ROWS
                        mk_rows_grouped_few(wrgf, q * H * GROUP_ROWS + r, m, 0, pr, r0 * FEW, H)
                else:
                    for p in range(n_pan_r):
                        for v in range(0, nvec - nvec % NV, NV):
                            mk_lanes(wrf, p * H * MR, m, v * lv, bt, pr, p * MR * bt + v * lv, bt, H)
                        for v in range(nvec - nvec % NV, nvec):
                            mk_lanes1(wrf, p * H * MR, m, v * lv, bt, pr, p * MR * bt + v * lv, bt, H)
                for q in range(HB):
                    zh[q] = pr[q]
            else:
                for q in range(HB):
                    zh[q] = m[q]
            # -- outputs (or pooled outputs) and final states of the sequences that ran this step
            emit(cell, out_mode, s, nb, seq, slen, reverse, 0, h_out, 0, H, z, h_at, c, 0, bt, yf, Ty, Y, ycol, hn, cn)
