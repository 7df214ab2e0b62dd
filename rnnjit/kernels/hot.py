"""A second thread kept hot for teams: a team starts with a store to memory, not a wake-up through the pool.

Handing a function to a pool thread (`rnnjit.kernels.pool.parallel`) costs
~45-55 us per call on the reference machine, measured with a team that does
nothing (two threads, one step: 53 us; 100 steps of a bare spin barrier: 73
us, ~200 ns per step after the start): the pool thread is woken through a
lock, takes the GIL, unpacks the kernel's ~35 arguments, and the caller is
woken again at the end. A batch of one of a layer whose weights fit in L2
runs 100 steps in ~180 us, so a team that halves its steps loses it all to
that hand-off.

Here one helper thread stays inside a nogil loop (`serve`) between calls,
waiting on a job word for `SERVE_SPIN` rounds after its last job before it
sleeps on an Event. The caller (`team_with_helper`, one compiled call)
writes the job's arguments into a word array (each array as its address and
shape, each scalar as a word), flags it, runs its own part
(`rnnjit.kernels.team.run_team`, the same function the helper runs on views
of the same arrays: the same bits), then takes the job back if the helper
has not started it or waits for it to end. Both threads first share the
team's input projection (`project_first`: blocks of steps from one counter;
at an input of 384, T=160, 1.0 ms on one thread, 40% of the layer when the
caller did it alone). A sleeping helper is woken
through the Event and joins late, as a late pool thread would (the team's
claim words let it join at any step); a helper that does not join a few
times in a row pauses teams (`rnnjit.kernels.team_policy.note_alone`).

The helper also takes plain tile workers (`run_workers_hot`): the second
thread's share of a small two-thread plan (`run_worker` parts, posted the same
way), whose pool hand-off cost ~50 us around ~75 us of work per thread (LSTM
64->128, T=20, B=8; bench/report_notes.md, "Small calls on two threads: tile
workers on the hot helper"). A share the helper has not started when the caller
is done is taken back: dropped when it is the caller's own tiles (all taken),
run by the caller when it is other work (the other direction of a layer).

The loop links no job's code: it calls each job through the address of its
compiled entry (`call_at`; `_team_f32`/`_team_f64`, `_workers_f32`/`_workers_f64`),
compiled (or loaded from numba's cache) by the first call that posts such a job,
and a worker job calls `run_worker` through the address of the overload the
caller itself runs. A process compiles only the jobs it runs: when the loop
called the jobs directly, compiling it compiled every job (a team and a
`run_worker` per dtype, with LLVM optimizing each linked callee again), and a
first batch of one on an empty cache took 37.5 s instead of 17.2 s
(bench/report_notes.md, "Small calls on two threads, compiled apart").

One caller at a time (a lock taken without blocking: a second Python thread
running a team meanwhile uses the pool). float32 and float64 tiles; none
under ``NUMBA_DISABLE_JIT`` (no addresses to read arrays from).
"""

from __future__ import annotations

import os
import threading

import numpy as np
from numba import carray, config, njit, typeof, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array
from numba.np.numpy_support import from_dtype

from rnnjit.kernels._simd import atomic_load, atomic_store, fetch_add
from rnnjit.kernels.config import JIT
from rnnjit.kernels.layer import STEP_BLOCK, project_all, run_worker
from rnnjit.kernels.team import SPINS, compare_exchange, run_team
from rnnjit.kernels.wavefront import relax

SERVE_SPIN = 4000
"""Rounds the helper waits on the job word after a job before it sleeps (`rnnjit.kernels.wavefront.relax`):
2000 of ``pause`` (~50 us), then 2000 that each give the core away (``sched_yield``, ~1 ms in all when nothing
else runs): an idle helper holds no core another thread or process wants."""

