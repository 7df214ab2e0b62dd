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

from numba import njit

from rnnjit.kernels.activations import sigmoid, sigmoid_tanh, tanh
from rnnjit.kernels.config import JIT

LSTM, GRU, RNN_TANH, RNN_RELU = 0, 1, 2, 3


@njit(**JIT)
def cell_update(cell, g, GB, lo, hi, c, c_new, m, h, h_new):
    """Update indices ``[lo, hi)``: gate blocks of ``g`` are ``GB`` apart; LSTM state ``c`` -> ``c_new``.

    ``h`` is the step's input state (GRU reads it), ``h_new`` receives the
    new h; ``m`` is scratch (LSTM's i * g). No array written is read at
    another index, so LLVM vectorizes every loop (in-place updates at an
    offset silently stayed scalar).
    """
    n = hi - lo
    g0 = g[lo:hi]
    hn = h_new[lo:hi]
    if cell == LSTM:
        g1, g2, g3 = g[GB + lo : GB + hi], g[2 * GB + lo : 2 * GB + hi], g[3 * GB + lo : 3 * GB + hi]
        cc, cn, mm = c[lo:hi], c_new[lo:hi], m[lo:hi]
        for q in range(n):
            mm[q] = sigmoid_tanh(g0[q], g2[q])  # i * g
        for q in range(n):
            cn[q] = sigmoid(g1[q]) * cc[q] + mm[q]  # c' = f * c + i * g
        for q in range(n):
            hn[q] = sigmoid_tanh(g3[q], cn[q])  # h = o * tanh(c')
    elif cell == GRU:
        g1, g2, g3 = g[GB + lo : GB + hi], g[2 * GB + lo : 2 * GB + hi], g[3 * GB + lo : 3 * GB + hi]
        hh = h[lo:hi]
        for q in range(n):
            r = sigmoid(g0[q])
            zg = sigmoid(g1[q])
            nx = tanh(g2[q] + r * g3[q])
            hn[q] = nx + zg * (hh[q] - nx)
    elif cell == RNN_TANH:
        for q in range(n):
            hn[q] = tanh(g0[q])
    else:
        zero = g[0] - g[0]
        for q in range(n):
            hn[q] = max(g0[q], zero)
