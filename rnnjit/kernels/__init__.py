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
its layers at once), `tiling` (tile width cost model, tiles by length),
`team_policy` (when a team or a wavefront runs), `pool` (the worker threads), and
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

import operator
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
from rnnjit.kernels.precision import PRECISIONS, Precision, missing_features, precision_of, target_cpu
from rnnjit.kernels.rows import prepare_steps, run_steps
from rnnjit.kernels.team import NTH, SPINS, run_team, sync_words
from rnnjit.kernels.team_policy import team_chunks, wavefront_workers
from rnnjit.kernels.wavefront import counters
from rnnjit.kernels.tiling import tile_steps, tile_width, tiles
from rnnjit.errors import PrecisionUnavailableError
from rnnjit.spec import RNNSpec

__all__ = ["check_precision", "prepare", "run", "prepare_steps", "run_steps", "Prepared", "tile_width"]


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
    if table is None:
        x = _writable(np.ascontiguousarray(x, dtype=dtype))
        if x.ndim != 3 or x.shape[2] != I:
            raise ValueError(f"x has shape {x.shape}; expected (batch, time, {I})")
        B, T, _ = x.shape
        rows, tok = x.reshape(B * T, I), np.zeros((0, T), np.int64)
    else:
        tok = _writable(np.ascontiguousarray(x, dtype=np.int64))
        rows = _writable(np.ascontiguousarray(table, dtype=dtype))
        if tok.ndim != 2 or rows.ndim != 2 or rows.shape[1] != I:
            raise ValueError(
                f"token ids {tok.shape} and table {rows.shape}; expected (batch, time) and (vocabulary, {I})"
            )
        B, T = tok.shape
    lengths = _writable(np.ascontiguousarray(lengths, dtype=np.int64))
    h_shape = (L * D, B, Ho)  # `RNNSpec.state_shapes`
    hn = np.zeros(h_shape, dtype)
    cn = np.zeros((L * D, B, H), dtype)
    h0 = None if h0 is None else _writable(np.ascontiguousarray(h0, dtype=dtype))  # None: zeros (`_run_layers`)
    c0 = None if (c0 is None or not lay.has_c) else _writable(np.ascontiguousarray(c0, dtype=dtype))
    y_all = np.zeros((B, T, D * Ho), dtype) if select == "all" else None
    y_last = np.zeros((B, 1, D * Ho), dtype) if y_all is None else None
    if B > 0 and T > 0:
        n = numba.get_num_threads() if threads is None else int(threads)
        if n < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        _run_layers(prepared, rows, tok, lengths, h0, c0, hn, cn, SELECT_MODES[select], y_all, y_last, n)
    if select == "all":
        return y_all, hn, (cn if lay.has_c else None)  # C-contiguous as allocated
    if select == "final":
        y = np.concatenate([hn[(L - 1) * D + d] for d in range(D)], axis=1)
    else:
        y = y_last[:, 0, :]
        if select == "mean":
            y = y / lengths[:, None].astype(dtype)
    return np.ascontiguousarray(y), hn, (cn if lay.has_c else None)


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
                      prepared.layers[0].w.nbytes,
                      (D, spec.num_layers, Ho, H, spec.input_size), spec.has_cell_state)  # fmt: skip
        prepared.cache["layout"] = lay
    return lay


