"""The recurrent kernel: one launch runs one layer in one direction for the whole batch.

Layout ("sequences in lanes"): a tile holds up to ``BT`` sequences (32 for
float32, 16 for float64), and every per-tile buffer is (rows, BT) with the
sequences along the contiguous axis. Per step a thread

1. gathers ``x_t`` of each sequence into ``z[:in_size]`` (``z = [x_t; h]``,
   h stays in ``z[in_size:]`` between steps),
2. computes all gate pre-activations ``g = [W_ih | W_hh] @ z`` with the
   register-blocked micro-kernel (`rnnjit.kernels._simd`),
3. applies bias, activations and the state update in one pass per hidden
   unit, vectorized over the sequences of the tile (masked: a sequence past
   its length keeps its state),
4. writes the step's output for the sequences still running.

Tiles come from sequences sorted by length, so a tile stops at its longest
member and steps past every sequence's length are (nearly) never computed.
`run_worker` is one thread's share: its list of tiles, with scratch allocated
once. It releases the GIL (``nogil``); `rnnjit.kernels` runs one per thread.
``BT == 1`` is the small-batch path: one sequence per tile, gates by the
matrix-vector micro-kernel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rnnjit.kernels._simd import MR, P_ROWS, mk_lanes, mk_rows
from rnnjit.kernels.activations import sigmoid, tanh
from rnnjit.kernels.config import JIT

LSTM, GRU, RNN_TANH, RNN_RELU = 0, 1, 2, 3
OUT_NONE, OUT_LAST, OUT_ALL = 0, 1, 2


@njit(**JIT)
def run_worker(
    worker, cell, x, lens, order, tile_ptr, work_ptr, work_tiles,
    w, kstart, klen, bias, wr,
    h0, c0, y, ycol, out_mode, reverse, hn, cn,
    hidden, hp, h_out, proj, bt,
):  # fmt: skip
    """One thread's share: its tiles, through every step, with scratch allocated once."""
    B, T, I = x.shape
    K = I + h_out
    n_rows = w.shape[0] * MR
    n_rows_r = wr.shape[0] * MR
    Ty = y.shape[1]
    Y = y.shape[2]
    xf = x.reshape(B * T * I)
    yf = y.reshape(B * Ty * Y)
    wf = w.reshape(w.size)
    wrf = wr.reshape(wr.size)
    H = hidden
    zero = np.zeros(1, x.dtype)[0]
    zf = np.zeros(K * bt, x.dtype)
    gf = np.zeros(n_rows * bt, x.dtype)
    mf = np.zeros(max(H, 1) * bt, x.dtype)
    pf = np.zeros(n_rows_r * bt, x.dtype)
    z = zf.reshape((K, bt))
    g = gf.reshape((n_rows, bt))
    m = mf.reshape((max(H, 1), bt))
    pr = pf.reshape((n_rows_r, bt))
    c = np.zeros((max(H, 1), bt), x.dtype)
    act = np.zeros(bt, np.bool_)
    seq = np.zeros(bt, np.int64)
    slen = np.zeros(bt, np.int64)
    tl = np.zeros(bt, np.int64)
    xoff = np.zeros(bt, np.int64)
    for wi in range(work_ptr[worker], work_ptr[worker + 1]):
        tile = work_tiles[wi]
        s0 = tile_ptr[tile]
        nb = tile_ptr[tile + 1] - s0
        # -- load the tile: states in, unused lanes length 0
        zf[:] = 0
        c[:, :] = 0
        maxlen = 0
        for l in range(bt):
            if l < nb:
                b = order[s0 + l]
                seq[l] = b
                slen[l] = lens[b]
                maxlen = max(maxlen, lens[b])
                for j in range(h_out):
                    z[I + j, l] = h0[b, j]
                if cell == LSTM:
                    for u in range(H):
                        c[u, l] = c0[b, u]
            else:
                seq[l] = 0
                slen[l] = 0
        for s in range(maxlen):
            # -- gather x_t per sequence (reverse: from its own last step)
            for l in range(bt):
                a = s < slen[l]
                act[l] = a
                t = slen[l] - 1 - s if reverse else s
                t = t if a else 0
                tl[l] = t
                xoff[l] = (seq[l] * T + t) * I
            for i in range(I):
                for l in range(bt):
                    zf[i * bt + l] = xf[xoff[l] + i]
            # -- gate pre-activations, all gates at once
            if bt == 1:
                for p in range(0, w.shape[0], P_ROWS):
                    mk_rows(wf, p * K * MR, K * MR, zf, 0, gf, p * MR, K)
            else:
                for p in range(w.shape[0]):
                    ks = kstart[p]
                    mk_lanes(wf, (p * K + ks) * MR, zf, ks * bt, bt, gf, p * MR * bt, bt, klen[p])
            # -- activations and state update, vectorized over the tile
            if cell == LSTM:
                for u in range(H):
                    bi = bias[u]
                    bf = bias[hp + u]
                    bg = bias[2 * hp + u]
                    bo = bias[3 * hp + u]
                    for l in range(bt):
                        ig = sigmoid(g[u, l] + bi)
                        fg = sigmoid(g[hp + u, l] + bf)
                        gg = tanh(g[2 * hp + u, l] + bg)
                        og = sigmoid(g[3 * hp + u, l] + bo)
                        cc = fg * c[u, l] + ig * gg
                        m[u, l] = og * tanh(cc)
                        c[u, l] = cc if act[l] else c[u, l]
                if proj > 0:
                    if bt == 1:
                        for p in range(0, wr.shape[0], P_ROWS):
                            mk_rows(wrf, p * H * MR, H * MR, mf, 0, pf, p * MR, H)
                    else:
                        for p in range(wr.shape[0]):
                            mk_lanes(wrf, p * H * MR, mf, 0, bt, pf, p * MR * bt, bt, H)
                    for j in range(h_out):
                        for l in range(bt):
                            z[I + j, l] = pr[j, l] if act[l] else z[I + j, l]
                else:
                    for u in range(H):
                        for l in range(bt):
                            z[I + u, l] = m[u, l] if act[l] else z[I + u, l]
            elif cell == GRU:
                for u in range(H):
                    br = bias[u]
                    bz = bias[hp + u]
                    bn = bias[2 * hp + u]
                    bhn = bias[3 * hp + u]
                    for l in range(bt):
                        r = sigmoid(g[u, l] + br)
                        zg = sigmoid(g[hp + u, l] + bz)
                        n = tanh(g[2 * hp + u, l] + bn + r * (g[3 * hp + u, l] + bhn))
                        hold = z[I + u, l]
                        hnew = n + zg * (hold - n)
                        z[I + u, l] = hnew if act[l] else hold
            elif cell == RNN_TANH:
                for u in range(H):
                    bu = bias[u]
                    for l in range(bt):
                        v = tanh(g[u, l] + bu)
                        z[I + u, l] = v if act[l] else z[I + u, l]
            else:
                for u in range(H):
                    bu = bias[u]
                    for l in range(bt):
                        v = max(g[u, l] + bu, zero)
                        z[I + u, l] = v if act[l] else z[I + u, l]
            # -- outputs of the sequences that ran this step
            if out_mode == OUT_ALL:
                for l in range(nb):
                    if act[l]:
                        base = (seq[l] * Ty + tl[l]) * Y + ycol
                        for j in range(h_out):
                            yf[base + j] = zf[(I + j) * bt + l]
            elif out_mode == OUT_LAST:
                for l in range(nb):
                    if act[l] and tl[l] == slen[l] - 1:
                        base = seq[l] * Ty * Y + ycol
                        for j in range(h_out):
                            yf[base + j] = zf[(I + j) * bt + l]
        # -- final states
        for l in range(nb):
            b = seq[l]
            for j in range(h_out):
                hn[b, j] = z[I + j, l]
            if cell == LSTM:
                for u in range(H):
                    cn[b, u] = c[u, l]
