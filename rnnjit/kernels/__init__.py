"""The numba engine: compiled, batch-parallel recurrent kernels.

Implements the engine contract of `rnnjit.reference` (``prepare`` once per
model, ``run`` per batch) with the same numbers: max abs difference to the
reference engine within 1e-5 for float32 and 1e-10 for float64.

Modules: `config` (compile flags, the only place they are set), `precision`
(what each precision means to the kernels: lanes, element types, product),
`_simd` (register-blocked matmul micro-kernels and atomics as numba
intrinsics), `activations` (vectorizable tanh/sigmoid), `update` (the cell
update), `pack` (weight packing, numpy), `layer` (the tile kernel), `team`
(one tile on several threads), `wavefront` (a stack of layers in one tile,
its layers at once), `tiling` (tile width cost model, tiles by length, a
batch's remainder in small tiles), `team_policy` (when a team or a wavefront
runs), `pool` (the worker threads), `hot` (the second thread of a two-thread
team, kept waiting between calls), and
this wrapper, which checks and converts inputs once, builds the kernels'
arguments (`kernel_args`) and shapes results.

Threads: the worker kernel is compiled ``nogil`` and this wrapper runs one
worker per thread from a small thread pool (`pool`), instead of a
``parallel=True`` ``prange`` launcher. Measured on the reference machine: a
prange launcher around the worker costs 7-12 s of extra first-call compile
(numba links the worker into the parallel region and LLVM optimizes it a
second time), which broke the 15 s budget; the pool costs nothing to compile
and ~20 us per launch. The number of workers is ``threads=`` or else numba's
current setting (``NUMBA_NUM_THREADS``, `numba.set_num_threads`); numba's
setting itself is never changed (the kernels have no ``prange``).
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numba
import numpy as np

from rnnjit.kernels import team_policy
from rnnjit.kernels._simd import FEW, MR
from rnnjit.kernels.layer import OUT_ALL, OUT_LAST, OUT_MAX, OUT_NONE, OUT_SUM, STEP_BLOCK, project_all, run_worker
from rnnjit.kernels.pack import (
    CELL_CODES, PackedLayer, aligned_empty, pack_layer, padded_hidden, projected_elements,
)
from rnnjit.kernels.pool import parallel, run_in_order, run_jobs
from rnnjit.kernels.precision import PRECISIONS, Precision, lanes, missing_features, precision_of, target_cpu
from rnnjit.kernels import rows as _rows
from rnnjit.kernels.rows import one_thread_steps, prepare_steps, run_steps
from rnnjit.kernels.hot import arg_names, hot_available, run_team_hot, run_workers_hot
from rnnjit.kernels import team as team_kernel
from rnnjit.kernels.team import NTH, SPINS, STEAL, TID, run_team, sync_words
from rnnjit.kernels.team_policy import team_chunks, wavefront_workers
from rnnjit.kernels.wavefront import counters
from rnnjit.kernels.tiling import remainder_width, small_tile_scale, split_tiles, team_width, tile_steps, tile_width
from rnnjit.errors import PrecisionUnavailableError
from rnnjit.spec import RNNSpec

__all__ = ["check_precision", "prepare", "run", "prepare_steps", "run_steps", "Prepared", "tile_width",
           "one_thread_plan", "one_thread_key", "run_planned", "one_thread_steps"]


@dataclass(frozen=True)
class Prepared:
    """A model's weights packed for the kernels, for one precision (``dtype``: the compute dtype)."""

    spec: RNNSpec
    dtype: np.dtype
    layers: tuple[PackedLayer, ...]  # index layer * D + direction
    precision: Precision = PRECISIONS["float32"]
    # what every call reads from the weights alone (`_layout`), built on the first call
    cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)


PRODUCT_CPUS = {
    "dpbf16": "AVX512_BF16: Intel Cooper Lake, Sapphire Rapids or later; AMD Zen 4 or later",
    "dpbusd": "AVX512_VNNI: Intel Cascade Lake, Ice Lake or later; AMD Zen 4 or later",
}


def check_precision(name: str) -> Precision:
    """The table entry of precision ``name``; `PrecisionUnavailableError` when the compile target lacks
    its instructions."""
    if name not in PRECISIONS:
        raise ValueError(f"precision {name!r} is not known; expected one of {', '.join(PRECISIONS)}")
    prec = PRECISIONS[name]
    missing = missing_features(prec)
    if missing:
        raise PrecisionUnavailableError(
            f"precision {name!r} needs the CPU instructions {', '.join(missing)}, which this CPU ({target_cpu()}) "
            f"lacks; score with precision='float32' instead, or on a CPU that has them "
            f"({PRODUCT_CPUS[prec.product]})"
        )
    return prec


def prepare(spec: RNNSpec, weights: Mapping[str, np.ndarray], precision: str | None = None) -> Prepared:
    """Pack ``weights`` (PyTorch state_dict names, prefix ``spec.prefix``) for `run`.

    ``precision`` None: the weights' dtype (float64 stays float64, anything
    else becomes float32, PyTorch's default); else a name of
    `rnnjit.kernels.precision.PRECISIONS` (``"bf16"``, ``"int8"``). A precision whose
    instructions the compile target lacks raises `PrecisionUnavailableError`
    here, before anything is compiled.
    """
    if precision is None:
        prec = precision_of(np.asarray(weights[f"{spec.prefix}weight_ih_l0"]).dtype)
    else:
        prec = check_precision(precision)
    layers = []
    for _, _, sfx in spec.suffixes():
        w = spec.direction_weights(weights, sfx)
        layers.append(pack_layer(spec.cell, w, spec.hidden_size, spec.h_out, prec))
    return Prepared(spec, prec.dtype, tuple(layers), prec)