def _choose(prepared, B, lay, threads):
    """(tile width, workers, team chunks or None) for one direction of ``B`` sequences on ``threads`` threads.

    Whether one tile runs as a team depends on the weight bytes each step reads: for a one-sequence tile, whose
    input columns are projected first, the h columns only (``lay.hbytes``; the team's chunks read ``wgh``).
    """
    wbytes = lay.wbytes
    bt = tile_width(B, threads, prepared.dtype, wbytes)
    n_tiles = -(-B // bt)  # `tiles`' count
    workers = max(1, min(threads, n_tiles))
    # one tile on several threads (`team`) only where the products read z itself: a packed z would need
    # every chunk of a step done before the next step's z is packed
    one_tile = n_tiles == 1 and prepared.precision.k_pack == 1
    step_bytes = lay.hbytes if bt == 1 and lay.hbytes else wbytes
    team = team_chunks(prepared.spec, bt, threads, step_bytes) if one_tile else None
    return bt, (threads if team else workers), team


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
    A stack of one-directional layers in one tile (a batch of one) runs its
    layers at once instead, each behind the layer below (`wavefront`).

    What depends only on the lengths and these choices is a `_CallPlan`,
    kept for small batches (`_call_plan`).
    """
    B, T = lengths.shape[0], tok.shape[1]
    lay = _layout(prepared)
    D, L = lay.sizes[:2]
    # a list's sum and max: numpy's reductions cost ~1.3 us each on a handful of lengths
    small = B <= SMALL_LENGTHS
    total, longest = (sum(v), max(v)) if small and (v := lengths.tolist()) else (lengths.sum(), lengths.max())
    if float(total) * lay.wbytes * L * D < ONE_THREAD_WORK:
        threads = 1  # less work than handing some of it to a pool thread costs
        choice = None  # one thread: no split, team or wavefront, whatever the machine's load (`_call_plan`)
    else:
        plans = (_choose(prepared, B, lay, threads),)
        if D == 2 and threads >= 2 and float(total) * lay.w0bytes >= SPLIT_WORK:
            split = tuple(_choose(prepared, B, lay, t) for t in (threads // 2, threads - threads // 2))
            if not any(p[2] for p in split):
                plans = split
        # a stack of one-directional layers in one tile: its layers at once, each behind the one below (`wavefront`)
        waves = wavefront_workers(prepared.spec, plans[0][0] >= B, threads, float(longest) * lay.wbytes,
                                  plans[0][2] is not None)  # fmt: skip
        choice = (plans, waves)
    plan = _call_plan(prepared, lay, lengths, T, top_mode, tok.shape[0] > 0, choice, small)
    _run_planned(plan, rows, tok, lengths, h0, c0, hn, cn, y_all if top_mode == OUT_ALL else y_last)


CALL_PLANS = 256
"""Call plans (`_CallPlan`) a `Prepared` keeps (one per lengths and choices of a small call), then all dropped."""


@dataclass(frozen=True)
class _CallPlan:
    """What `_run_layers` works out for a call that depends only on its lengths and its choice of threads.

    Kept per `Prepared` for small batches (`SMALL_LENGTHS`), per lengths, T,
    output mode, token ids or features and the choices made for the call
    (tile widths, workers, team chunks, the direction split and a wavefront's
    threads: made again on every call, as they follow the machine's load,
    `team_policy`). A repeat call (a batch of one, the same sentence length)
    then only puts its own arrays into prepared argument lists: the tiles,
    the input projection's columns and the worker's 40 arguments picked by
    name cost ~6 us per call on the polyphone tagger's batch of one, its
    whole recurrent launch ~25 us (bench/report_notes.md, "A batch of one's
    Python"). Nothing in a plan is written by a call: calls on several
    threads share it.
    """

    layers: tuple  # per layer: (kind, per direction (k, workers, arguments with the call's arrays left as None))
    dispatch: int  # `_PARALLEL`, `_JOBS` (the directions at once), `_TEAM` or `_WAVES`
    waves: int  # a wavefront's threads, or 0
    team: tuple | None  # a team's chunks (`team_chunks`)
    h0: tuple | None  # per layer * D + direction: zero initial states, read when a call gives none (never
    c0: tuple | None  # written); None above `KEPT_ZEROS_BYTES`: the call allocates them
    empty_rows: np.ndarray  # (0, h_out): the input of a layer reading the layer below's tiles (``xt``)
    no_tokens: np.ndarray  # (0, T)
    none: np.ndarray  # (0,): no ``xt``/``yt``
    no_ready: np.ndarray  # (0,) int64: no wavefront's ``ready``
    yt_size: int  # values of a layer's outputs in the tiles' layout (``yt``), 0 without
    shape: tuple  # (B, T, D * h_out)


KEPT_ZEROS_BYTES = 64 << 10
"""Largest zero initial state (all layers and directions) a kept plan holds: `CALL_PLANS` of them stay small."""

_TILED, _ALL, _TOP = 0, 1, 2  # a layer's output: the tiles' layout, the (B, T, D*h_out) rows, the call's result
_PARALLEL, _JOBS, _TEAM, _WAVES = 0, 1, 2, 3
_CALL_SLOTS = ("x", "tok", "h0", "c0", "y", "hn", "cn", "lens", "next_tile", "xt", "yt", "ready")


def _call_plan(prepared, lay, lengths, T, top_mode, tokens, choice, keep) -> _CallPlan:
    """The call's `_CallPlan`: kept (``keep``) or built. ``choice``: (per direction plan (tile width, workers,
    team chunks), wavefront threads), or None for one thread."""
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
    if choice is None:
        choice = ((_choose(prepared, lengths.shape[0], lay, 1),), 0)
    plans, waves = choice
    dtype = prepared.dtype
    D, L, Ho, H = lay.sizes[:4]
    B = lengths.shape[0]
    tiled_plans = [(bt, *tiles(lengths, bt), workers, team) for bt, workers, team in plans]
    bt0, order0, ptr0, _, team = tiled_plans[0]
    dispatch = _WAVES if waves else _JOBS if len(plans) == 2 else _TEAM if team else _PARALLEL
    # between the layers of a one-directional stack in lane tiles, each layer's h stays in the tiles' layout
    # (`run_worker`'s ``xt``/``yt``); not for teams and wavefronts, whose layers read the (B, T, H) rows
    tiled = D == 1 and L > 1 and bt0 > FEW and not waves and not team
    toff = tile_steps(lengths, order0, ptr0) if tiled else np.zeros(1, np.int64)
    none = np.zeros(0, dtype)
    layers = []
    for layer in range(L):
        if layer < L - 1:
            kind, mode = (_TILED, OUT_NONE) if tiled else (_ALL, OUT_ALL)
        else:
            kind, mode = _TOP, top_mode
        dirs = []
        for d in range(D):
            k = layer * D + d
            bt, order, tile_ptr, workers, _ = tiled_plans[d % len(tiled_plans)]
            kx, xk0 = _projected(prepared, prepared.layers[k], bt)
            values = {**lay.static[k], **dict.fromkeys(_CALL_SLOTS), "out_mode": mode, "bt": bt, "order": order,
                      "tile_ptr": tile_ptr, "kx": kx, "xk0": xk0, "lay": layer, "toff": toff}  # fmt: skip
            dirs.append((k, workers, values if dispatch == _TEAM else list(kernel_args(run_worker, values))))
        layers.append((kind, tuple(dirs)))
    zh = zc = None
    if L * D * B * max(H, Ho) * dtype.itemsize <= KEPT_ZEROS_BYTES:
        zh, zc = tuple(np.zeros((L * D, B, Ho), dtype)), tuple(np.zeros((L * D, B, H), dtype))
    plan = _CallPlan(tuple(layers), dispatch, waves, team, zh, zc, np.zeros((0, Ho), dtype),
                     np.zeros((0, T), np.int64), none, counters(0), int(toff[-1]) * Ho * bt0 if tiled else 0,
                     (B, T, D * Ho))  # fmt: skip
    if keep:
        if len(calls) >= CALL_PLANS:
            calls.clear()
        calls[key] = plan
    return plan


def _slot_positions():
    py = getattr(run_worker, "py_func", run_worker)  # a plain function under NUMBA_DISABLE_JIT=1
    names = py.__code__.co_varnames[: py.__code__.co_argcount]
    return tuple(names.index(n) for n in _CALL_SLOTS)


_SLOTS = _slot_positions()


def _run_planned(plan: _CallPlan, rows, tok, lengths, h0, c0, hn, cn, top):
    """Every layer and direction of a call with ``plan``'s arguments (`_call_plan`) and this call's arrays;
    ``top``: the top layer's output array."""
    ix, itok, ih0, ic0, iy, ihn, icn, ilens, inext, ixt, iyt, iready = _SLOTS
    B, T, Y = plan.shape
    dtype = top.dtype
    dispatch = plan.dispatch
    ready = counters(len(plan.layers)) if dispatch == _WAVES else plan.no_ready
    xt = plan.none
    stack = []
    if h0 is None:
        h0 = plan.h0 or np.zeros(hn.shape, dtype)
    if c0 is None:
        c0 = plan.c0 or np.zeros(cn.shape, dtype)
    for kind, dirs in plan.layers:
        yt = plan.none
        if kind == _TILED:
            out = np.zeros((B, 1, Y), dtype)
            yt = aligned_empty(plan.yt_size, dtype)  # every value read is written first
        elif kind == _ALL:
            out = np.zeros((B, T, Y), dtype)
        else:
            out = top
        jobs = []
        for k, workers, base in dirs:
            h0k, c0k = h0[k], c0[k]
            if dispatch == _TEAM:
                values = dict(base)  # `_run_team` adds its own entries
                values.update(x=rows, tok=tok, h0=h0k, c0=c0k, y=out, hn=hn[k], cn=cn[k], lens=lengths,
                              next_tile=np.zeros(1, np.int64), xt=xt, yt=yt, ready=ready)  # fmt: skip
                _run_team(values, workers, plan.team)
                continue
            a = base.copy()
            a[ix], a[itok], a[iy], a[ilens], a[ixt], a[iyt], a[iready] = rows, tok, out, lengths, xt, yt, ready
            a[ih0], a[ic0], a[ihn], a[icn], a[inext] = h0k, c0k, hn[k], cn[k], np.zeros(1, np.int64)
            if dispatch == _WAVES:
                stack.append((run_worker, a))
            elif dispatch == _JOBS:
                jobs += [(run_worker, a)] * workers
            else:
                parallel(workers, run_worker, a)
        if jobs:
            run_jobs(jobs)
        if kind == _TILED:
            rows, tok, xt = plan.empty_rows, plan.no_tokens, yt
        elif kind == _ALL:
            rows, tok = out.reshape(B * T, Y), plan.no_tokens
    if stack:
        team_policy.note_wave(*run_in_order(plan.waves, stack))


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
        py = getattr(fn, "py_func", fn)  # a plain function under NUMBA_DISABLE_JIT=1
        names = py.__code__.co_varnames[: py.__code__.co_argcount]
        missing = [n for n in names if n not in values]
        if missing:
            raise TypeError(f"{py.__name__} needs {', '.join(missing)}")
        pick = _PICK[fn] = operator.itemgetter(*names)
    return pick(values)