STATE, ASLEEP, JOB = 0, 8, 16  # the job word, the helper's asleep flag (own lines), the job's entry (its address)
IDLE, POSTED, TAKEN, DONE = 0, 1, 2, 3
ARR = 24  # each array argument: 4 words (address, 3 dims) from here, in the order of `ARRAYS`
ARRAYS = ("x", "tok", "seq", "slen", "zbuf", "cbuf", "g", "m", "sync", "w", "wg", "wgh", "hgroup", "kstart", "klen",
          "y", "hn", "cn", "xproj", "pblk")  # fmt: skip
SCL = ARR + 4 * len(ARRAYS)  # the scalar arguments, one word each, in the order of `SCALARS`
SCALARS = ("cell", "nb", "maxlen", "nblk", "ycol", "out_mode", "reverse", "hidden", "hp", "bt", "cb", "nch", "kx",
           "xk0", "pkx")  # fmt: skip
NPARTS, RUN = 17, 18  # a worker job's parts, run in turn (`_in_order`'s share of a thread); `run_worker`'s address
FAILED = 19  # set by the helper when its job ended in an error: that call's outputs are incomplete
WARRAYS = ("x", "tok", "lens", "order", "tile_ptr", "next_tile", "w", "wg", "wgh", "hgroup", "kstart", "klen", "wr",
           "wrg", "h0", "c0", "y", "hn", "cn", "qs", "qc", "rqs", "rqc", "ready", "xt", "yt", "toff")  # fmt: skip
WARRAY_TYPES = "2f 2i 1i 1i 1i 1i 3f 3f 3f 1i 1i 1i 3f 3f 2f 2f 3f 2f 2f 2s 2q 2s 2q 1i 1f 1f 1i".split()
"""Each of `WARRAYS` as `_worker_job` views it: dimensions, then element type (f: the tiles' float, i: int64,
s: float32 scales, q: int32 corrections)."""
WSCALARS = ("cell", "ycol", "out_mode", "reverse", "hidden", "hp", "h_out", "proj", "bt", "split", "kx", "xk0", "lay")
PART = 4 * len(WARRAYS) + len(WSCALARS)  # the words of one `run_worker` part, from ``ARR + part * PART``
MAX_PARTS = 2
"""`run_worker` parts a worker job holds (a plan's lane tiles and its remainder's small tiles)."""
WORDS = max(SCL + len(SCALARS), ARR + MAX_PARTS * PART)


@intrinsic
def pointer_at(typingctx, addr, like):
    """A pointer to ``like``'s element type at the address ``addr`` (int64)."""
    if not isinstance(like, types.Array):
        return None
    sig = types.CPointer(like.dtype)(types.int64, like)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

    return sig, codegen


@intrinsic
def call_at(typingctx, addr, args):
    """Call the compiled function at ``addr`` (int64: `address`) with the values of the tuple ``args``, in numba's
    own calling convention; 1 if it ended in an error (an exception: a failed allocation in `run_worker`), else 0.

    The caller's compile links nothing of the callee: a job's code is compiled only by the processes that run
    it (`address`), not by every process that compiles the loop calling it (`serve`)."""
    if not isinstance(args, types.BaseTuple):
        return None
    argtys = tuple(args)

    def codegen(context, builder, signature, llargs):
        values = [builder.extract_value(llargs[1], k) for k in range(len(argtys))]
        return _call_pointer(context, builder, llargs[0], argtys, values)

    return types.int64(types.int64, args), codegen


def _call_pointer(context, builder, addr, argtys, values):
    """Code that calls the function at ``addr`` (an i64), taking ``argtys`` and returning nothing, with ``values``
    in numba's calling convention; its i64 result is 1 when the call ended in an error, else 0."""
    fnty = context.call_conv.get_function_type(types.none, argtys)
    fn = builder.inttoptr(addr, fnty.as_pointer())
    status, _ = context.call_conv.call_function(builder, fn, types.none, argtys, values)
    return builder.zext(status.is_error, context.get_value_type(types.int64))


