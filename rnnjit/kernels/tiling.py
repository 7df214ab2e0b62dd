"""Tiling: how many sequences a tile holds (a cost model over the candidates) and which sequences go in which tile.

A plan may have two parts (`remainder_width`, `split_tiles`): tiles of the
chosen width for the whole SIMD vectors (or groups of FEW) of the longest
sequences, and one- or FEW-sequence tiles for the few left over, so a batch
that is not a multiple of the tile width pays for no padded vector
(bench/report_notes.md, "Batches that are not a multiple of the tile width").

The measurements behind the constants are in bench/report_notes.md ("Tiling and
team constants"), each under the constant's name.
"""

from __future__ import annotations

import numpy as np

from rnnjit.kernels._simd import FEW, MR, NV
from rnnjit.kernels.precision import lanes
from rnnjit.kernels.team_policy import L2_BYTES

WIDE_VECS = 12
"""Most SIMD vectors in one tile row when a layer's weights are large (see `tile_width`)."""

WIDE_WEIGHTS = 8 << 20
"""Packed weights above this many bytes make tiles wider, to read each panel once per more sequences
(measured: bench/report_notes.md)."""

SMALL_TILES_UP_TO = 128
"""Largest batch for which one-sequence and FEW-sequence tiles are weighed against lane tiles (`tile_width`)."""

ONE_TILE_COST = 3.0
FEW_TILE_COST = 4.8
"""Time per step of a one-sequence tile (`mk_rows_grouped`) and of a FEW-sequence tile (`mk_rows_grouped_few`),
in sequence-steps of a full micro-kernel row of a lane tile (measured: bench/report_notes.md)."""

LANES1_COST = 1.15
"""Cost of one SIMD vector of a tile in the one-vector micro-kernel (`mk_lanes1`), relative to `mk_lanes` (NV vectors;
measured: bench/report_notes.md)."""

LANES2_COST = 1.0
"""The same for each of two vectors in the two-vector micro-kernel (`mk_lanes2`; measured: bench/report_notes.md)."""

STREAMED_TILE_COST = 1.2
"""Least time per step of a lane tile, in vectors of `mk_lanes`, when the packed weights do not fit in a core's L2
(`rnnjit.kernels.team_policy.L2_BYTES`): every tile then reads them from L3 each step, which a one-vector tile
does not quite hide behind its products (measured on whole steps of stacked layers: bench/report_notes.md)."""

STREAMED_FEW_COST = 5.3
"""`FEW_TILE_COST` when the packed weights do not fit in a core's L2: a FEW tile reads all of them from L3 every step
for its FEW sequences (measured on whole steps of stacked layers: bench/report_notes.md)."""


SMALL_TILE_ROWS = 256
SMALL_ROWS_EXP = 0.4
"""One- and FEW-sequence tiles of a layer with fewer gate rows than `SMALL_TILE_ROWS` cost more than `ONE_TILE_COST`
and `FEW_TILE_COST` count, by (`SMALL_TILE_ROWS` / rows) to this power (`small_tile_scale`; fitted on RNN, GRU and
LSTM cells, H=16..512, I=32 and 266; measured: bench/report_notes.md)."""


def small_tile_scale(gates: int, hidden: int) -> float:
    """What a one- or FEW-sequence tile of a layer costs over `ONE_TILE_COST` and `FEW_TILE_COST`: 1 or more.

    The constants were measured on LSTMs of H=64..256 (256 gate rows and
    more). With fewer rows (a lane tile's: ``hidden`` padded to `MR`, times
    the gates) a FEW tile costs more against a lane tile: its kernels run
    the rows in whole groups of 64 (`rnnjit.kernels.pack.group_panels`; an RNN of H=16 runs 64
    rows for its 16) and each step's fixed work weighs more over few rows
    (an LSTM of H=16, 64 rows, no padding: 1.5-1.9 times `FEW_TILE_COST`).
    One- and FEW-sequence tiles are scaled alike, so the choice between them
    stays as the constants make it.
    """
    rows = gates * _ceil_div(hidden, MR) * MR
    return (SMALL_TILE_ROWS / rows) ** SMALL_ROWS_EXP if rows < SMALL_TILE_ROWS else 1.0


