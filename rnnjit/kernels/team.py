"""Small batches on several threads: one tile, each step's hidden units shared out.

A batch of one (or of up to 16 sequences, one 16-lane tile) gives
`rnnjit.kernels.layer` one tile, so one thread. Here every thread works on the same tile: each step's
hidden units are cut into ``nch`` chunks of unit blocks (MR units, all gates),
and a thread takes a chunk, computes its gate rows from the step's input ``z``,
applies the cell update to those units and writes their new h into the *next*
step's ``z`` (two buffers, alternating), plus their outputs.

Chunks are handed out by one shared ticket counter, in step order: ticket
``t`` is chunk ``t % nch`` of step ``t // nch``, and its thread waits until
every chunk of the step before is done (a second counter). No thread owns a
fixed share: when another process takes one core, the thread still running
takes every chunk, and only a chunk already claimed by the stalled thread is
waited for (not a whole step's share). Each chunk computes its rows with the
same micro-kernel calls, in the same order, as the one-thread path, so
results do not depend on the thread count.

The wrapper (`rnnjit.kernels`) loads the tile: ``zbuf[0]`` (constant rows, x
of the first step, h0), ``cbuf[0]`` (c0) and the lane tables ``seq``/``slen``.
No LSTM projection here (its product needs every unit of the step first).
"""

from __future__ import annotations

from numba import njit

from rnnjit.kernels._simd import (
    MR, P_ROWS, atomic_load, cpu_relax, fetch_add, mk_rows_grouped,
)
from rnnjit.kernels.config import JIT
from rnnjit.kernels.layer import emit, panel_lanes, step_row
from rnnjit.kernels.update import cell_update

DONE = 8  # index of the finished-chunks counter in ``sync`` (64 bytes after the ticket counter)
SPINS = 16  # index of the total count of spin-wait rounds (another line again)


@njit(**JIT)
def run_team(
    cell, x, tok, seq, slen, nb, maxlen, zbuf, cbuf, g, m, sync,
    w, wg, kstart, klen, nblk, y, ycol, out_mode, reverse, hn, cn,
    hidden, hp, bt, cb, nch,
):  # fmt: skip
    """One thread's part in running one tile: chunks from ``sync[0]`` until the last step's are taken.

    ``sync[DONE]`` counts finished chunks (another cache line than the tickets: waiting threads read it in a loop); ``cb`` unit blocks per chunk, ``nch`` chunks per step.
    ``x``/``tok``: the layer's input rows and token ids, as for `rnnjit.kernels.layer.run_worker`.
    """
    T = tok.shape[1]
    I = x.shape[1]
    H = hidden
    K = I + H + 2
    GB = hp * bt
    UB = hp // MR
    Ty = y.shape[1]
    Y = y.shape[2]
    xf = x.reshape(x.size)
    yf = y.reshape(y.size)
    wf = w.reshape(w.size)
    wgf = wg.reshape(wg.size)
    h_at = (I + 1) * bt
    HB = H * bt
    lv = 16 if x.itemsize == 4 else 8
    nvec = bt // lv
    spins = 0
    while True:
        ticket = fetch_add(sync, 0, 1)
        s = ticket // nch
        if s >= maxlen:
            break
        ch = ticket - s * nch
        while atomic_load(sync, DONE) < s * nch:  # the step before is not finished yet
            cpu_relax()
            spins += 1
        zc, zn = zbuf[s % 2], zbuf[(s + 1) % 2]
        cc, cx = cbuf[s % 2], cbuf[(s + 1) % 2]
        ub0 = ch * cb
        ub1 = min(ub0 + cb, UB)
        # -- this chunk's gate rows, every gate block
        for q in range(nblk):
            if bt == 1:
                for ub in range(ub0, ub1, P_ROWS):
                    p = q * UB + ub  # a multiple of P_ROWS: the team needs UB % P_ROWS == 0 here
                    mk_rows_grouped(wgf, p * K * MR, zc, 0, g, p * MR, K)
            else:
                for ub in range(ub0, ub1):
                    p = q * UB + ub
                    panel_lanes(wf, (p * K + kstart[p]) * MR, zc, kstart[p] * bt, g, p * MR * bt, bt, klen[p],
                                s, slen, nvec, lv)
        # -- the cell update of this chunk's units; h goes straight into the next z
        u0 = ub0 * MR
        u1 = min(ub1 * MR, H)
        lo, hi = u0 * bt, u1 * bt
        cell_update(cell, g, GB, lo, hi, cc, cx, m, zc[h_at : h_at + HB], zn[h_at : h_at + HB])
        # -- this chunk's units of the outputs (or pooled outputs) and final states
        emit(cell, out_mode, s, nb, seq, slen, reverse, u0, u1, (u0, u1), zn, h_at, cx, bt, yf, Ty, Y, ycol, hn, cn)
        # -- chunk 0 also gathers the next step's x (nobody reads that buffer during this step)
        if ch == 0 and s + 1 < maxlen:
            for l in range(bt):
                t = 0
                if s + 1 < slen[l]:
                    t = slen[l] - 2 - s if reverse else s + 1
                off = step_row(tok, seq[l], t, T) * I
                for i in range(I):
                    zn[(i + 1) * bt + l] = xf[off + i]
        fetch_add(sync, DONE, 1)
    fetch_add(sync, SPINS, spins)  # the wrapper backs off from teams when they mostly wait