def _writable(a: np.ndarray) -> np.ndarray:
    """A read-only array (Arrow zero-copy, np.load mmap) would make numba compile a second kernel: copy it."""
    return a if a.flags.writeable else a.copy()


SELECT_MODES = {"all": OUT_ALL, "last": OUT_LAST, "final": OUT_NONE, "sum": OUT_SUM, "mean": OUT_SUM, "max": OUT_MAX}
"""The top layer's output mode for each ``select`` (mean is the sum divided by the length afterwards)."""


def run(prepared: Prepared, x, lengths, h0=None, c0=None, select="all", threads=None, table=None):
    """Run the recurrent stack; the contract is in `rnnjit.reference`.

    ``threads`` is the number of worker threads for this call (default: numba's thread count).
    With ``table`` (an embedding, (V, input_size)), ``x`` is (B, T) token ids
    and the first layer reads each step's table row inside its tile.
    """
    if select not in SELECT_MODES:
        raise ValueError(f"select must be one of {', '.join(SELECT_MODES)}, got {select!r}")
    dtype = prepared.dtype
    lay = _layout(prepared)
    D, L, Ho, H, I = lay.sizes
    rows, tok, B, T = _operands(x, table, dtype, I)
    lengths = _writable(np.ascontiguousarray(lengths, dtype=np.int64))
    h_shape = (L * D, B, Ho)  # `RNNSpec.state_shapes`
    hn = np.zeros(h_shape, dtype)
    cn = np.zeros((L * D, B, H), dtype)
    h0 = None if h0 is None else _writable(np.ascontiguousarray(h0, dtype=dtype))  # None: zeros (`_run_planned`)
    c0 = None if (c0 is None or not lay.has_c) else _writable(np.ascontiguousarray(c0, dtype=dtype))
    y_all = np.zeros((B, T, D * Ho), dtype) if select == "all" else None
    y_last = np.zeros((B, 1, D * Ho), dtype) if y_all is None else None
    if B > 0 and T > 0:
        n = numba.get_num_threads() if threads is None else int(threads)
        if n < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        _run_layers(prepared, rows, tok, lengths, h0, c0, hn, cn, SELECT_MODES[select], y_all, y_last, n)
    return _result(lay, select, y_all if select == "all" else y_last, hn, cn, lengths)


def _operands(x, table, dtype, I: int, no_tokens=None):
    """(rows, token ids, B, T) of `run`'s ``x`` and ``table``: the (B*T, I) input rows and a (0, T) token array
    (``no_tokens`` if given), or the table's rows and the (B, T) token ids; converted as the workers take them,
    shapes checked."""
    if table is None:
        x = _writable(np.ascontiguousarray(x, dtype=dtype))
        if x.ndim != 3 or x.shape[2] != I:
            raise ValueError(f"x has shape {x.shape}; expected (batch, time, {I})")
        B, T, _ = x.shape
        return x.reshape(B * T, I), (np.zeros((0, T), np.int64) if no_tokens is None else no_tokens), B, T
    tok = _writable(np.ascontiguousarray(x, dtype=np.int64))
    rows = _writable(np.ascontiguousarray(table, dtype=dtype))
    if tok.ndim != 2 or rows.ndim != 2 or rows.shape[1] != I:
        raise ValueError(f"token ids {tok.shape} and table {rows.shape}; expected (batch, time) and (vocabulary, {I})")
    return rows, tok, tok.shape[0], tok.shape[1]


def _result(lay, select, top, hn, cn, lengths):
    """`run`'s (y, hn, cn) from the top layer's output ``top``: (B, T, D*h_out) for "all", else (B, 1, D*h_out)."""
    c = cn if lay.has_c else None
    if select == "all":
        return top, hn, c  # C-contiguous as allocated
    D, L = lay.sizes[:2]
    if select == "final":
        y = np.concatenate([hn[(L - 1) * D + d] for d in range(D)], axis=1)
    else:
        y = top[:, 0, :]
        if select == "mean":
            y = y / lengths[:, None].astype(top.dtype)
    return np.ascontiguousarray(y), hn, c


def one_thread_plan(prepared: Prepared, lengths: np.ndarray, T: int, select: str, tokens: bool):
    """The call plan of a small call that `run` runs on the calling thread alone whatever ``threads`` is
    (`SMALL_LENGTHS` sequences, less work than `ONE_THREAD_WORK`), or None; for `run_planned`.

    ``lengths``: int64, checked (1 <= length <= T); ``tokens``: the call reads token ids through a table.
    Only the lengths decide it, so a caller may keep the plan per lengths (`rnnjit.small_call`).
    """
    lay = _layout(prepared)
    D, L = lay.sizes[:2]
    B = lengths.shape[0]
    if select not in SELECT_MODES or not 0 < B <= SMALL_LENGTHS or T < 1:
        return None
    if float(sum(lengths.tolist())) * lay.wbytes * L * D >= ONE_THREAD_WORK:
        return None
    return _call_plan(prepared, lay, lengths, T, SELECT_MODES[select], tokens, None, None, True)


def one_thread_key() -> tuple:
    """What `one_thread_plan` and `one_thread_steps` answer from besides a call's lengths (the thresholds, and
    `_projected`, which bench/projection.py swaps): a caller keeping their answers per lengths keys them with it."""
    return _projected, ONE_THREAD_WORK, _rows.SPLIT_ROWS_WORK, SMALL_LENGTHS