def address(fn, sig: tuple) -> int:
    """The address of ``fn``'s compiled code for the argument types ``sig`` (compiled, or loaded from numba's
    cache, here if not yet), for `call_at`."""
    fn.compile(sig)
    cres = fn.overloads[sig]
    return cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)


@njit(inline="always", **JIT)
def _v1(box, j, like):
    at = ARR + 4 * j
    return carray(pointer_at(box[at], like), (box[at + 1],))


@njit(inline="always", **JIT)
def _v2(box, j, like):
    at = ARR + 4 * j
    return carray(pointer_at(box[at], like), (box[at + 1], box[at + 2]))


@njit(inline="always", **JIT)
def _v3(box, j, like):
    at = ARR + 4 * j
    return carray(pointer_at(box[at], like), (box[at + 1], box[at + 2], box[at + 3]))


@njit(inline="always", **JIT)
def project_first(w, wg, x, tok, seq, slen, reverse, maxlen, pkx, xproj, pblk, sync):
    """This thread's share of the team's input projection (``pkx`` > 0: `project_all`, blocks of steps from the
    counter ``pblk[0]``), then a wait until every block is written (``pblk[1]``): the steps read any of them.
    The wait's rounds count with the team's (``sync[SPINS]``): a block held by a thread another process has
    taken the core from is a stall like a step's (`rnnjit.kernels.team_policy.note_spins`)."""
    if pkx <= 0:
        return
    project_all(w, wg, x, tok, seq[0], slen[0], reverse, maxlen, pkx, xproj, pblk)
    n_blocks = (maxlen + STEP_BLOCK - 1) // STEP_BLOCK
    rounds = 0
    while atomic_load(pblk, 1) < n_blocks:
        relax(rounds)
        rounds += 1
    fetch_add(sync, SPINS, rounds)


@njit(**JIT)
def _team_job(box, f, i):
    """`run_team` on the arrays and scalars posted in ``box`` (``f``: an array of the tile's dtype, ``i``: int64),
    after its share of the input projection (`project_first`)."""
    s = SCL
    project_first(_v3(box, 9, f), _v3(box, 10, f), _v2(box, 0, f), _v2(box, 1, i), _v1(box, 2, i), _v1(box, 3, i),
                  box[s + 6] != 0, box[s + 2], box[s + 14], _v1(box, 18, f), _v1(box, 19, i),
                  _v1(box, 8, i))  # fmt: skip
    run_team(
        box[s], _v2(box, 0, f), _v2(box, 1, i), _v1(box, 2, i), _v1(box, 3, i), box[s + 1], box[s + 2],
        _v2(box, 4, f), _v2(box, 5, f), _v1(box, 6, f), _v1(box, 7, f), _v1(box, 8, i),
        _v3(box, 9, f), _v3(box, 10, f), _v3(box, 11, f), _v1(box, 12, i), _v1(box, 13, i), _v1(box, 14, i),
        box[s + 3], _v3(box, 15, f), box[s + 4], box[s + 5], box[s + 6] != 0, _v2(box, 16, f), _v2(box, 17, f),
        box[s + 7], box[s + 8], box[s + 9], box[s + 10], box[s + 11], box[s + 12], box[s + 13], _v1(box, 18, f),
    )  # fmt: skip


