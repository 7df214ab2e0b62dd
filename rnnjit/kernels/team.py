"""Small batches on several threads: one tile, each step's hidden units shared out.

A batch of one whose weights do not fit in a core's L2 (or a batch that
`rnnjit.kernels.tile_width` puts in one lane tile, which its cost model
rarely does since FEW-sequence tiles run at full vector width, or up to
`rnnjit.kernels.team_policy.FEW_TEAM_TILES` FEW-sequence tiles whose weights do
not fit in L2, side by side in the buffers, each chunk's rows applied to
every tile in turn) gives
`rnnjit.kernels.layer` one tile, so one thread. Here every thread works on the same tile: each step's
hidden units are cut into ``nch`` chunks of unit blocks (MR units, all gates),
and a thread takes a chunk, computes its gate rows from the step's input ``z``,
applies the cell update to those units and writes their new h into the *next*
step's ``z`` (two buffers, alternating), plus their outputs.

Each chunk has a claim word holding the next step whose chunk is free; a
thread claims chunk ``ch`` of step ``s`` by swapping ``s`` for ``s + 1``
(compare-and-swap), after every chunk of the step before is done (a counter).
Every step a thread tries its own chunks first (thread k of n starts at
chunk ``k * nch // n``), then the others: when all threads run, each core
computes the same rows every step, so its share of the weights stays in its
own cache (a single ticket counter handed chunk 0 to whichever thread came
first, and the weights moved between the cores; B=16, H=128, load average
3.6: median 2.0 ms against 3.0 ms with the ticket); when another process takes
a core, the thread still running takes every chunk, and only a chunk already
claimed by the stalled thread is waited for. A thread that starts late joins
at the current step. Each chunk computes its rows with the same micro-kernel
calls, in the same order, as the one-thread path, so results do not depend
on the thread count or on who computed which chunk.

The wrapper (`rnnjit.kernels`) loads the tile: ``zbuf[0]`` (constant rows, x
of the first step, h0), ``cbuf[0]`` (c0) and the lane tables ``seq``/``slen``.
No LSTM projection here (its product needs every unit of the step first).
"""

from __future__ import annotations

from numba import config, njit, types
from numba.extending import intrinsic

from rnnjit.kernels._simd import (
    FEW, FEW_VECS, GROUP_ROWS, MR, P_ROWS, _ptr, atomic_load, cpu_relax, fetch_add, mk_rows_grouped,
    mk_rows_grouped_from,
)
from rnnjit.kernels.config import JIT
from rnnjit.kernels.precision import VECTOR_BYTES
from rnnjit.kernels.layer import emit, few_rows, panel_lanes, step_row
from rnnjit.kernels.update import cell_update
from rnnjit.kernels.wavefront import relax

TID = 0  # index in ``sync`` of the counter that numbers the threads as they arrive
DONE = 8  # the finished-chunks counter (another cache line: waiting threads read it in a loop)
SPINS = 16  # the total count of spin-wait rounds (another line again)
NTH = 17  # the number of threads of the team (set by the wrapper)
STEAL = 18  # `STEAL_AFTER` as the wrapper found it
CLAIM = 24  # chunk ch's claim word is sync[CLAIM + 8 * ch]: the next step whose chunk ch is free
STEAL_AFTER = 200
"""Spin rounds (~25 ns each) a thread done with its own chunks of a step waits for the others' before it takes them.

Reading another thread's claim word takes its cache line away: that thread's
next claim (a compare-and-swap) then waits for the line to come back, on
the critical path of every step. Measured in one process, interleaved (batch
of one, T=1000, ns per step, taken at once / after 200 rounds): LSTM H=128
2371 / 2290, GRU H=128 2211 / 2065, LSTM H=192 4258 / 4156, H=256 5340 /
5086. A thread held up by another process still has its chunks taken after
~5 us, and those of a thread that has not joined yet (`sync[TID]` below the
team's size) at once.
"""


def sync_words(nch: int) -> int:
    """Length of the ``sync`` array of a team of ``nch`` chunks per step (one cache line per claim word)."""
    return CLAIM + 8 * nch


