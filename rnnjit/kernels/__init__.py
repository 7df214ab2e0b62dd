"""The numba engine: compiled, batch-parallel recurrent kernels.

Implements the engine contract of `rnnjit.reference` (``prepare`` once per
model, ``run`` per batch) with the same numbers: max abs difference to the
reference engine within 1e-5 for float32 and 1e-10 for float64.

Modules: `config` (compile flags, the only place they are set), `_simd`
(register-blocked matmul micro-kernels as numba intrinsics), `activations`
(vectorizable tanh/sigmoid), `pack` (weight packing, numpy), `layer` (the
kernel), and this wrapper, which checks and converts inputs once, sorts
sequences into tiles by length, balances tiles over threads and shapes results.

Threads: the worker kernel is compiled ``nogil`` and this wrapper runs one
worker per thread from a small thread pool, instead of a ``parallel=True``
``prange`` launcher. Measured on the reference machine: a prange launcher
around the worker costs 7-12 s of extra first-call compile (numba links the
worker into the parallel region and LLVM optimizes it a second time), which
broke the 15 s budget; the pool costs nothing to compile and ~20 us per
launch. The thread count is ``threads=`` or else numba's current setting
(``NUMBA_NUM_THREADS``, `numba.set_num_threads`), which is never changed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np

from rnnjit.kernels._simd import FEW, MR, NV, P_ROWS, lanes
from rnnjit.kernels.layer import OUT_ALL, OUT_LAST, OUT_MAX, OUT_NONE, OUT_SUM, run_worker
from rnnjit.kernels.pack import CELL_CODES, PackedLayer, aligned_empty, pack_layer, padded_hidden
from rnnjit.kernels.rows import prepare_steps, run_steps
from rnnjit.kernels.team import NTH, SPINS, run_team, sync_words
from rnnjit.spec import RNNSpec

__all__ = ["prepare", "run", "prepare_steps", "run_steps", "Prepared", "tile_width"]

WIDE_VECS = 12
"""Most SIMD vectors in one tile row when a layer's weights are large (see `tile_width`)."""

WIDE_WEIGHTS = 8 << 20
"""Packed weights above this many bytes make tiles wider, to read each panel once per more sequences.

Measured on the reference machine, one thread, LSTM I=64 (bench/profile_parts.py):
H=1024 (17.9 MB) ran at 137 GFLOP/s with 48-lane tiles and 197 with 192;
H=512 (4.7 MB, within L3) was fastest with 48 (209 vs 169-186).
"""


SMALL_TILES_UP_TO = 128
"""Largest batch for which one-sequence and FEW-sequence tiles are weighed against lane tiles (`tile_width`)."""

ONE_TILE_COST = 3.0
FEW_TILE_COST = 4.3
"""Time per step of a one-sequence tile (`mk_rows_grouped`) and of a FEW-sequence tile
(`mk_rows_grouped_few`), in sequence-steps of a full micro-kernel row of a lane tile.

Measured in thread CPU time (one thread, T=100, idle other core busy with
another job), sequence-step of a full-row tile = 1 (float32, 48 lanes):
a FEW tile 4.0 (LSTM H=128), 4.7 (LSTM H=64, H=256), 5.2 (GRU H=128); a
one-sequence tile 2.7, 3.1, 4.2 (H=256: its weights leave L2), 3.3; float64
alike (FEW 4.2-5.3, one 2.2-3.3). The FEW kernel runs full-width vectors over
64 rows of the grouped weights, so per sequence it is about as fast as a lane
tile, in tiles of 4 instead of 16-48: finer shares for the threads. (The
first FEW kernel, on half-width vectors over one panel's 8 rows, cost 3.3
one-sequence tiles; this one 1.5, measured the same way.)
"""