@intrinsic
def _run_posted(typingctx, addr, box, at, like):
    """`run_worker` at the address ``addr`` on the part posted at word ``at`` of ``box`` (its arrays as views, in C
    order, of the dtype of ``like`` where `WARRAY_TYPES` says f), built here from the words: compiling views one
    by one (numba's ``carray`` in an inlined function per array) cost more than the rest of the worker job."""
    argtys = _worker_types(like.dtype)

    def codegen(context, builder, signature, args):
        i64 = context.get_value_type(types.int64)
        words = context.make_array(signature.args[1])(context, builder, args[1]).data

        def word(k):
            return builder.load(builder.gep(words, [builder.add(args[2], i64(k))]))

        values, j, k = [], 0, ARR + 4 * len(WARRAYS)
        for ty in argtys:
            if isinstance(ty, types.Array):
                at = ARR + 4 * j
                shape = [word(at + 1 + d) for d in range(ty.ndim)]
                size = context.get_abi_sizeof(context.get_data_type(ty.dtype))
                strides, step = [], i64(size)
                for d in range(ty.ndim - 1, -1, -1):
                    strides.insert(0, step)
                    step = builder.mul(step, shape[d])
                view = context.make_array(ty)(context, builder)
                data = builder.inttoptr(word(at), view.data.type)
                populate_array(view, data=data, shape=shape, strides=strides, itemsize=size, meminfo=None)
                values.append(view._getvalue())
                j += 1
            else:
                v = word(k)
                values.append(builder.icmp_signed("!=", v, i64(0)) if ty == types.boolean else v)
                k += 1
        return _call_pointer(context, builder, args[0], argtys, values)

    return types.int64(types.int64, box, types.int64, like), codegen


@intrinsic
def _put_all(typingctx, box, at, arrays):
    """Each array of the tuple ``arrays`` as 4 words (address, 3 dims) from word ``at`` of ``box``; whether all are
    in C order (what `_run_posted`'s views assume; an empty array has nothing to read). One intrinsic: a loop over
    the 27 arrays' types (``literal_unroll``) took longer to compile than the worker job itself."""
    if not isinstance(arrays, types.BaseTuple) or not all(isinstance(t, types.Array) for t in arrays):
        return None

    def codegen(context, builder, signature, args):
        i64 = context.get_value_type(types.int64)
        words = context.make_array(signature.args[0])(context, builder, args[0]).data
        ok = cgutils.true_bit
        for j, ty in enumerate(signature.args[2]):
            a = context.make_array(ty)(context, builder, builder.extract_value(args[2], j))
            shape = cgutils.unpack_tuple(builder, a.shape, ty.ndim)
            strides = cgutils.unpack_tuple(builder, a.strides, ty.ndim)
            good, step, size = cgutils.true_bit, a.itemsize, i64(1)
            for d in range(ty.ndim - 1, -1, -1):
                bad = builder.and_(builder.icmp_signed(">", shape[d], i64(1)),
                                   builder.icmp_signed("!=", strides[d], step))  # fmt: skip
                good = builder.and_(good, builder.not_(bad))
                step = builder.mul(step, shape[d])
                size = builder.mul(size, shape[d])
            ok = builder.and_(ok, builder.or_(good, builder.icmp_signed("==", size, i64(0))))
            at = builder.add(args[1], i64(ARR + 4 * j))
            builder.store(builder.ptrtoint(a.data, i64), builder.gep(words, [at]))
            for d in range(ty.ndim):
                builder.store(shape[d], builder.gep(words, [builder.add(at, i64(1 + d))]))
        return ok

    return types.boolean(box, at, arrays), codegen


@njit(inline="always", **JIT)
def _worker_job(box, like):
    """`run_worker` (at the address ``box[RUN]``) on each part posted in ``box`` in turn (``like``: an array of the
    tiles' dtype); a part that fails flags ``box[FAILED]``."""
    for p in range(box[NPARTS]):
        if _run_posted(box[RUN], box, p * PART, like):
            box[FAILED] = 1


_F32, _F64, _I64 = np.zeros(0, np.float32), np.zeros(0, np.float64), np.zeros(0, np.int64)


@njit(**JIT)
def _team_f32(box):
    _team_job(box, _F32, _I64)


@njit(**JIT)
def _team_f64(box):
    _team_job(box, _F64, _I64)


@njit(**JIT)
def _workers_f32(box):
    _worker_job(box, _F32)


@njit(**JIT)
def _workers_f64(box):
    _worker_job(box, _F64)