def run_planned(prepared: Prepared, plan: _CallPlan, x, lengths, select, table=None):
    """`run` on one thread with `one_thread_plan`'s ``plan`` for these ``lengths`` (the same bits), zero initial
    states: no checks of the lengths, no plan looked up; ``x``/``table`` taken as `run` takes them (`_operands`)."""
    dtype = prepared.dtype
    lay = _layout(prepared)
    D, L, Ho, H, I = lay.sizes
    rows, tok, _, _ = _operands(x, table, dtype, I, plan.no_tokens)
    B, T, Y = plan.shape
    hn = np.zeros((L * D, B, Ho), dtype)
    cn = np.zeros((L * D, B, H), dtype)
    top = np.zeros((B, T if select == "all" else 1, Y), dtype)
    _run_planned(plan, rows, tok, lengths, None, None, hn, cn, top)
    return _result(lay, select, top, hn, cn, lengths)


SMALL_LENGTHS = 64
"""Batches up to this many sequences have their lengths summed in Python (`_run_layers`), larger ones with numpy,
and keep their call plans (`_CallPlan`)."""

ONE_THREAD_WORK = 8e6
"""Steps x packed weight bytes of a whole launch (every layer and direction) below which it runs on the
calling thread alone: ~80 us of one thread's work (a BiLSTM H=32 direction: 24 steps x 50 KB in ~12 us),
less than what handing tiles, directions or layers to pool threads costs on a small call (~30 us a
hand-off here; measured: bench/report_notes.md, "Wide output layers on few rows"). Tile widths and
threads do not change a result's bits."""

SPLIT_WORK = 3e7
"""Steps x packed weight bytes of one direction above which a bidirectional layer runs its directions at once.

Below it (a polyphone tagger's sentence alone: 24 steps x 50 KB) the work of
a direction is a few microseconds, less than handing one to a pool thread
(15-90 us, bench/report_notes.md); measured at load 4: tagger batch of one
0.36 ms with the split, onnxruntime 0.13 ms.
"""


@dataclass(frozen=True)
class _Layout:
    """What `_run_layers` reads from the packed weights on every call, worked out once per `Prepared`."""

    static: tuple[dict, ...]  # per layer * D + direction: the kernel arguments that do not depend on the call
    wbytes: int  # the largest layer-direction's packed weights
    hbytes: int  # the largest of what a one-sequence tile reads per step once its inputs are projected (``wgh``)
    w0bytes: int  # the first layer-direction's (`SPLIT_WORK`)
    small: float  # what one- and FEW-sequence tiles cost over their constants (`tiling.small_tile_scale`)
    sizes: tuple[int, int, int, int, int]  # the spec's (directions, layers, h_out, hidden, input size)
    has_c: bool  # the cell has a cell state (LSTM)


def _layout(prepared: Prepared) -> _Layout:
    lay = prepared.cache.get("layout")
    if lay is None:
        spec = prepared.spec
        D, Ho, H = spec.num_directions, spec.h_out, spec.hidden_size
        static = tuple(
            dict(
                cell=CELL_CODES[spec.cell], w=pk.w, wg=pk.wg, kstart=pk.kstart, klen=pk.klen, wr=pk.wr, wrg=pk.wrg,
                wgh=pk.wgh, hgroup=pk.hgroup,
                ycol=(k % D) * Ho, reverse=k % D == 1, hidden=H, hp=padded_hidden(H), h_out=Ho, proj=spec.proj_size,
                qs=pk.qs, qc=pk.qc, rqs=pk.rqs, rqc=pk.rqc, split=pk.split,
            )  # fmt: skip
            for k, pk in enumerate(prepared.layers)
        )
        lay = _Layout(static, max(pk.w.nbytes for pk in prepared.layers), max(pk.wgh.nbytes for pk in prepared.layers),
                      prepared.layers[0].w.nbytes, small_tile_scale(spec.gates, H),
                      (D, spec.num_layers, Ho, H, spec.input_size), spec.has_cell_state)  # fmt: skip
        prepared.cache["layout"] = lay
    return lay


@dataclass(frozen=True)
class _Plan:
    """How one direction of a layer runs: its sequences' ``order`` (longest first), the ``parts`` ((tile width,
    tile_ptr), ...: lane tiles, then the remainder's small tiles, `rnnjit.kernels.tiling.split_tiles`), how many
    ``workers`` run them and the ``team`` chunks of a one-tile plan run as a team (or None)."""

    order: np.ndarray
    parts: tuple
    workers: int
    team: tuple | None
    part_teams: tuple = ()  # per part, its team's chunks, for a plan of two parts run as teams (`_part_teams`)

    @property
    def one_tile(self) -> bool:
        return len(self.parts) == 1 and self.parts[0][1].size == 2