LANES1_COST = 1.15
"""Cost of one SIMD vector of a tile in the one-vector micro-kernel (`mk_lanes1`), relative to `mk_lanes` (NV vectors).

Measured with bench/small_batch.py (LSTM H=128, T=100, 2 threads): 16 sequences
x 100 steps took ~1480-1500 us in 16- or 32-lane tiles, ~1290 us in 48-lane tiles.
"""


def _makespan(vecs: int, w: int, threads: int) -> float:
    """Time to run ``vecs`` SIMD vectors of sequences in tiles of ``w`` vectors on ``threads`` threads.

    Longest tile first onto the least loaded thread, as the tile counter
    hands them out; a tile of ``v`` vectors costs ``v // NV * NV`` full
    micro-kernel rows plus `LANES1_COST` per remaining vector.
    """
    tiles = [w] * (vecs // w) + ([vecs % w] if vecs % w else [])
    load = [0.0] * max(threads, 1)
    for v in tiles:
        k = load.index(min(load))
        load[k] += v // NV * NV + v % NV * LANES1_COST
    return max(load)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def tile_width(B: int, threads: int, dtype, weight_bytes: int) -> int:
    """Sequences per tile: 1, FEW or a multiple of the SIMD lanes, whichever the cost model finishes first.

    Each candidate's time is the busiest thread's (tiles handed out longest
    first to the least loaded thread): lane tiles by `_makespan`, one- and
    FEW-sequence tiles (batches up to `SMALL_TILES_UP_TO`) by `ONE_TILE_COST`
    and `FEW_TILE_COST` per tile. The widest tile within 4% of the best wins
    (fewer tiles, less bookkeeping). So every thread gets about the same work
    (B=128 on 2 threads: 32 FEW tiles, not 48+48+32 lanes, which left one
    thread a third of the work), at most one micro-kernel row (NV vectors) of
    lanes for most models, and up to `WIDE_VECS` vectors when the weights are
    larger than `WIDE_WEIGHTS`: each weight panel is then read once per step
    for that many sequences, not once per 48.
    """
    th = max(threads, 1)
    lv = lanes(dtype)
    vecs = -(-B // lv)
    cap = WIDE_VECS if weight_bytes > WIDE_WEIGHTS else NV
    cost = {lv * w: _makespan(vecs, w, th) * lv for w in range(1, min(cap, vecs) + 1)}
    if B <= SMALL_TILES_UP_TO:
        cost[FEW] = _ceil_div(_ceil_div(B, FEW), th) * FEW_TILE_COST  # rounds of tiles on the busiest thread
        cost[1] = _ceil_div(B, th) * ONE_TILE_COST
    best = min(cost.values())
    return max(w for w, t in cost.items() if t <= best * 1.04)


@dataclass(frozen=True)
class Prepared:
    """A model's weights packed for the kernels, for one dtype."""

    spec: RNNSpec
    dtype: np.dtype
    layers: tuple[PackedLayer, ...]  # index layer * D + direction


def prepare(spec: RNNSpec, weights: Mapping[str, np.ndarray]) -> Prepared:
    """Pack ``weights`` (PyTorch state_dict names, prefix ``spec.prefix``) for `run`.

    The dtype is the weights' dtype: float64 stays float64, anything else
    becomes float32 (PyTorch's default).
    """
    first = weights[f"{spec.prefix}weight_ih_l0"]
    dtype = np.dtype(np.float64 if np.asarray(first).dtype == np.float64 else np.float32)
    layers = []
    for _, _, sfx in spec.suffixes():
        w = spec.direction_weights(weights, sfx)
        layers.append(pack_layer(spec.cell, w, spec.hidden_size, spec.h_out, dtype))
    return Prepared(spec, dtype, tuple(layers))


def _tiles(lengths: np.ndarray, bt: int):
    """Sort by length (longest first) and cut into tiles of ``bt``.

    Returns (order, tile_ptr): tile k holds ``order[tile_ptr[k]:tile_ptr[k+1]]``;
    tile 0 has the longest sequences, so workers taking tiles in order balance
    like longest-processing-time-first.
    """
    B = lengths.shape[0]
    order = np.argsort(-lengths, kind="stable").astype(np.int64)
    tile_ptr = np.arange(0, B + bt, bt, dtype=np.int64)
    tile_ptr[-1] = B
    tile_ptr = np.unique(tile_ptr)
    return order, tile_ptr


def _writable(a: np.ndarray) -> np.ndarray:
    """A read-only array (Arrow zero-copy, np.load mmap) would make numba compile a second kernel: copy it."""
    return a if a.flags.writeable else a.copy()


SELECT_MODES = {"all": OUT_ALL, "last": OUT_LAST, "final": OUT_NONE, "sum": OUT_SUM, "mean": OUT_SUM, "max": OUT_MAX}
"""The top layer's output mode for each ``select`` (mean is the sum divided by the length afterwards)."""


def run(prepared: Prepared, x, lengths, h0=None, c0=None, select="all", threads=None, table=None):
    """Run the recurrent stack; the contract is in `rnnjit.reference`.

    ``threads`` sets numba's thread count for this call only (restored after).
    With ``table`` (an embedding, (V, input_size)), ``x`` is (B, T) token ids
    and the first layer reads each step's table row inside its tile.
    """
    if select not in SELECT_MODES:
        raise ValueError(f"select must be one of {', '.join(SELECT_MODES)}, got {select!r}")
    spec, dtype = prepared.spec, prepared.dtype
    if table is None:
        x = _writable(np.ascontiguousarray(x, dtype=dtype))
        if x.ndim != 3 or x.shape[2] != spec.input_size:
            raise ValueError(f"x has shape {x.shape}; expected (batch, time, {spec.input_size})")
        B, T, _ = x.shape
        rows, tok = x.reshape(B * T, spec.input_size), np.zeros((0, T), np.int64)
    else:
        tok = _writable(np.ascontiguousarray(x, dtype=np.int64))
        rows = _writable(np.ascontiguousarray(table, dtype=dtype))
        if tok.ndim != 2 or rows.ndim != 2 or rows.shape[1] != spec.input_size:
            raise ValueError(
                f"token ids {tok.shape} and table {rows.shape}; expected (batch, time) and (vocabulary, {spec.input_size})"
            )
        B, T = tok.shape
    lengths = _writable(np.ascontiguousarray(lengths, dtype=np.int64))
    D, L, Ho, H = spec.num_directions, spec.num_layers, spec.h_out, spec.hidden_size
    h_shape, c_shape = spec.state_shapes(B)
    hn = np.zeros(h_shape, dtype)
    cn = np.zeros((L * D, B, H), dtype)
    h0 = np.zeros(h_shape, dtype) if h0 is None else _writable(np.ascontiguousarray(h0, dtype=dtype))
    c0 = cn.copy() if (c0 is None or c_shape is None) else _writable(np.ascontiguousarray(c0, dtype=dtype))
    y_all = np.zeros((B, T, D * Ho), dtype) if select == "all" else None
    y_last = np.zeros((B, 1, D * Ho), dtype)
    if B > 0 and T > 0:
        n = numba.get_num_threads() if threads is None else int(threads)
        if n < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        _run_layers(prepared, rows, tok, lengths, h0, c0, hn, cn, SELECT_MODES[select], y_all, y_last, n)
    if select == "all":
        y = y_all
    elif select == "final":
        y = np.concatenate([hn[(L - 1) * D + d] for d in range(D)], axis=1)
    else:
        y = y_last[:, 0, :]
        if select == "mean":
            y = y / lengths[:, None].astype(dtype)
    return np.ascontiguousarray(y), hn, (cn if c_shape else None)


def _run_layers(prepared, rows, tok, lengths, h0, c0, hn, cn, top_mode, y_all, y_last, threads):
    """Every layer and direction; the first layer reads ``rows``/``tok`` (see `run_worker`), the top one writes ``top_mode``."""
    spec, dtype = prepared.spec, prepared.dtype
    B, T = lengths.shape[0], tok.shape[1]
    D, L, Ho, H = spec.num_directions, spec.num_layers, spec.h_out, spec.hidden_size
    wbytes = max(pk.w.nbytes for pk in prepared.layers)
    bt = tile_width(B, threads, dtype, wbytes)
    order, tile_ptr = _tiles(lengths, bt)
    workers = max(1, min(threads, tile_ptr.size - 1))
    team = team_chunks(spec, bt, threads, wbytes) if tile_ptr.size == 2 else None
    if team:
        workers = threads
    cell = CELL_CODES[spec.cell]
    hp = padded_hidden(H)
    no_tokens = np.zeros((0, T), np.int64)
    for layer in range(L):
        if layer < L - 1:
            out, mode = np.zeros((B, T, D * Ho), dtype), OUT_ALL
        else:
            out, mode = (y_all if top_mode == OUT_ALL else y_last), top_mode
        for d in range(D):
            k = layer * D + d
            pk = prepared.layers[k]
            if team:
                _run_team(prepared, pk, rows, tok, lengths, order, h0[k], c0[k], out, d * Ho, mode, d == 1,
                          hn[k], cn[k], bt, workers, team)  # fmt: skip
                continue
            args = (
                cell, rows, tok, lengths, order, tile_ptr, np.zeros(1, np.int64),
                pk.w, pk.wg, pk.kstart, pk.klen, pk.wr, pk.wrg,
                h0[k], c0[k], out, d * Ho, mode, d == 1, hn[k], cn[k],
                H, hp, Ho, spec.proj_size, bt,
            )  # fmt: skip
            _parallel(workers, args)
        if layer < L - 1:
            rows, tok = out.reshape(B * T, D * Ho), no_tokens


STALL_SPINS = 300
"""Spin-wait rounds per step above which a team run counts as stalled (another process had a core).

Measured (B=16, H=128, T=100, load average 4.7): stalled team calls took
12-24 ms at 1561-3182 rounds per step, against 1.6-1.8 ms for calls the
second thread did not join; healthy two-thread runs wait 0-15 rounds per
step, up to ~600 in a run that was already slower than one thread.
"""

TEAM_PAUSE = 30.0
"""Seconds small batches run on one thread after a stalled team run, before a team is tried again.

A team waits for every chunk of a step before the next: when another
process takes one of the cores, a claimed chunk can wait a whole scheduler
time slice. Measured on the shared reference machine (load average 6-9 on 2
cores): team runs at a median 1.6-10x the one-thread time, while on a quiet
machine the team halves the per-core weight traffic of a batch of one. So a
stalled run (counted in `run_team`) turns teams off for a while.
"""

_team_paused_until = 0.0


L2_BYTES = 1 << 20
"""One core's L2 cache on the reference machine (AMD EPYC Zen 4): packed weights up to this size stay in it between steps."""


def team_chunks(spec: RNNSpec, bt: int, threads: int, weight_bytes: int = 0) -> tuple[int, int] | None:
    """(unit blocks per chunk, chunks per step) when one tile should run on ``threads`` (`team`), else None.

    A team needs two threads, no projection, and chunks of whole row-kernel
    calls (P_ROWS blocks of MR units for one sequence). A batch of one whose
    packed weights fit in one core's L2 (`L2_BYTES`) runs on one thread: its
    step is ~2.1 us, bound by reading the weights from L2, and the team's
    per-step hand-off costs more than halving that read saves. Measured with
    bench/small_batch.py, LSTM H=128 (332 KB), T=100, idle machine: one
    thread 252 us (244-274), the two-thread team 419 us (385-441); at load
    average 3, 216 vs 383.
    """
    if threads < 2 or spec.proj_size or time.monotonic() < _team_paused_until:
        return None
    ub = padded_hidden(spec.hidden_size) // MR
    if bt == 1:
        if weight_bytes <= L2_BYTES:
            return None
        return (P_ROWS, ub // P_ROWS) if ub % P_ROWS == 0 else None
    if bt == FEW:  # no FEW-sequence team kernel: one FEW tile runs on one thread
        return None
    cb = max(1, ub // (2 * threads))
    return cb, -(-ub // cb)


def _run_team(prepared, pk, rows, tok, lengths, order, h0, c0, out, ycol, mode, reverse, hn, cn, bt, workers, chunks):
    """Run one tile (every sequence of the batch) on ``workers`` threads with `run_team`."""
    spec, dtype = prepared.spec, prepared.dtype
    B, T, I = lengths.shape[0], tok.shape[1], rows.shape[1]
    H, hp = spec.hidden_size, padded_hidden(spec.hidden_size)
    K = I + H + 2
    seq = np.zeros(bt, np.int64)
    slen = np.zeros(bt, np.int64)
    seq[:B], slen[:B] = order, lengths[order]
    zbuf = _line_zeros((2, K, bt), dtype)
    zbuf[:, 0], zbuf[:, K - 1] = 1, 1
    t0 = slen[:B] - 1 if reverse else np.zeros(B, np.int64)
    first = tok[order, t0] if tok.shape[0] else order * T + t0  # each sequence's first row (`step_row`)
    zbuf[0, 1 : I + 1, :B] = rows[first].T
    zbuf[0, I + 1 : I + 1 + H, :B] = h0[order].T
    cbuf = _line_zeros((2, H, bt), dtype)
    cbuf[0, :, :B] = c0[order].T
    g = _line_zeros(pk.w.shape[0] * MR * bt, dtype)
    m = _line_zeros(H * bt, dtype)
    cb, nch = chunks
    sync = np.zeros(sync_words(nch), np.int64)
    sync[NTH] = workers
    blocks = 1 if spec.cell.startswith("rnn") else 4
    args = (
        CELL_CODES[spec.cell], rows, tok, seq, slen, B, int(slen.max()), zbuf.reshape(2, K * bt), cbuf.reshape(2, H * bt),
        g, m, sync, pk.w, pk.wg, pk.kstart, pk.klen, blocks, out, ycol, mode, reverse, hn, cn,
        H, hp, bt, cb, nch,
    )  # fmt: skip
    _parallel(workers, args, run_team)
    global _team_paused_until
    if sync[SPINS] > STALL_SPINS * int(slen.max()):
        _team_paused_until = time.monotonic() + TEAM_PAUSE


def _line_zeros(shape, dtype) -> np.ndarray:
    """Zeros starting on a cache line: the team's vector loads and stores then never split one.

    Measured (B=16, H=128, the team on one thread): 17.0 us per step with
    numpy's 16-byte-aligned buffers, 15.1 with these (the tile worker: 14.2).
    """
    a = aligned_empty(shape, dtype)
    a.fill(0)
    return a


_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def _parallel(workers: int, args: tuple, fn=run_worker) -> None:
    """Run ``fn(*args)`` (`run_worker` or `run_team`) in ``workers`` threads, this one included."""
    global _pool, _pool_size
    if workers == 1:
        fn(*args)
        return
    with _pool_lock:
        if _pool is None or _pool_size < workers - 1:
            _pool_size = workers - 1
            _pool = ThreadPoolExecutor(max_workers=_pool_size, thread_name_prefix="rnnjit")
        pool = _pool
    futures = [pool.submit(fn, *args) for _ in range(workers - 1)]
    fn(*args)
    # The work is shared out dynamically, so when this thread returns every
    # tile (or team chunk) has been taken: a pool thread that has not started
    # yet (on a busy machine a wake-up can take milliseconds) has nothing left
    # to do, and is not waited for.
    for f in futures:
        if not f.cancel():
            f.result()