_BOX = (types.Array(types.int64, 1, "C"),)
_TEAM_JOBS = {np.dtype(np.float32): _team_f32, np.dtype(np.float64): _team_f64}
_WORKER_JOBS = {np.dtype(np.float32): _workers_f32, np.dtype(np.float64): _workers_f64}


@njit(**JIT)
def serve(box, spin):
    """The helper's loop: run posted jobs (each through its entry's address, ``box[JOB]``: this loop's compile
    holds no job's code); after ``spin`` idle rounds flag itself asleep and return."""
    atomic_store(box, ASLEEP, 0)
    while True:
        rounds = 0
        while atomic_load(box, STATE) != POSTED:
            if rounds >= spin:
                atomic_store(box, ASLEEP, 1)
                if atomic_load(box, STATE) != POSTED:  # a job posted before the flag was seen is still taken
                    return
                atomic_store(box, ASLEEP, 0)
            relax(rounds)
            rounds += 1
        if not compare_exchange(box, STATE, POSTED, TAKEN):
            continue  # the caller took it back
        if call_at(box[JOB], (box,)):
            box[FAILED] = 1  # read by the caller once the job is done (`_raise_if_failed`)
        atomic_store(box, STATE, DONE)


@njit(**JIT)
def team_with_helper(
    box, job, cell, x, tok, seq, slen, nb, maxlen, zbuf, cbuf, g, m, sync,
    w, wg, wgh, hgroup, kstart, klen, nblk, y, ycol, out_mode, reverse, hn, cn,
    hidden, hp, bt, cb, nch, kx, xk0, xproj, pblk, pkx,
):  # fmt: skip
    """`run_team` here and in the helper: post the job (`run_team`'s arguments, and ``pkx`` > 0: the input
    projection's, `project_first`), run this thread's part, then take the job back if the helper has not
    started it, else wait until it is done (the box is idle after).

    One call from Python: reading 19 arrays' addresses there (``ndarray.ctypes``) cost ~40 us.
    """
    box[JOB] = job
    # the arrays in the order of `ARRAYS` (C order checked by the caller, `run_team_hot`)
    _put_all(box, 0, (x, tok, seq, slen, zbuf, cbuf, g, m, sync, w, wg, wgh, hgroup, kstart, klen, y, hn, cn, xproj,
                      pblk))  # fmt: skip
    for j, v in enumerate((cell, nb, maxlen, nblk, ycol, out_mode, int(reverse), hidden, hp, bt, cb, nch, kx, xk0,
                           pkx)):  # fmt: skip
        box[SCL + j] = v
    atomic_store(box, STATE, POSTED)
    project_first(w, wg, x, tok, seq, slen, reverse, maxlen, pkx, xproj, pblk, sync)
    run_team(cell, x, tok, seq, slen, nb, maxlen, zbuf, cbuf, g, m, sync, w, wg, wgh, hgroup, kstart, klen, nblk,
             y, ycol, out_mode, reverse, hn, cn, hidden, hp, bt, cb, nch, kx, xk0, xproj)  # fmt: skip
    if not compare_exchange(box, STATE, POSTED, IDLE):
        rounds = 0
        while atomic_load(box, STATE) != DONE:
            relax(rounds)
            rounds += 1
        atomic_store(box, STATE, IDLE)


@njit(**JIT)
def post_part(
    box, p, cell, x, tok, lens, order, tile_ptr, next_tile,
    w, wg, wgh, hgroup, kstart, klen, wr, wrg,
    h0, c0, y, ycol, out_mode, reverse, hn, cn,
    hidden, hp, h_out, proj, bt,
    qs, qc, rqs, rqc, split, kx, xk0, ready, lay, xt, yt, toff,
):  # fmt: skip
    """Write `run_worker`'s arguments as part ``p`` of the next worker job; False (nothing written) when an array is
    not in C order."""
    at = p * PART
    if not _put_all(box, at, (x, tok, lens, order, tile_ptr, next_tile, w, wg, wgh, hgroup, kstart, klen, wr, wrg, h0,
                              c0, y, hn, cn, qs, qc, rqs, rqc, ready, xt, yt, toff)):  # fmt: skip
        return False
    s = at + ARR + 4 * len(WARRAYS)
    for j, v in enumerate((cell, ycol, out_mode, int(reverse), hidden, hp, h_out, proj, bt, split, kx, xk0, lay)):
        box[s + j] = v
    return True


