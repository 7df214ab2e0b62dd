"""The cell update (activations and new state) over a flat range of (hidden unit, lane) indices.

Shared by the tile kernel (`rnnjit.kernels.layer`, the whole range) and the
team kernel (`rnnjit.kernels.team`, one chunk of units). Every index is
unsigned: an index such as ``g[2 * GB + q]`` with ``GB`` a signed runtime
value could be negative as far as LLVM knows, so numba's negative-index
wraparound stayed in the address and the loop vectorized into gathers
(measured: the H=32 LSTM update ran ~1.5x slower). Slices avoided that too,
but each is a new array with two atomic reference-count updates per step
(see `cell_update`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rnnjit.kernels.activations import sigmoid, sigmoid_tanh, tanh
from rnnjit.kernels.config import JIT

LSTM, GRU, RNN_TANH, RNN_RELU = 0, 1, 2, 3


@njit(**JIT)
def cell_update(cell, g, GB, lo, hi, cs, c_at, cn_at, m, h, h_new):
    """Update indices ``[lo, hi)``: gate blocks of ``g`` are ``GB`` apart; LSTM state ``cs[c_at:]`` ->
    ``cs[cn_at:]`` (both in one array: the two buffers swap every step by their offsets).

    ``h`` is the step's input state (GRU reads it), ``h_new`` receives the
    new h; ``m`` is scratch (LSTM's i * g). No array written is read at
    another index, so LLVM vectorizes every loop (in-place updates at an
    offset silently stayed scalar). Indexes are unsigned (uint64), not
    slices, and the c buffers swap as two ints, not as arrays: every array
    a step binds anew (a slice, a swapped name, an argument) is a pair of
    atomic reference-count updates (numba's ``NRT_incref``/``NRT_decref``,
    locked instructions that wait for the store buffer to drain); a step
    of a one-sequence tile at H=32 spent ~40% of its time in them
    (bench/report_notes.md, "The tagger's batch of one on one thread").
    Unsigned, an index needs no wraparound (see the module docstring).

    Compiled on its own, not inlined into the step loops: inlined, the
    float64 LSTM update did not vectorize (LSTM 32->64, B=256, T=100, one
    thread: 36.3 ms against 16.0 ms, float32 unchanged at 7.0), and inlining
    saved no reference counts (the inlined arguments kept theirs:
    bench/report_notes.md, "Reference counts left in the step").
    """
    n = np.uint64(hi - lo)
    o0 = np.uint64(lo)
    if cell == LSTM:
        o1, o2, o3 = np.uint64(GB + lo), np.uint64(2 * GB + lo), np.uint64(3 * GB + lo)
        oc, ocn = np.uint64(c_at + lo), np.uint64(cn_at + lo)
        for q in range(n):
            m[o0 + q] = sigmoid_tanh(g[o0 + q], g[o2 + q])  # i * g
        for q in range(n):
            cs[ocn + q] = sigmoid(g[o1 + q]) * cs[oc + q] + m[o0 + q]  # c' = f * c + i * g
        for q in range(n):
            h_new[o0 + q] = sigmoid_tanh(g[o3 + q], cs[ocn + q])  # h = o * tanh(c')
    elif cell == GRU:
        o1, o2, o3 = np.uint64(GB + lo), np.uint64(2 * GB + lo), np.uint64(3 * GB + lo)
        for q in range(n):
            r = sigmoid(g[o0 + q])
            zg = sigmoid(g[o1 + q])
            nx = tanh(g[o2 + q] + r * g[o3 + q])
            h_new[o0 + q] = nx + zg * (h[o0 + q] - nx)
    elif cell == RNN_TANH:
        for q in range(n):
            h_new[o0 + q] = tanh(g[o0 + q])
    else:
        zero = g[0] - g[0]
        for q in range(n):
            h_new[o0 + q] = max(g[o0 + q], zero)