@intrinsic
def compare_exchange(typingctx, arr, idx, expected, new):
    """Atomically ``if arr[idx] == expected: arr[idx] = new``; True when it did (int64 array)."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None
    sig = types.boolean(arr, types.intp, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        arr_, idx_, exp_, new_ = args
        ptr = _ptr(context, builder, signature.args[0], arr_, idx_)
        pair = builder.cmpxchg(ptr, exp_, new_, "seq_cst", "seq_cst")
        return builder.extract_value(pair, 1)

    return sig, codegen


if config.DISABLE_JIT:  # pragma: no cover - exercised by the NUMBA_DISABLE_JIT=1 test run

    def compare_exchange(arr, idx, expected, new):  # noqa: F811
        if arr[idx] != expected:
            return False
        arr[idx] = new
        return True


@njit(**JIT)
def run_team(
    cell, x, tok, seq, slen, nb, maxlen, zbuf, cbuf, g, m, sync,
    w, wg, wgh, hgroup, kstart, klen, nblk, y, ycol, out_mode, reverse, hn, cn,
    hidden, hp, bt, cb, nch, kx, xk0, xproj,
):  # fmt: skip
    """One thread's part in running one tile: every step, its own chunks first, then any left unclaimed.

    ``cb`` unit blocks per chunk, ``nch`` chunks per step; ``sync`` (`sync_words`) holds
    the counters, ``sync[NTH]`` the team's size. The chunk's work is written
    out in the loop, on flat buffers with offsets: as a function call, or with
    a view per step, the reference counting of its ~20 array arguments cost
    ~0.5 us per step (measured, batch of one, H=128: 0.62 us per step with
    the chunk's work skipped). ``x``/``tok``: the layer's input rows and
    token ids, as for `rnnjit.kernels.layer.run_worker`. ``kx`` > 0 (a
    one-sequence tile): ``xproj[s * R + r]`` holds the first ``kx`` elements'
    sums of step ``s``, row ``r`` (`rnnjit.kernels.layer.project_steps`, every
    step before the team starts); per step the team then reads only the h
    columns of the weights (``wgh``), and gathers only input columns ``[xk0, I)``.
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
    whf = wgh.reshape(wgh.size)
    zf = zbuf.reshape(zbuf.size)  # two z buffers of K * bt, alternating by step
    cf = cbuf.reshape(cbuf.size)  # two c buffers of H * bt
    ntl = seq.shape[0] // bt  # FEW tiles (`FEW_TEAM_TILES`; other teams: 1), one after another in z, c, g, m
    ZT = K * bt
    KB = ZT * ntl
    h_at = (I + 1) * bt
    HB = H * bt
    R = w.shape[0] * MR  # gate rows of one step (of ``xproj``; of each tile in ``g``)
    GT = R * bt  # one tile's gate rows in ``g``
    lv = VECTOR_BYTES // x.itemsize
    nvec = bt // lv
    spins = 0
    tid = fetch_add(sync, TID, 1)
    nth = max(sync[NTH], 1)
    first = (tid * nch) // nth  # this thread's own chunks start here
    own = ((tid + 1) * nch) // nth - first  # and number this many
    steal = sync[STEAL]
    s = 0
    while s < maxlen:
        s = max(s, atomic_load(sync, DONE) // nch)  # a thread that starts late joins at the current step
        if s >= maxlen:
            break
        rounds = 0
        while atomic_load(sync, DONE) < s * nch:  # the step before is not finished yet
            relax(rounds)  # after long waits a yield: the thread waited for may need this core back
            rounds += 1
        spins += rounds
        zc, zn = (s % 2) * KB, ((s + 1) % 2) * KB  # offsets of this step's z and the next
        cc, cx = (s % 2) * HB * ntl, ((s + 1) % 2) * HB * ntl
        for k in range(nch):
            ch = (first + k) % nch
            if k == own:  # this thread's chunks are done: wait for the others' before taking theirs (`STEAL_AFTER`)
                rounds = 0
                while atomic_load(sync, DONE) < (s + 1) * nch and rounds < steal:
                    if atomic_load(sync, TID) < nth:
                        break  # a thread has not joined yet: its chunks are free to take now
                    cpu_relax()
                    rounds += 1
                spins += rounds
                if atomic_load(sync, DONE) >= (s + 1) * nch:
                    break
            at = CLAIM + 8 * ch
            if atomic_load(sync, at) != s or not compare_exchange(sync, at, s, s + 1):
                continue  # taken by another thread
            ub0 = ch * cb
            gofs = ch * ntl * GT if bt == FEW else 0  # a FEW chunk's gate rows: its own copy of ``g`` (`few_rows`)
            ub1 = min(ub0 + cb, UB)
            # -- this chunk's gate rows, every gate block
            if kx > 0:  # a one-sequence tile whose input columns are summed already (``xproj``); the chunk's
                # groups are one stretch of ``wgh`` (`rnnjit.kernels.pack.unit_major`: the team needs UB % P_ROWS == 0)
                for i in range(ub0 // P_ROWS * nblk, ub1 // P_ROWS * nblk):
                    p = hgroup[i] * P_ROWS
                    mk_rows_grouped_from(whf, i * (K - kx) * GROUP_ROWS, zf, zc + kx, g, p * MR, K - kx, xproj,
                                         s * R + p * MR)  # fmt: skip
            else:
                for q in range(nblk):
                    if bt == 1:
                        for ub in range(ub0, ub1, P_ROWS):
                            p = q * UB + ub  # a multiple of P_ROWS: the team needs UB % P_ROWS == 0 here
                            mk_rows_grouped(wgf, p * K * MR, zf, zc, g, p * MR, K)
                    elif bt == FEW:  # the chunk's rows of this gate, in whole vectors (`few_rows`), for each FEW
                        # tile in turn (the rows stay in cache meanwhile), into the chunk's own gate buffer
                        v = (q * UB + ub0) * MR // lv
                        vend = -(-(q * UB + ub1) * MR // lv)
                        while v < vend:
                            r0 = v * lv
                            gq, r = r0 // GROUP_ROWS, r0 % GROUP_ROWS
                            nv = min(vend - v, FEW_VECS, (GROUP_ROWS - r) // lv)
                            for j in range(ntl):
                                few_rows(nv, wgf, gq * K * GROUP_ROWS + r, zf, zc + j * ZT, g, gofs + j * GT + r0 * FEW,
                                         K)  # fmt: skip
                            v += nv
                    else:
                        for ub in range(ub0, ub1):
                            p = q * UB + ub
                            panel_lanes(wf, (p * K + kstart[p]) * MR, zf, zc + kstart[p] * bt, g, p * MR * bt, bt,
                                        klen[p], s, slen, nvec, lv)
            # -- the cell update of this chunk's units; h goes straight into the next z
            u0 = ub0 * MR
            u1 = min(ub1 * MR, H)
            lo, hi = u0 * bt, u1 * bt
            for j in range(ntl):
                zj, cj = j * ZT, j * HB
                cell_update(cell, g[gofs + j * GT : gofs + (j + 1) * GT], GB, lo, hi, cf, cc + cj, cx + cj,
                            m[cj : cj + HB], zf[zc + zj + h_at : zc + zj + h_at + HB],
                            zf[zn + zj + h_at : zn + zj + h_at + HB])  # fmt: skip
                # -- this chunk's units of the outputs (or pooled outputs) and final states
                l0 = j * bt
                emit(cell, out_mode, s, min(bt, nb - l0), seq[l0 : l0 + bt], slen[l0 : l0 + bt], reverse, u0, u1,
                     u0, u1, zf, zn + zj + h_at, cf, cx + cj, bt, yf, Ty, Y, ycol, hn, cn, 0)  # fmt: skip
                # -- chunk 0 also gathers the next step's x (nobody reads that buffer during this step)
                if ch == 0 and s + 1 < maxlen:
                    for l in range(bt):
                        t = 0
                        if s + 1 < slen[l0 + l]:
                            t = slen[l0 + l] - 2 - s if reverse else s + 1
                        off = step_row(tok, seq[l0 + l], t, T) * I
                        for i in range(xk0, I):
                            zf[zn + zj + (i + 1) * bt + l] = xf[off + i]
            fetch_add(sync, DONE, 1)
        s += 1
    fetch_add(sync, SPINS, spins)  # the wrapper backs off from teams when they mostly wait