@njit(**JIT)
def post(box, job, run, parts):
    """Flag the job written into ``box`` (``job``: its entry's address, ``run``: `run_worker`'s, ``parts``: how
    many) for the helper."""
    box[JOB] = job
    box[RUN] = run
    box[NPARTS] = parts
    atomic_store(box, STATE, POSTED)


@njit(**JIT)
def finish(box):
    """After this thread's share: take the posted job back if the helper has not started it (False), else wait until
    it is done (True); the box is idle after."""
    if compare_exchange(box, STATE, POSTED, IDLE):
        return False
    rounds = 0
    while atomic_load(box, STATE) != DONE:
        relax(rounds)
        rounds += 1
    atomic_store(box, STATE, IDLE)
    return True


class _Helper:
    """The helper thread (a daemon), its job words and its wake-up Event (started on first use, again after a fork)."""

    def __init__(self):
        self.box = np.zeros(WORDS + 8, np.int64)
        self.wake = threading.Event()
        self.busy = threading.Lock()
        serve(self.box, 0)  # compiled (or loaded from the cache) here, not while the first teams run
        started = threading.Event()
        self.thread = threading.Thread(target=self._loop, args=(started,), name="rnnjit-hot", daemon=True)
        self.thread.start()
        # the first teams would otherwise run without it and pause teams (`team_policy.note_alone`)
        started.wait(1.0)

    def _loop(self, started):
        started.set()
        while True:
            self.wake.clear()
            serve(self.box, SERVE_SPIN)
            self.wake.wait()


_helper: _Helper | None = None
_start_lock = threading.Lock()


def _forget_helper():
    global _helper
    _helper = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helper)


def hot_available(dtype) -> bool:
    """Whether `run_team_hot` can run a tile of ``dtype``."""
    return not config.DISABLE_JIT and np.dtype(dtype) in (np.dtype(np.float32), np.dtype(np.float64))


def _get() -> _Helper:
    global _helper
    h = _helper
    if h is None:
        with _start_lock:
            if _helper is None:
                _helper = _Helper()
            h = _helper
    return h


def _worker_types(f: np.dtype) -> tuple:
    """`run_worker`'s argument types as `_worker_job` passes them (views of `WARRAY_TYPES`, words, ``reverse`` a
    flag), for tiles of dtype ``f`` (numpy's or numba's)."""
    kinds = {"f": f if isinstance(f, types.Type) else from_dtype(f), "i": types.int64, "s": types.float32, "q": types.int32}
    arrays = {n: types.Array(kinds[t[1]], int(t[0]), "C") for n, t in zip(WARRAYS, WARRAY_TYPES)}
    return tuple(arrays.get(n, types.boolean if n == "reverse" else types.int64) for n in _WORKER_ARGS)


def _as_posted(v):
    """The type `_worker_job` gives ``v`` (an array: a view in C order, whatever its own layout and flags)."""
    t = typeof(v)
    return types.Array(t.dtype, t.ndim, "C") if isinstance(t, types.Array) else t


_worker_entries: dict = {}
"""Per (tile dtype, weight dtype): the addresses of the worker job's entry and of `run_worker` for it, or None
where the arguments are not what `_worker_job` views (bf16/int8 weights): those run through the pool."""


def _worker_entry(args: tuple):
    """The worker job's (entry, `run_worker`) addresses for arguments like ``args``, compiled (or loaded from
    numba's cache) on the first worker job of their dtypes: a process that never runs one compiles none."""
    key = args[1].dtype, args[7].dtype
    if key not in _worker_entries:
        f = key[0]
        ok = f in _WORKER_JOBS and key[1] == f and tuple(_as_posted(v) for v in args) == _worker_types(f)
        _worker_entries[key] = (address(_WORKER_JOBS[f], _BOX), address(run_worker, _worker_types(f))) if ok else None
    return _worker_entries[key]


