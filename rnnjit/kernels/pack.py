"""Weight packing for the micro-kernels (numpy only, runs once in `prepare`).

Each (layer, direction) becomes one `PackedLayer`: the input and recurrent
weights side by side, ``[W_ih | W_hh]`` of shape (rows, I + H_out), so one
product per step computes all gate pre-activations from ``z = [x_t; h]``.
Rows are grouped by gate, each gate padded to ``Hp`` (a multiple of the panel
height ``MR``) so no panel straddles two gates, then stored in panels of MR
rows, k-major: ``w[p, k, r] = W[p*MR + r, k]``.

GRU keeps PyTorch's linear-before-reset form with four gate blocks
``[r, z, n_x, n_h]``: ``n_x`` rows hold ``W_in`` (h columns zero) and ``n_h``
rows hold ``W_hn`` (x columns zero); per-panel k ranges skip the zeros.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rnnjit.kernels._simd import MR, P_ROWS

CELL_CODES = {"lstm": 0, "gru": 1, "rnn_tanh": 2, "rnn_relu": 3}


@dataclass(frozen=True)
class PackedLayer:
    w: np.ndarray  # (panels, K, MR) gate weights, K = in_size + h_out
    kstart: np.ndarray  # int64 (panels,) first k each panel reads
    klen: np.ndarray  # int64 (panels,) how many k each panel reads
    bias: np.ndarray  # (panels*MR,) combined biases per packed row
    wr: np.ndarray  # (panels_r, H, MR) projection, or a (P_ROWS, 1, MR) dummy
    in_size: int


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def panels(w: np.ndarray) -> np.ndarray:
    """(N, K) -> (N/MR, K, MR) with rows zero-padded to a multiple of MR*P_ROWS."""
    n, k = w.shape
    rows = max(_round_up(n, MR * P_ROWS), MR * P_ROWS)
    full = np.zeros((rows, k), w.dtype)
    full[:n] = w
    return np.ascontiguousarray(full.reshape(rows // MR, MR, k).transpose(0, 2, 1))


def padded_hidden(hidden: int) -> int:
    """Rows per gate block in the packed layout."""
    return _round_up(hidden, MR)


def pack_layer(cell: str, w: Mapping[str, np.ndarray], hidden: int, h_out: int, dtype) -> PackedLayer:
    """Pack one direction of one layer; ``w`` has keys ih, hh and optionally b_ih, b_hh, hr."""
    ih = np.asarray(w["ih"], dtype)
    hh = np.asarray(w["hh"], dtype)
    in_size = ih.shape[1]
    K = in_size + h_out
    H, Hp = hidden, padded_hidden(hidden)
    gates = {"lstm": 4, "gru": 3}.get(cell, 1)
    b_ih = np.asarray(w["b_ih"], dtype) if "b_ih" in w else np.zeros(gates * H, dtype)
    b_hh = np.asarray(w["b_hh"], dtype) if "b_hh" in w else np.zeros(gates * H, dtype)
    blocks = 4 if cell == "gru" else gates
    full = np.zeros((blocks * Hp, K), dtype)
    bias = np.zeros(blocks * Hp, dtype)
    ranges = []
    for q in range(gates):
        rows = slice(q * Hp, q * Hp + H)
        src = slice(q * H, (q + 1) * H)
        if cell == "gru" and q == 2:
            full[rows, :in_size] = ih[src]
            bias[rows] = b_ih[src]
            ranges.append((0, in_size))
            rows_h = slice(3 * Hp, 3 * Hp + H)
            full[rows_h, in_size:] = hh[src]
            bias[rows_h] = b_hh[src]
            ranges.append((in_size, h_out))
        else:
            full[rows, :in_size] = ih[src]
            full[rows, in_size:] = hh[src]
            bias[rows] = b_ih[src] + b_hh[src]
            ranges.append((0, K))
    packed = panels(full)
    n_pan = packed.shape[0]
    kstart = np.zeros(n_pan, np.int64)
    klen = np.zeros(n_pan, np.int64)  # padding panels read nothing and store zeros
    for p in range(min(n_pan, blocks * Hp // MR)):
        kstart[p], klen[p] = ranges[p * MR // Hp]
    bias_full = np.zeros(n_pan * MR, dtype)
    bias_full[: bias.size] = bias
    if "hr" in w:
        wr = panels(np.asarray(w["hr"], dtype))
    else:
        wr = np.zeros((P_ROWS, 1, MR), dtype)
    return PackedLayer(packed, kstart, klen, bias_full, wr, in_size)