def _plan(prepared, lengths, lay, threads) -> _Plan:
    """The `_Plan` of one direction on ``threads`` threads.

    Whether one tile runs as a team depends on the weight bytes each step reads: for a one-sequence tile, whose
    input columns are projected first, the h columns only (``lay.hbytes``; the team's chunks read ``wgh``).
    A batch of 2-16 in FEW or one-sequence tiles runs as one team of FEW tiles (`team_policy.FEW_TEAM_TILES`)
    where `team_chunks` gives one, and the tiles would not divide evenly among the threads or the weights are
    over `team_policy.FEW_TEAM_EVEN_BYTES`.
    """
    wbytes, B = lay.wbytes, lengths.shape[0]
    bt = tile_width(B, threads, prepared.dtype, wbytes, lay.small)
    if bt <= FEW and 1 < B <= team_policy.FEW_TEAM_TILES * FEW and prepared.precision.k_pack == 1:
        # FEW tiles side by side as one team, not a tile per thread (`team_policy.FEW_TEAM_BYTES`), while teams run
        team = team_chunks(prepared.spec, FEW, threads, wbytes, -(-B // FEW))
        if team and (B <= FEW or -(-B // FEW) % threads or wbytes > team_policy.FEW_TEAM_EVEN_BYTES):
            order, parts = split_tiles(lengths, FEW, 0, lanes(prepared.dtype))
            return _Plan(order, parts, threads, team)
    rest = remainder_width(B, threads, prepared.dtype, wbytes, bt, lay.small)
    if (prepared.precision.k_pack == 1 and team_width(B, threads, prepared.dtype, wbytes, bt, rest, lay.small)
            and float(lengths.max()) * wbytes >= PART_TEAM_WORK):  # fmt: skip
        plan = _part_teams(prepared, lengths, threads, wbytes)
        if plan is not None:
            return plan
    order, parts = split_tiles(lengths, bt, rest, lanes(prepared.dtype))
    workers = max(1, min(threads, sum(ptr.size - 1 for _, ptr in parts)))
    plan = _Plan(order, parts, workers, None)
    # one tile on several threads (`team`) only where the products read z itself: a packed z would need
    # every chunk of a step done before the next step's z is packed
    if plan.one_tile and bt != FEW and prepared.precision.k_pack == 1:
        step_bytes = lay.hbytes if bt == 1 and lay.hbytes else wbytes
        team = team_chunks(prepared.spec, bt, threads, step_bytes)
        if team:
            plan = _Plan(order, parts, threads, team)
    return plan


PART_TEAM_WORK = 5e7
"""Steps x packed weight bytes of a layer from which a batch runs as part teams (`_part_teams`). A team waits for
both threads every step, and a short call's second thread often joins late: LSTM 64->256 (1.3 MB), B=25-49, 2
threads, interleaved, `chrt -f 1`, load 7: T=20 (2.6e7) 0.87-0.96x the tiles' wall time, T=100 (1.3e8) 1.02-1.17x
(bench/report_notes.md, "Mid-size batches over L2 as teams, part after part")."""


def _part_teams(prepared, lengths, threads, wbytes) -> _Plan | None:
    """A batch over a core's L2 as teams, one part after the other (`tiling.team_width`): its whole SIMD vectors
    in one lane tile, the rest in FEW tiles side by side; each thread computes half of every step's gate rows
    for all of them, so it reads half the weights per step, not all of them once per tile it runs. None where
    a part cannot run as a team (`team_chunks`: teams paused, an LSTM projection)."""
    lv = lanes(prepared.dtype)
    B = lengths.shape[0]
    n = B - B % lv
    order, parts = split_tiles(lengths, n, FEW if B % lv else 0, lv)
    teams = tuple(team_chunks(prepared.spec, bt, threads, wbytes, ptr.size - 1) for bt, ptr in parts)
    if not all(teams):
        return None
    return _Plan(order, parts, threads, teams[0], teams)


def _in_order(calls) -> None:
    """Run ``fn(*args)`` for each ``(fn, args)`` of ``calls`` in turn: one thread's share of a plan's parts
    (each worker call takes its part's tiles until none is left, then the thread moves on to the next part)."""
    for fn, args in calls:
        fn(*args)


def _run_layers(prepared, rows, tok, lengths, h0, c0, hn, cn, top_mode, y_all, y_last, threads):
    """Every layer and direction; the first layer reads ``rows``/``tok`` (see `run_worker`), the top one writes ``top_mode``.

    A bidirectional layer on two or more threads runs its directions at the
    same time, each on its share of the threads with its own tiles (no team):
    the two directions are the same work, so the threads stay balanced at any
    batch size, and a small batch needs no per-step hand-off between threads
    (a batch of one ran each direction as a team, whose every step waits for
    both threads; on a shared machine a stalled step costs a time slice).
    This holds also where one tile would run as a team (a step's weights
    over a core's L2): the directions one after the other, each as a team,
    measured 5-10% faster on a quiet machine but 15-25% slower at load 5-6,
    interleaved (bench/report_notes.md, "Layers over L2 at a batch of one").
    At a batch of 2-16 in FEW teams whose weights are over
    `team_policy.FEW_TEAM_EVEN_BYTES` the directions run in turn, each as a
    team: each thread then reads half of a direction's weights per step, not
    all of them (OCR head H=384 x2 blocks, B=4-16: 1.05-1.15x; at H=256, 2.1
    MB a direction, the split was as fast or faster; bench/report_notes.md,
    "Stacks and bidirectional layers at batches of 2-16").
    A stack of one-directional layers in one tile (a batch of one) runs its
    layers at once instead, each behind the layer below (`wavefront`).
    A plan of two parts (lane tiles and the remainder's small tiles,
    `rnnjit.kernels.tiling.remainder_width`) runs each thread through the
    parts in turn (`_in_order`).

    What depends only on the lengths and these choices is a `_CallPlan`,
    kept for small batches (`_call_plan`).
    """
    B, T = lengths.shape[0], tok.shape[1]
    lay = _layout(prepared)
    D, L = lay.sizes[:2]
    # a list's sum and max: numpy's reductions cost ~1.3 us each on a handful of lengths
    small = B <= SMALL_LENGTHS
    total, longest = (sum(v), max(v)) if small and (v := lengths.tolist()) else (lengths.sum(), lengths.max())
    plans = choice = None  # one thread: no split, team or wavefront, whatever the machine's load (`_call_plan`)
    b1_timed = False
    if float(total) * lay.wbytes * L * D < ONE_THREAD_WORK:
        threads = 1  # less work than handing some of it to a pool thread costs
    else:
        plans = [_plan(prepared, lengths, lay, threads)]
        # a FEW team over `team_policy.FEW_TEAM_EVEN_BYTES` keeps both threads on each direction in turn
        few_team = plans[0].team and plans[0].parts[0][0] == FEW and lay.wbytes > team_policy.FEW_TEAM_EVEN_BYTES
        if D == 2 and threads >= 2 and float(total) * lay.w0bytes >= SPLIT_WORK and not few_team:
            split = [_plan(prepared, lengths, lay, t) for t in (threads // 2, threads - threads // 2)]
            if not any(p.team for p in split):
                plans = split
        # a stack of one-directional layers in one tile: its layers at once, each behind the one below (`wavefront`)
        waves = wavefront_workers(prepared.spec, plans[0].one_tile, threads, float(longest) * lay.wbytes,
                                  plans[0].team is not None)  # fmt: skip
        # what tells two calls' plans apart besides their lengths (the tiles follow from lengths and widths)
        choice = (tuple((tuple((bt, ptr.size) for bt, ptr in p.parts), p.workers, p.team, p.part_teams) for p in plans),
                  waves)  # fmt: skip
        # a batch of one in L2 that could run as a team: its time per step decides the next calls
        # (`team_policy.b1_team`; not a call too short for a second thread, whose time per step is mostly its own)
        parts0 = plans[0].parts
        b1_timed = (threads >= 2 and len(plans) == 1 and len(parts0) == 1 and parts0[0][0] == 1 and not waves
                    and team_policy.TEAM_MIN_BYTES <= lay.hbytes <= team_policy.L2_BYTES)  # fmt: skip
    plan = _call_plan(prepared, lay, lengths, T, top_mode, tok.shape[0] > 0, choice, plans, small)
    t0 = time.perf_counter()
    _run_planned(plan, rows, tok, lengths, h0, c0, hn, cn, y_all if top_mode == OUT_ALL else y_last)
    team_policy.end_call()  # a call whose teams all ran alone is a strike (`team_policy.ALONE_STRIKES`)
    if b1_timed and longest:
        team_policy.note_b1(lay.hbytes, plans[0].team is not None, (time.perf_counter() - t0) / (float(longest) * L * D))


CALL_PLANS = 256
"""Call plans (`_CallPlan`) a `Prepared` keeps (one per lengths and choices of a small call), then all dropped."""

KEPT_ZEROS_BYTES = 64 << 10
"""Largest zero initial state (all layers and directions) a kept plan holds: `CALL_PLANS` of them stay small."""


@dataclass(frozen=True)
class _CallPlan:
    """What `_run_layers` works out for a call that depends only on its lengths and its choice of threads.

    Kept per `Prepared` for small batches (`SMALL_LENGTHS`), per lengths, T,
    output mode, token ids or features and the choices made for the call
    (tile widths and parts, workers, team chunks, the direction split and a
    wavefront's threads: made again on every call, as they follow the
    machine's load, `team_policy`). A repeat call (a batch of one, the same
    sentence length) then only puts its own arrays into prepared argument
    lists: the tiles, the input projection's columns and the worker's 40
    arguments picked by name cost ~6 us per call on the polyphone tagger's
    batch of one, its whole recurrent launch ~25 us (bench/report_notes.md,
    "A batch of one's Python"). Nothing in a plan is written by a call:
    calls on several threads share it.
    """

    layers: tuple  # per layer: (each part's output kind, per direction (k, workers, per part (part, arguments)))
    dispatch: int  # `_PARALLEL`, `_JOBS` (the directions at once), `_TEAM` or `_WAVES`
    waves: int  # a wavefront's threads, or 0
    team: tuple | None  # a team's chunks (`team_chunks`)
    h0: tuple | None  # per layer * D + direction: zero initial states, read when a call gives none (never
    c0: tuple | None  # written); None above `KEPT_ZEROS_BYTES`: the call allocates them
    yt_sizes: tuple  # per part: values of a layer's outputs in its tiles' layout (``yt``), 0 without
    empty_rows: np.ndarray  # (0, h_out): the input of a layer reading the layer below's tiles (``xt``)
    no_tokens: np.ndarray  # (0, T)
    none: np.ndarray  # (0,): no ``xt``/``yt``
    no_ready: np.ndarray  # (0,) int64: no wavefront's ``ready``
    shape: tuple  # (B, T, D * h_out)


_TILED, _ALL, _TOP = 0, 1, 2  # a part's layer output: its tiles' layout, the (B, T, D*h_out) rows, the call's result
_PARALLEL, _JOBS, _TEAM, _WAVES = 0, 1, 2, 3
_CALL_SLOTS = ("x", "tok", "h0", "c0", "y", "hn", "cn", "lens", "next_tile", "xt", "yt", "ready")


def _call_plan(prepared, lay, lengths, T, top_mode, tokens, choice, plans, keep) -> _CallPlan:
    """The call's `_CallPlan`: kept (``keep``) or built from ``plans`` (each direction's `_Plan`; None: one
    thread) and ``choice`` (what tells them apart, with the wavefront's threads)."""
    calls = key = None
    if keep:
        # `_projected` is in the key: bench/projection.py swaps it to time tiles without the projection
        key = (lengths.tobytes(), T, top_mode, tokens, _projected, choice)
        calls = prepared.cache.get("calls")
        if calls is None:
            calls = prepared.cache.setdefault("calls", {})
        plan = calls.get(key)
        if plan is not None:
            return plan
    if plans is None:
        plans, waves = [_plan(prepared, lengths, lay, 1)], 0
    else:
        waves = choice[1]
    dtype = prepared.dtype
    D, L, Ho, H = lay.sizes[:4]
    B = lengths.shape[0]
    team = plans[0].team
    dispatch = _WAVES if waves else _TEAM if team else _JOBS if len(plans) == 2 else _PARALLEL
    order0, parts0 = plans[0].order, plans[0].parts
    # between the layers of a one-directional stack, each layer's h stays in the lane tiles' layout
    # (`run_worker`'s ``xt``/``yt``); not for teams and wavefronts, whose layers read the (B, T, H) rows, nor
    # for FEW and one-sequence tiles (a remainder part's among them)
    stacked = D == 1 and L > 1 and not waves and not team
    tiled = [stacked and bt > FEW for bt, _ in parts0]
    toff = [tile_steps(lengths, order0, ptr) if t else np.zeros(1, np.int64) for t, (_, ptr) in zip(tiled, parts0)]
    layers = []
    for layer in range(L):
        kinds = tuple((_TILED if t else _ALL) if layer < L - 1 else _TOP for t in tiled)
        dirs = []
        for d in range(D):
            k = layer * D + d
            plan = plans[d % len(plans)]
            parts = []
            for i, (bt, tile_ptr) in enumerate(plan.parts):
                kx, xk0 = _projected(prepared, prepared.layers[k], bt)
                j = i if len(plans) == 1 else 0  # the part whose input, output and tile layout it takes
                mode = (OUT_NONE if kinds[j] == _TILED else OUT_ALL) if layer < L - 1 else top_mode
                values = {**lay.static[k], **dict.fromkeys(_CALL_SLOTS), "out_mode": mode, "bt": bt,
                          "order": plan.order, "tile_ptr": tile_ptr, "kx": kx, "xk0": xk0, "lay": layer,
                          "toff": toff[j]}  # fmt: skip
                if dispatch == _TEAM:
                    values["chunks"] = plan.part_teams[i] if plan.part_teams else team
                    values["team_plan"] = _team_plan(values, lengths, T, dtype, values["chunks"][1])
                parts.append((j, values if dispatch == _TEAM else list(kernel_args(run_worker, values))))
            dirs.append((k, plan.workers, tuple(parts)))
        layers.append((kinds, tuple(dirs)))
    zh = zc = None
    if L * D * B * max(H, Ho) * dtype.itemsize <= KEPT_ZEROS_BYTES:
        zh, zc = tuple(np.zeros((L * D, B, Ho), dtype)), tuple(np.zeros((L * D, B, H), dtype))
    yt_sizes = tuple(int(o[-1]) * Ho * bt if t else 0 for t, o, (bt, _) in zip(tiled, toff, parts0))
    plan = _CallPlan(tuple(layers), dispatch, waves, team, zh, zc, yt_sizes, np.zeros((0, Ho), dtype),
                     np.zeros((0, T), np.int64), np.zeros(0, dtype), counters(0), (B, T, D * Ho))  # fmt: skip
    if keep:
        if len(calls) >= CALL_PLANS:
            calls.clear()
        calls[key] = plan
    return plan


_SLOTS = tuple(arg_names(run_worker).index(n) for n in _CALL_SLOTS)


def _run_planned(plan: _CallPlan, rows, tok, lengths, h0, c0, hn, cn, top):
    """Every layer and direction of a call with ``plan``'s arguments (`_call_plan`) and this call's arrays;
    ``top``: the top layer's output array."""
    ix, itok, ih0, ic0, iy, ihn, icn, ilens, inext, ixt, iyt, iready = _SLOTS
    B, T, Y = plan.shape
    dtype = top.dtype
    dispatch, none = plan.dispatch, plan.none
    hot = HOT_WORKERS and hot_available(dtype)
    ready = counters(len(plan.layers)) if dispatch == _WAVES else plan.no_ready
    if h0 is None:
        h0 = plan.h0 or np.zeros(hn.shape, dtype)
    if c0 is None:
        c0 = plan.c0 or np.zeros(cn.shape, dtype)
    inputs = [(rows, tok, none)] * len(plan.yt_sizes)  # each part's layer input: rows, token ids, tile-layout rows
    stack = []
    for kinds, dirs in plan.layers:
        outs = []  # each part's (y, yt)
        below = None  # the (B, T, D * h_out) output of the layer, for the layer above, if a part writes it
        for kind, size in zip(kinds, plan.yt_sizes):
            if kind == _TILED:
                yt = aligned_empty(size, dtype)  # every value read is written first
                outs.append((np.zeros((B, 1, Y), dtype), yt))
            elif kind == _ALL:
                below = np.zeros((B, T, Y), dtype) if below is None else below
                outs.append((below, none))
            else:
                outs.append((top, none))
        jobs = []
        for k, workers, parts in dirs:
            calls = []
            for j, base in parts:
                (x_in, tok_in, xt), (out, yt) = inputs[j], outs[j]
                if dispatch == _TEAM:  # each part a team in turn
                    values = dict(base)  # `_run_team` adds its own entries
                    values.update(x=x_in, tok=tok_in, h0=h0[k], c0=c0[k], y=out, hn=hn[k], cn=cn[k], lens=lengths,
                                  next_tile=np.zeros(1, np.int64), xt=xt, yt=yt, ready=ready)  # fmt: skip
                    _run_team(values, workers, values["chunks"])
                    continue
                a = base.copy()
                a[ix], a[itok], a[iy], a[ilens], a[ixt], a[iyt], a[iready] = x_in, tok_in, out, lengths, xt, yt, ready
                a[ih0], a[ic0], a[ihn], a[icn], a[inext] = h0[k], c0[k], hn[k], cn[k], np.zeros(1, np.int64)
                calls.append((run_worker, a))
            if dispatch == _WAVES:
                stack += calls
            elif dispatch == _JOBS:
                jobs += [[a for _, a in calls]] * workers
            elif not calls:
                pass
            elif workers == 2 and hot and run_workers_hot(own := [a for _, a in calls], own):
                pass  # the second thread's share on the hot helper (`hot`), not woken through the pool
            elif len(calls) == 1:
                parallel(workers, run_worker, calls[0][1])
            else:
                parallel(workers, _in_order, (calls,))
        if len(jobs) == 2 and hot and run_workers_hot(jobs[1], jobs[0]):
            pass  # the directions at once: the first on the hot helper, taken back here if it has not started
        elif jobs:
            run_jobs([(run_worker, a[0]) if len(a) == 1 else (_in_order, ([(run_worker, b) for b in a],))
                      for a in jobs])  # fmt: skip
        if kinds[0] != _TOP:
            inputs = [(plan.empty_rows, plan.no_tokens, yt) if kind == _TILED
                      else (out.reshape(B * T, Y), plan.no_tokens, none) for kind, (out, yt) in zip(kinds, outs)]
    if stack:
        team_policy.note_wave(*run_in_order(plan.waves, stack))


HOT_WORKERS = True
"""Whether a plan's tile workers on two threads (`_PARALLEL`, and `_JOBS`: the directions at once) run the second
thread's share on the hot helper (`hot.run_workers_hot`, a store to memory) rather than through the pool (a
wake-up, ~50 us a call: bench/report_notes.md, "Small calls on two threads: tile workers on the hot helper")."""


def _projected(prepared, pk, bt) -> tuple[int, int]:
    """(``kx``, ``xk0``) of `run_worker`: the operand elements a one-sequence tile projects for all its steps
    first (`rnnjit.kernels.pack.projected_elements`; 0: none, as for wider tiles), and the first input column
    it still gathers into ``z`` per step."""
    kx = projected_elements(pk.in_size, prepared.precision) if bt == 1 else 0
    return kx, max(kx * prepared.precision.k_pack - 1, 0)


_PICK: dict = {}


def kernel_args(fn, values: dict) -> tuple:
    """``fn``'s positional arguments (`run_worker` or `run_team`), picked by parameter name from ``values``.

    The kernels take plain positional arguments (a tuple or a record cost
    ~0.5 us per step, `rnnjit.kernels.layer.emit`); naming them here means a
    new kernel parameter is one entry of ``values``, not a position to keep in
    step in two tuples. Extra entries are ignored (the worker and the team
    share one dict of values).
    """
    pick = _PICK.get(fn)
    if pick is None:
        names = arg_names(fn)
        missing = [n for n in names if n not in values]
        if missing:
            raise TypeError(f"{getattr(fn, 'py_func', fn).__name__} needs {', '.join(missing)}")
        pick = _PICK[fn] = operator.itemgetter(*names)
    return pick(values)


@dataclass(frozen=True)
class _TeamPlan:
    """What `_run_team` needs that follows from a call plan alone (lengths, T, widths, chunks), kept with it.

    A team call's Python set-up was ~24 us (batch of one, GRU 64->256, one
    step: more than the step itself), paid per layer: the lane tables and
    each sequence's first row by fancy indexing, two aligned allocations and
    three zero arrays. Built once with the plan, a call allocates one block
    for its float scratch and one int64 array for its counters.
    """

    order: np.ndarray  # the part's sequences, in lane order
    seq: np.ndarray  # (ntl * bt,) the tile's lanes (read only)
    slen: np.ndarray  # their lengths
    first: np.ndarray  # each sequence's first input row (`step_row`), for a layer reading rows
    t0: np.ndarray  # each sequence's first step (a token layer looks its row up per call)
    maxlen: int
    ntl: int  # FEW tiles side by side; 1 for other teams
    kx: int  # `_projected`'s ``kx``/``xk0``, or 0 for a sequence too long to project first
    xk0: int
    sync_words: int  # ``sync`` (`sync_words`); the projection's counters ``pblk`` follow it on their own line


def _team_plan(values: dict, lengths: np.ndarray, T: int, dtype, nch: int) -> _TeamPlan:
    """The `_TeamPlan` of a team part's ``values`` (`_call_plan`'s, before a call's arrays are added), ``nch``
    chunks per step."""
    bt, w, reverse, ptr = values["bt"], values["w"], values["reverse"], values["tile_ptr"]
    order = values["order"][ptr[0] : ptr[-1]]  # the part's sequences (one lane tile, or FEW tiles side by side)
    B = order.shape[0]
    ntl = -(-B // bt)  # FEW tiles side by side (`team_policy.FEW_TEAM_TILES`); other teams have one tile
    seq = np.zeros(ntl * bt, np.int64)
    slen = np.zeros(ntl * bt, np.int64)
    seq[:B], slen[:B] = order, lengths[order]
    t0 = slen[:B] - 1 if reverse else np.zeros(B, np.int64)
    maxlen = int(slen.max())
    kx, xk0 = values["kx"], values["xk0"]
    if kx and maxlen * w.shape[0] * MR * np.dtype(dtype).itemsize > TEAM_PROJECTION_BYTES:
        kx = xk0 = 0  # a very long sequence: the team reads the input columns per step
    return _TeamPlan(order, seq, slen, order * T + t0, t0, maxlen, ntl, kx, xk0, sync_words(nch))


def _run_team(values: dict, workers, chunks):
    """Run one tile (the sequences of the part ``values["tile_ptr"]`` spans: one lane tile, or FEW tiles side by
    side) on ``workers`` threads with `run_team` (``values``: `kernel_args`)."""
    rows, tok, bt, H, w = values["x"], values["tok"], values["bt"], values["hidden"], values["w"]
    h0, c0, tp = values["h0"], values["c0"], values["team_plan"]
    order = tp.order
    dtype = rows.dtype
    B, I = order.shape[0], rows.shape[1]
    K = I + H + 2
    ntl, maxlen, kx = tp.ntl, tp.maxlen, tp.kx
    xsize = -(-maxlen // STEP_BLOCK) * STEP_BLOCK * w.shape[0] * MR if kx else 1
    cb, nch = chunks
    gcopies = nch if bt == FEW else 1  # a FEW team's chunks each have their own gate rows (`team.few_rows`)
    zbuf, cbuf, g, m, xproj = _line_blocks(dtype, 4, (2, ntl, K, bt), (2, ntl, H, bt),
                                           (gcopies * ntl * w.shape[0] * MR * bt,), (ntl * H * bt,), (xsize,))  # fmt: skip
    zbuf[:, :, 0], zbuf[:, :, K - 1] = 1, 1
    first = tok[order, tp.t0] if tok.shape[0] else tp.first  # each sequence's first row (`step_row`)
    if B == 1:
        zbuf[0, 0, 1 : I + 1, 0] = rows[first[0]]
        zbuf[0, 0, I + 1 : I + 1 + H, 0] = h0[order[0]]
        cbuf[0, 0, :, 0] = c0[order[0]]
    else:
        for j in range(ntl):
            a, b = j * bt, min(B, (j + 1) * bt)
            zbuf[0, j, 1 : I + 1, : b - a] = rows[first[a:b]].T
            zbuf[0, j, I + 1 : I + 1 + H, : b - a] = h0[order[a:b]].T
            cbuf[0, j, :, : b - a] = c0[order[a:b]].T
    counts = np.zeros(tp.sync_words + 8, np.int64)
    sync, pblk = counts[: tp.sync_words], counts[tp.sync_words : tp.sync_words + 2]
    sync[NTH], sync[STEAL] = workers, team_kernel.STEAL_AFTER
    hot = workers == 2 and hot_available(dtype)  # the second thread kept hot (`hot`), not woken through the pool
    values.update(xproj=xproj, kx=kx, xk0=tp.xk0, pkx=kx, pblk=pblk,
        seq=tp.seq, slen=tp.slen, nb=B, maxlen=maxlen, zbuf=zbuf.reshape(2, ntl * K * bt),
        cbuf=cbuf.reshape(2, ntl * H * bt), g=g, m=m, sync=sync,
        nblk=1 if values["cell"] in (CELL_CODES["rnn_tanh"], CELL_CODES["rnn_relu"]) else 4, cb=cb, nch=nch,
    )  # fmt: skip
    if not (hot and run_team_hot(values)):
        if kx:  # every step's input projection first, on the team's threads (`hot.project_first` for `hot`)
            parallel(workers, project_all, (w, values["wg"], rows, tok, int(tp.seq[0]), int(tp.slen[0]),
                                            values["reverse"], maxlen, kx, xproj, np.zeros(1, np.int64)))  # fmt: skip
        parallel(workers, run_team, kernel_args(run_team, values))
    team_policy.note_spins(int(sync[SPINS]), maxlen)
    team_policy.note_alone(int(sync[TID]) < workers)


TEAM_PROJECTION_BYTES = 64 << 20
"""Largest input projection a team computes before it starts (every step of the sequence: steps x gate rows);
a longer sequence runs the team without it."""


def _line_blocks(dtype, zeroed: int, *shapes) -> list[np.ndarray]:
    """Arrays of ``shapes``, each starting on a cache line, the first ``zeroed`` of them zero: the team's vector loads
    and stores then never split one.

    Measured (B=16, H=128, the team on one thread): 17.0 us per step with
    numpy's 16-byte-aligned buffers, 15.1 with these (the tile worker: 14.2).
    One block for all of them: an allocation each cost ~3-4 us, a fifth of a
    short team call's setup (batch of one, H=128, one step).
    """
    line = 64 // np.dtype(dtype).itemsize
    sizes = [math.prod(s) for s in shapes]
    starts = [0]
    for n in sizes:
        starts.append(starts[-1] + -(-n // line) * line)
    block = aligned_empty(starts[-1], dtype)
    block[: starts[zeroed]].fill(0)
    return [block[a : a + n].reshape(s) for a, n, s in zip(starts, sizes, shapes)]