def _run_team(values: dict, workers, chunks):
    """Run one tile (every sequence of the batch) on ``workers`` threads with `run_team` (``values``: `kernel_args`)."""
    rows, tok, bt, H, w = values["x"], values["tok"], values["bt"], values["hidden"], values["w"]
    lengths, order, h0, c0 = values["lens"], values["order"], values["h0"], values["c0"]
    dtype = rows.dtype
    B, T, I = lengths.shape[0], tok.shape[1], rows.shape[1]
    K = I + H + 2
    seq = np.zeros(bt, np.int64)
    slen = np.zeros(bt, np.int64)
    seq[:B], slen[:B] = order, lengths[order]
    reverse = values["reverse"]
    zbuf = _line_zeros((2, K, bt), dtype)
    zbuf[:, 0], zbuf[:, K - 1] = 1, 1
    t0 = slen[:B] - 1 if reverse else np.zeros(B, np.int64)
    first = tok[order, t0] if tok.shape[0] else order * T + t0  # each sequence's first row (`step_row`)
    zbuf[0, 1 : I + 1, :B] = rows[first].T
    zbuf[0, I + 1 : I + 1 + H, :B] = h0[order].T
    cbuf = _line_zeros((2, H, bt), dtype)
    cbuf[0, :, :B] = c0[order].T
    cb, nch = chunks
    sync = np.zeros(sync_words(nch), np.int64)
    sync[NTH] = workers
    maxlen = int(slen.max())
    xproj = np.zeros(1, dtype)
    if values["kx"] and maxlen * w.shape[0] * MR * dtype.itemsize > TEAM_PROJECTION_BYTES:
        values.update(kx=0, xk0=0)  # a very long sequence: the team reads the input columns per step
    if values["kx"]:  # every step's input projection first, on the team's threads
        xproj = aligned_empty(-(-maxlen // STEP_BLOCK) * STEP_BLOCK * w.shape[0] * MR, dtype)
        parallel(workers, project_all, (w, values["wg"], rows, tok, int(seq[0]), int(slen[0]), reverse, maxlen,
                                        values["kx"], xproj, np.zeros(1, np.int64)))  # fmt: skip
    values.update(xproj=xproj,
        seq=seq, slen=slen, nb=B, maxlen=maxlen, zbuf=zbuf.reshape(2, K * bt), cbuf=cbuf.reshape(2, H * bt),
        g=_line_zeros(w.shape[0] * MR * bt, dtype), m=_line_zeros(H * bt, dtype), sync=sync,
        nblk=1 if values["cell"] in (CELL_CODES["rnn_tanh"], CELL_CODES["rnn_relu"]) else 4, cb=cb, nch=nch,
    )  # fmt: skip
    parallel(workers, run_team, kernel_args(run_team, values))
    team_policy.note_spins(int(sync[SPINS]), maxlen)


TEAM_PROJECTION_BYTES = 64 << 20
"""Largest input projection a team computes before it starts (every step of the sequence: steps x gate rows);
a longer sequence runs the team without it."""


def _line_zeros(shape, dtype) -> np.ndarray:
    """Zeros starting on a cache line: the team's vector loads and stores then never split one.

    Measured (B=16, H=128, the team on one thread): 17.0 us per step with
    numpy's 16-byte-aligned buffers, 15.1 with these (the tile worker: 14.2).
    """
    a = aligned_empty(shape, dtype)
    a.fill(0)
    return a
