"""A stack of one-directional layers at once: layer l at step t beside layer l+1 at a step before.

A batch in one tile (a batch of one, above all) has no tiles to share out,
and a layer's steps depend on each other, so a layer runs on one thread.
But layer l+1's step t needs only layer l's output at step t, not the rest
of layer l: with two threads, each runs a layer of the stack, the upper one
behind the lower one (a wavefront). Each layer has a counter of the steps it
has written (`step_done`, one cache line each); a layer's step t waits
(spinning, `wait_for_step`) only until the layer below has written step t,
and reads the counter again only when it has caught up with the value it
saw last. Nothing waits for the layer above: a thread that another process
holds up delays only the layers above it, by the time it lost, never a
whole step of both threads (the team, `rnnjit.kernels.team`, waits for
every chunk of every step).

Threads take layers in order from a counter (`rnnjit.kernels.pool.run_in_order`),
so the layer a thread waits for is always running or done: with 3 layers on
2 threads, the thread done with layer 0 takes layer 2, behind layer 1. Every
layer runs `rnnjit.kernels.layer.run_worker` as on one thread, on the same
inputs: the same bits.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import config, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from rnnjit.kernels._simd import atomic_load, cpu_relax, fetch_add
from rnnjit.kernels.config import JIT

SLOT = 8
"""int64 words between two layers' counters: each counter on its own 64-byte line."""

YIELD_AFTER = 2000
"""Spin-wait rounds (``pause``, ~10-40 ns each) after which a waiting thread gives its core away each round.

On a quiet machine a wait is a step of the other thread (microseconds) and
never gets there; when the thread waited for has lost its core to another
process, spinning on would hold the core it may be waiting to get back.
"""


@intrinsic
def sched_yield(typingctx):
    """The C library's ``sched_yield()``: give the core to another runnable thread (resolved in the process)."""
    sig = types.int32()

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
        return builder.call(fn, [])

    return sig, codegen


if config.DISABLE_JIT:  # pragma: no cover - exercised by the NUMBA_DISABLE_JIT=1 test run
    import time

    def sched_yield():  # noqa: F811
        time.sleep(0)  # lets the thread holding the GIL run
        return 0


@njit(inline="always", **JIT)
def relax(rounds):
    """One round of a spin-wait that has gone ``rounds`` rounds: ``pause``, or after `YIELD_AFTER` a yield."""
    if rounds < YIELD_AFTER:
        cpu_relax()
    else:
        sched_yield()


def counters(layers: int) -> np.ndarray:
    """The ``ready`` counters of `rnnjit.kernels.layer.run_worker` for a stack of ``layers`` layers."""
    return np.zeros(SLOT * layers, np.int64)


@njit(inline="always", **JIT)
def wait_for_step(ready, lay, s):
    """Spin until layer ``lay`` has written step ``s``; the number of steps it has written."""
    done = atomic_load(ready, SLOT * lay)
    rounds = 0
    while done <= s:
        relax(rounds)
        rounds += 1
        done = atomic_load(ready, SLOT * lay)
    return done


@njit(inline="always", **JIT)
def step_done(ready, lay):
    """Count one more step written by layer ``lay`` (after its outputs: the add orders the stores before it)."""
    fetch_add(ready, SLOT * lay, 1)
