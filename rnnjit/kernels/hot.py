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

One caller at a time (a lock taken without blocking: a second Python thread
running a team meanwhile uses the pool). float32 and float64 tiles; none
under ``NUMBA_DISABLE_JIT`` (no addresses to read arrays from).
"""

from __future__ import annotations

import os
import threading

import numpy as np
from numba import carray, config, njit, types
from numba.extending import intrinsic

from rnnjit.kernels._simd import atomic_load, atomic_store, fetch_add
from rnnjit.kernels.config import JIT
from rnnjit.kernels.layer import STEP_BLOCK, project_all
from rnnjit.kernels.team import SPINS, compare_exchange, run_team
from rnnjit.kernels.wavefront import relax

SERVE_SPIN = 4000
"""Rounds the helper waits on the job word after a job before it sleeps (`rnnjit.kernels.wavefront.relax`):
2000 of ``pause`` (~50 us), then 2000 that each give the core away (``sched_yield``, ~1 ms in all when nothing
else runs): an idle helper holds no core another thread or process wants."""

STATE, ASLEEP, KIND = 0, 8, 16  # the job word, the helper's asleep flag (own lines), the job's dtype
IDLE, POSTED, TAKEN, DONE = 0, 1, 2, 3
F32, F64 = 0, 1
ARR = 24  # each array argument: 4 words (address, 3 dims) from here, in the order of `ARRAYS`
ARRAYS = ("x", "tok", "seq", "slen", "zbuf", "cbuf", "g", "m", "sync", "w", "wg", "wgh", "hgroup", "kstart", "klen",
          "y", "hn", "cn", "xproj", "pblk")  # fmt: skip
SCL = ARR + 4 * len(ARRAYS)  # the scalar arguments, one word each, in the order of `SCALARS`
SCALARS = ("cell", "nb", "maxlen", "nblk", "ycol", "out_mode", "reverse", "hidden", "hp", "bt", "cb", "nch", "kx",
           "xk0", "pkx")  # fmt: skip
WORDS = SCL + len(SCALARS)


@intrinsic
def pointer_at(typingctx, addr, like):
    """A pointer to ``like``'s element type at the address ``addr`` (int64)."""
    if not isinstance(like, types.Array):
        return None
    sig = types.CPointer(like.dtype)(types.int64, like)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

    return sig, codegen


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


@njit(**JIT)
def serve(box, spin, f32, f64, i64):
    """The helper's loop: run posted jobs; after ``spin`` idle rounds flag itself asleep and return."""
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
        kind = box[KIND]
        if kind == F32:
            _team_job(box, f32, i64)
        elif kind == F64:
            _team_job(box, f64, i64)
        atomic_store(box, STATE, DONE)


@njit(inline="always", **JIT)
def _put(box, j, a):
    """Array argument ``j``: its address and shape."""
    at = ARR + 4 * j
    box[at] = a.ctypes.data
    for d in range(a.ndim):
        box[at + 1 + d] = a.shape[d]


@njit(**JIT)
def team_with_helper(
    box, kind, cell, x, tok, seq, slen, nb, maxlen, zbuf, cbuf, g, m, sync,
    w, wg, wgh, hgroup, kstart, klen, nblk, y, ycol, out_mode, reverse, hn, cn,
    hidden, hp, bt, cb, nch, kx, xk0, xproj, pblk, pkx,
):  # fmt: skip
    """`run_team` here and in the helper: post the job (`run_team`'s arguments, and ``pkx`` > 0: the input
    projection's, `project_first`), run this thread's part, then take the job back if the helper has not
    started it, else wait until it is done (the box is idle after).

    One call from Python: reading 19 arrays' addresses there (``ndarray.ctypes``) cost ~40 us.
    """
    box[KIND] = kind
    _put(box, 0, x)
    _put(box, 1, tok)
    _put(box, 2, seq)
    _put(box, 3, slen)
    _put(box, 4, zbuf)
    _put(box, 5, cbuf)
    _put(box, 6, g)
    _put(box, 7, m)
    _put(box, 8, sync)
    _put(box, 9, w)
    _put(box, 10, wg)
    _put(box, 11, wgh)
    _put(box, 12, hgroup)
    _put(box, 13, kstart)
    _put(box, 14, klen)
    _put(box, 15, y)
    _put(box, 16, hn)
    _put(box, 17, cn)
    _put(box, 18, xproj)
    _put(box, 19, pblk)
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


class _Helper:
    """The helper thread (a daemon), its job words and its wake-up Event (started on first use, again after a fork)."""

    def __init__(self):
        self.box = np.zeros(WORDS + 8, np.int64)
        self.wake = threading.Event()
        self.busy = threading.Lock()
        self.kinds = np.zeros(0, np.float32), np.zeros(0, np.float64), np.zeros(0, np.int64)
        serve(self.box, 0, *self.kinds)  # compiled (or loaded from the cache) here, not while the first teams run
        started = threading.Event()
        self.thread = threading.Thread(target=self._loop, args=(started,), name="rnnjit-hot", daemon=True)
        self.thread.start()
        # the first teams would otherwise run without it and pause teams (`team_policy.note_alone`)
        started.wait(1.0)

    def _loop(self, started):
        kinds = self.kinds
        started.set()
        while True:
            self.wake.clear()
            serve(self.box, SERVE_SPIN, *kinds)
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


def run_team_hot(args: dict) -> bool:
    """`run_team` on two threads, this one and the hot helper (``args``: its arguments by name, and ``pkx``: the
    input columns both threads project first, 0 for none, with ``pblk``, two zero words, `project_first`).

    False (nothing run) when another thread is using the helper or an array is not C-contiguous: run it
    through the pool then.
    """
    global _helper
    h = _helper
    if h is None:
        with _start_lock:
            if _helper is None:
                _helper = _Helper()
            h = _helper
    if not all(args[n].flags.c_contiguous for n in ARRAYS) or not h.busy.acquire(blocking=False):
        return False
    try:
        if h.box[ASLEEP]:  # woken now, it joins late or, if it sleeps again first, the next call
            h.wake.set()
        team_with_helper(h.box, F64 if args["x"].dtype == np.float64 else F32, *(args[n] for n in _TEAM_ARGS),
                         args["pblk"], args["pkx"])  # fmt: skip
    finally:
        h.busy.release()
    return True


_py = getattr(run_team, "py_func", run_team)
_TEAM_ARGS = _py.__code__.co_varnames[: _py.__code__.co_argcount]