def _tile_cost(v: int, streamed: bool) -> float:
    """Time per step of a tile of ``v`` vectors: full micro-kernel rows, then the remainder's kernel."""
    rest = v % NV
    cost = v // NV * NV + (2 * LANES2_COST if rest == 2 else rest * LANES1_COST)
    return max(cost, STREAMED_TILE_COST) if streamed else cost


def _lpt(costs, threads: int) -> float:
    """The busiest thread's time when tiles of these ``costs`` go, in order, to the least loaded thread (the tile
    counter hands them out so: lane tiles longest first, then a remainder part's small tiles)."""
    load = [0.0] * max(threads, 1)
    for cost in costs:
        k = load.index(min(load))
        load[k] += cost
    return max(load)


def _lane_tiles(vecs: int, w: int, streamed: bool) -> list:
    """The costs of ``vecs`` vectors in tiles of ``w`` vectors, in vectors of `mk_lanes` (`_tile_cost`)."""
    return [_tile_cost(v, streamed) for v in [w] * (vecs // w) + ([vecs % w] if vecs % w else [])]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


_WIDTHS: dict = {}
_WIDTHS_KEPT = 4096  # distinct (B, threads, dtype, weight bytes, factor) remembered; then the memo starts again


def tile_width(B: int, threads: int, dtype, weight_bytes: int, small: float = 1.0) -> int:
    """Sequences per tile: 1, FEW or a multiple of the SIMD lanes, whichever the cost model finishes first.

    Each candidate's time is the busiest thread's (tiles handed out longest
    first to the least loaded thread, `_lpt`): lane and FEW tiles by `_plan_cost`, one- and
    FEW-sequence tiles (batches up to `SMALL_TILES_UP_TO`) by `ONE_TILE_COST`
    and `FEW_TILE_COST` per tile, times ``small`` (the layer's
    `small_tile_scale`: more for layers of few gate rows). The widest tile within 4% of the best wins
    (fewer tiles, less bookkeeping). So every thread gets about the same work
    (B=128 on 2 threads: four 32-lane tiles, not 48+48+32 lanes, which left
    one thread a third of the work), at most one micro-kernel row (NV vectors) of
    lanes for most models, and up to `WIDE_VECS` vectors when the weights are
    larger than `WIDE_WEIGHTS`: each weight panel is then read once per step
    for that many sequences, not once per 48.

    A pure function of its arguments, remembered: the cost model takes ~2 us
    of Python, as much as 20 steps of a batch of one's recurrence at H=32.
    """
    key = (B, threads, dtype, weight_bytes, small)
    bt = _WIDTHS.get(key)
    if bt is None:
        if len(_WIDTHS) >= _WIDTHS_KEPT:
            _WIDTHS.clear()
        bt = _WIDTHS[key] = _tile_width(B, threads, dtype, weight_bytes, small)
    return bt


def _tile_width(B: int, threads: int, dtype, weight_bytes: int, small: float) -> int:
    th = max(threads, 1)
    lv = lanes(dtype)
    vecs = -(-B // lv)
    cap = WIDE_VECS if weight_bytes > WIDE_WEIGHTS else NV
    cost = {lv * w: _plan_cost(B, lv * w, th, lv, weight_bytes, small)[0] for w in range(1, min(cap, vecs) + 1)}
    if B <= SMALL_TILES_UP_TO:
        cost[FEW] = _plan_cost(B, FEW, th, lv, weight_bytes, small)[0]
        cost[1] = _ceil_div(B, th) * ONE_TILE_COST * small
    best = min(cost.values())
    return max(w for w, t in cost.items() if t <= best * 1.04)


MIXED_MARGIN = 1.04
"""A plan with a remainder part (`remainder_width`) must finish this much sooner than its tiles alone: it costs one
more worker call per layer and thread."""


def _plan_cost(B: int, bt: int, threads: int, lv: int, weight_bytes: int, small: float) -> tuple[float, int]:
    """(time, remainder width) of ``B`` sequences in tiles of ``bt`` (FEW or lane tiles), in sequence-steps of
    `mk_lanes`: those tiles alone (the last one padded), or whole tiles of the unit (a SIMD vector of ``lv``
    lanes; FEW sequences) and the ``B % unit`` left over in one- or FEW-sequence tiles (remainder width 1 or
    FEW; FEW tiles take only one-sequence tiles), whichever the cost model finishes first. One- and FEW-sequence
    tiles cost their constants times ``small`` (`small_tile_scale`)."""
    streamed = weight_bytes > L2_BYTES
    one, few = ONE_TILE_COST * small, (STREAMED_FEW_COST if streamed else FEW_TILE_COST) * small
    if bt == FEW:
        unit, rests = FEW, ((1, one),)
        tiles = lambda n: [few] * _ceil_div(n, FEW)  # noqa: E731
    else:
        unit, rests = lv, ((1, one), (FEW, few))
        tiles = lambda n: [c * lv for c in _lane_tiles(_ceil_div(n, lv), bt // lv, streamed)]  # noqa: E731
    rest = B % unit
    alone = tiles(B)
    best = (_lpt(alone, threads), 0)
    if rest and B > unit:
        for width, each in rests:
            mixed = tiles(B - rest) + [each] * _ceil_div(rest, width)
            cost = _lpt(mixed, threads)
            # sooner, or as soon with less work (on a shared machine the other thread's share may wait)
            sooner = cost * MIXED_MARGIN < best[0] or (cost <= best[0] and sum(mixed) * MIXED_MARGIN < sum(alone))
            if sooner and (best[1] == 0 or cost < best[0]):
                best = (cost, width)
    return best


_REST: dict = {}


def remainder_width(B: int, threads: int, dtype, weight_bytes: int, bt: int, small: float = 1.0) -> int:
    """Width of the tiles (1 or FEW) that take the sequences left over by whole tiles of the unit of ``bt`` (a
    SIMD vector of lanes, or FEW sequences), or 0 when tiles of ``bt`` alone, the last one padded, finish sooner.

    On two threads: B=65 in two 32-lane tiles and a one-sequence tile, not
    17 FEW tiles; B=257 in eight 32-lane tiles and a one-sequence tile, not
    six 48-lane tiles of which one thread runs three; B=17 in four FEW tiles
    and a one-sequence tile. Every tile kind gives a sequence the same bits
    (tests/test_kernels_batch_bits.py), so the plan is free to choose.
    ``small``: the layer's `small_tile_scale`, as in `tile_width`. Remembered, as `tile_width`.
    """
    key = (B, threads, dtype, weight_bytes, bt, small)
    rest = _REST.get(key)
    if rest is None:
        if len(_REST) >= _WIDTHS_KEPT:
            _REST.clear()
        lv = lanes(dtype)
        lane_tile = bt > FEW and bt % lv == 0
        rest = _plan_cost(B, bt, max(threads, 1), lv, weight_bytes, small)[1] if lane_tile or bt == FEW else 0
        _REST[key] = rest
    return rest


def tiles(lengths: np.ndarray, bt: int):
    """Sort by length (longest first) and cut into tiles of ``bt``.

    Returns (order, tile_ptr): tile k holds ``order[tile_ptr[k]:tile_ptr[k+1]]``;
    tile 0 has the longest sequences, so workers taking tiles in order balance
    like longest-processing-time-first.
    """
    B = lengths.shape[0]
    order = np.zeros(1, np.int64) if B == 1 else np.argsort(-lengths, kind="stable").astype(np.int64, copy=False)
    tile_ptr = np.arange(0, B + bt, bt, dtype=np.int64)  # the last start past B (or B itself) becomes B:
    tile_ptr[-1] = B  # strictly increasing, no empty tile
    return order, tile_ptr


def split_tiles(lengths: np.ndarray, bt: int, rest: int, lv: int):
    """`tiles` with a remainder part: the longest ``B - B % unit`` sequences in tiles of ``bt``, the others in
    tiles of ``rest`` (`remainder_width`; 0: none). The unit is ``lv`` (lanes per SIMD vector) for lane tiles,
    FEW for FEW tiles.

    Returns (order, parts): ``parts`` is ((width, tile_ptr), ...), lane tiles
    first; every part's ``tile_ptr`` indexes the one ``order``.
    """
    order, tile_ptr = tiles(lengths, bt)
    B = lengths.shape[0]
    if not rest:
        return order, ((bt, tile_ptr),)
    n = B - B % (FEW if bt == FEW else lv)
    bt = min(bt, n)  # no lanes beyond the whole vectors
    lane = np.arange(0, n + bt, bt, dtype=np.int64)
    lane[-1] = n
    small = np.arange(n, B + rest, rest, dtype=np.int64)
    small[-1] = B
    return order, ((bt, lane), (rest, small))


def tile_steps(lengths: np.ndarray, order: np.ndarray, tile_ptr: np.ndarray) -> np.ndarray:
    """Where each tile's steps start in a buffer of the tiles' own steps: int64 (tiles + 1,), the last the total.

    Tile k runs as many steps as its longest sequence, its first
    (`tiles` sorts longest first), so ``toff[k + 1] - toff[k]`` is that length.
    """
    toff = np.zeros(tile_ptr.size, np.int64)
    np.cumsum(lengths[order[tile_ptr[:-1]]], out=toff[1:])
    return toff


TEAM_MARGIN = 1.1
"""A batch over L2 runs as part teams (`team_width`) when the cost model has them finish this much sooner than its
tiles: a team waits for both threads at every step, which on a shared machine may cost a time slice."""

_TEAMS: dict = {}


def team_width(B: int, threads: int, dtype, weight_bytes: int, bt: int, rest: int, small: float = 1.0) -> bool:
    """Whether a batch whose packed weights do not fit in a core's L2 runs as teams on two threads, part after part
    (`rnnjit.kernels._part_teams`), instead of in tiles of ``bt`` (and a remainder of ``rest``: `remainder_width`)
    handed out to the threads.

    The teams: the batch's whole SIMD vectors in one lane tile, then the
    ``B % lanes`` left over in FEW tiles side by side; each thread computes
    half of each step's gate rows of both, so the threads' work is equal
    whatever B is, and each reads half the weights per step. Tiles per thread
    leave one thread idle when they do not share out evenly (B=37: 16 lanes
    and a FEW tile each, 24.5 sequence-steps per thread against 18.5) and each
    tile reads every weight from L3 each step. Costed like tiles
    (`_tile_cost`, `STREAMED_FEW_COST`), halved, streamed while half the
    weights are still over L2; taken when `TEAM_MARGIN` sooner.
    """
    key = (B, threads, dtype, weight_bytes, bt, rest, small)
    team = _TEAMS.get(key)
    if team is None:
        if len(_TEAMS) >= _WIDTHS_KEPT:
            _TEAMS.clear()
        team = _TEAMS[key] = _team_width(B, threads, dtype, weight_bytes, bt, small)
    return team


def _team_width(B: int, threads: int, dtype, weight_bytes: int, bt: int, small: float) -> bool:
    lv = lanes(dtype)
    vecs = B // lv
    if threads != 2 or weight_bytes <= L2_BYTES or not 0 < vecs <= TEAM_VECS or B <= FEW * 4:
        return False
    now = _plan_cost(B, bt, threads, lv, weight_bytes, small)[0]
    half = weight_bytes / threads > L2_BYTES
    team = _tile_cost(vecs, half) * lv + _ceil_div(B % lv, FEW) * STREAMED_FEW_COST * small
    return team / threads * TEAM_MARGIN < now


TEAM_VECS = 2 * 3
"""Most SIMD vectors of the lane tile of part teams (`team_width`): two micro-kernel rows."""