def run_workers_hot(own: list, other: list) -> bool:
    """`run_worker` with each argument list of ``own`` in turn on this thread, and of ``other`` on the hot helper
    (`serve`); ``other`` may be ``own`` itself (the same tiles, shared through their counter).

    What the helper has not started when this thread is done is taken back: run here if ``other`` is not ``own``,
    else dropped (every tile has been taken). False (nothing run) when another thread is using the helper, the
    tiles are not float32/float64 with weights of the same dtype, there are more than `MAX_PARTS` parts or an
    array is not in C order: run them through the pool then.
    """
    entry = _worker_entry(own[0]) if len(other) <= MAX_PARTS else None
    if entry is None:
        return False
    h = _get()
    if not h.busy.acquire(blocking=False):
        return False
    try:
        for p, a in enumerate(other):
            if not post_part(h.box, p, *a):
                return False
        if h.box[ASLEEP]:  # woken now, it joins late or, if it sleeps again first, the next call
            h.wake.set()
        post(h.box, *entry, len(other))
        try:
            for a in own:
                run_worker(*a)
        finally:
            helped = finish(h.box)  # the helper never runs on arrays this call no longer holds
        _raise_if_failed(h.box)
        if not helped and other is not own:
            for a in other:
                run_worker(*a)
    finally:
        h.busy.release()
    return True


_team_entries: dict = {}
"""Per tile dtype: the address of the team job's entry (`_team_f32`/`_team_f64`), compiled on its first team."""


def run_team_hot(args: dict) -> bool:
    """`run_team` on two threads, this one and the hot helper (``args``: its arguments by name, and ``pkx``: the
    input columns both threads project first, 0 for none, with ``pblk``, two zero words, `project_first`).

    False (nothing run) when another thread is using the helper or an array is not C-contiguous: run it
    through the pool then.
    """
    _team_entry(args["x"].dtype)  # compiled before the helper starts: it would otherwise miss the first teams
    h = _get()
    if not all(args[n].flags.c_contiguous for n in ARRAYS) or not h.busy.acquire(blocking=False):
        return False
    try:
        if h.box[ASLEEP]:  # woken now, it joins late or, if it sleeps again first, the next call
            h.wake.set()
        team_with_helper(h.box, _team_entry(args["x"].dtype), *(args[n] for n in _TEAM_ARGS),
                         args["pblk"], args["pkx"])  # fmt: skip
        _raise_if_failed(h.box)
    finally:
        h.busy.release()
    return True


def _raise_if_failed(box):
    """Raise when the helper's share of the call just finished ended in an error: its tiles or chunks were left
    unfinished, and scores from them would be wrong without a sign."""
    if box[FAILED]:
        box[FAILED] = 0
        raise RuntimeError("the second thread's share of this call failed inside its compiled kernel (most likely "
                           "out of memory), so the call's outputs are incomplete and none were returned; retry, or "
                           "run with threads=1 to see the error on the calling thread")  # fmt: skip


def _team_entry(dtype) -> int:
    job = _team_entries.get(dtype)
    if job is None:
        job = _team_entries[dtype] = address(_TEAM_JOBS[np.dtype(dtype)], _BOX)
    return job


def arg_names(fn) -> tuple:
    """``fn``'s positional parameter names (a numba dispatcher's, or a plain function's under NUMBA_DISABLE_JIT=1):
    the order the kernels' arguments are posted, picked and placed in."""
    py = getattr(fn, "py_func", fn)
    return py.__code__.co_varnames[: py.__code__.co_argcount]


_TEAM_ARGS = arg_names(run_team)
_WORKER_ARGS = arg_names(run_worker)
