"""The cell update (activations and new state) over a flat range of (hidden unit, lane) indices.

Shared by the tile kernel (`rnnjit.kernels.layer`, the whole range) and the
team kernel (`rnnjit.kernels.team`, one chunk of units). Every operand is
sliced to the range first and indexed from 0: an index such as
``g[2 * GB + q]`` with ``GB`` a runtime value could be negative as far as
LLVM knows, so numba's negative-index wraparound stayed in the address and
the loop vectorized into gathers (measured: the H=32 LSTM update ran ~1.5x
slower than with slices).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rnnjit.kernels.activations import sigmoid, sigmoid_tanh, tanh
from rnnjit.kernels.config import JIT

LSTM, GRU, RNN_TANH, RNN_RELU = 0, 1, 2, 3


@njit(inline="always", **JIT)
def cell_update(cell, g, GB, lo, hi, c, c_new, m, h, h_new):
    """Update indices ``[lo, hi)``: gate blocks of ``g`` are ``GB`` apart; LSTM state ``c`` -> ``c_new``.

    ``h`` is the step's input state (GRU reads it), ``h_new`` receives the
    new h; ``m`` is scratch (LSTM's i * g). No array written is read at
    another index, so LLVM vectorizes every loop (in-place updates at an
    offset silently stayed scalar). Indexes are unsigned (``u``), not
    slices: a slice is a new array whose creation and release are two
    atomic reference-count updates (numba's ``NRT_incref``/``NRT_decref``,
    each a locked instruction that waits for the store buffer to drain);
    a step of a one-sequence tile at H=32 spent most of its time in them
    (bench/report_notes.md, "The tagger's batch of one on one thread").
    Unsigned, an index needs no wraparound (see the module docstring).
    """
    n = np.uint64(hi - lo)
    o0 = np.uint64(lo)
    if cell == LSTM:
        o1, o2, o3 = np.uint64(GB + lo), np.uint64(2 * GB + lo), np.uint64(3 * GB + lo)
        for q in range(n):
            m[o0 + q] = sigmoid_tanh(g[o0 + q], g[o2 + q])  # i * g
        for q in range(n):
            c_new[o0 + q] = sigmoid(g[o1 + q]) * c[o0 + q] + m[o0 + q]  # c' = f * c + i * g
        for q in range(n):
            h_new[o0 + q] = sigmoid_tanh(g[o3 + q], c_new[o0 + q])  # h = o * tanh(c')
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
