"""Weight packing for the micro-kernels (numpy only, runs once in `prepare`).

Each (layer, direction) becomes one `PackedLayer`: biases, input and recurrent
weights side by side, ``[b_a | W_ih | W_hh | b_b]`` of shape (rows, I + H_out + 2),
so one product per step computes all gate pre-activations, biases included,
from ``z = [1; x_t; h; 1]``.
Rows are grouped by gate, each gate padded to ``Hp`` (a multiple of the panel
height ``MR``) so no panel straddles two gates, then stored in panels of MR
rows, k-major: ``w[p, k, r] = W[p*MR + r, k]``.

GRU keeps PyTorch's linear-before-reset form with four gate blocks
``[r, z, n_x, n_h]``: ``n_x`` rows hold ``b_in | W_in`` (h columns zero) and
``n_h`` rows hold ``W_hn | b_hn`` (x columns zero); per-panel k ranges skip
the zeros.

A precision whose products read packed operands (`rnnjit.kernels.precision`,
``k_pack`` > 1) packs the same float matrix afterwards: bf16 two columns per
uint32 (`to_operand`), int8 four per int32 with per-row scales, the x and h
columns as two segments and the biases kept in float (`int8_rows`). Panels,
groups and the kernels' index arithmetic stay the same with K counted in
elements.
"""

from __future__ import annotations

import math

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from rnnjit.kernels._simd import MR, P_ROWS
from rnnjit.kernels.precision import Precision
from rnnjit.reference import bf16_bits

CELL_CODES = {"lstm": 0, "gru": 1, "rnn_tanh": 2, "rnn_relu": 3}


@dataclass(frozen=True)
class PackedLayer:
    w: np.ndarray  # (panels, K, MR) gates, K = in_size + h_out + 2 (two bias columns)
    wg: np.ndarray  # (panels / P_ROWS, K, P_ROWS * MR): the same, groups interleaved (`group_panels`)
    kstart: np.ndarray  # int64 (panels,) first k each panel reads (in operand elements)
    klen: np.ndarray  # int64 (panels,) how many k each panel reads
    wr: np.ndarray  # (panels_r, H, MR) projection, or a (P_ROWS, 1, MR) dummy
    wrg: np.ndarray  # the same, groups interleaved (`group_panels`), for the one- and few-sequence kernels
    in_size: int
    # int8 only (`int8_rows`; empty otherwise): rows of x scales, h scales and biases of the gate rows, and the
    # x and h offset corrections of the unsigned inputs; the same for the projection (h: 0); x quads in a row
    qs: np.ndarray = field(default_factory=lambda: np.zeros((3, 0), np.float32))
    qc: np.ndarray = field(default_factory=lambda: np.zeros((2, 0), np.int32))
    rqs: np.ndarray = field(default_factory=lambda: np.zeros((3, 0), np.float32))
    rqc: np.ndarray = field(default_factory=lambda: np.zeros((2, 0), np.int32))
    split: int = 0
    # the elements of ``wg`` after the first ``kx`` (`projected_elements`), groups contiguous: what a one-sequence
    # tile reads per step once its input columns are projected (empty: int8, never projected)
    wgh: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, MR * P_ROWS), np.float32))
    # the group of ``wg`` stored at each group of ``wgh`` (`unit_major`)
    hgroup: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def panels(w: np.ndarray) -> np.ndarray:
    """(N, K) -> (N/MR, K, MR) with rows zero-padded to a multiple of MR*P_ROWS."""
    n, k = w.shape
    rows = max(_round_up(n, MR * P_ROWS), MR * P_ROWS)
    full = np.zeros((rows, k), w.dtype)
    full[:n] = w
    out = aligned_empty((rows // MR, k, MR), w.dtype)
    out[...] = full.reshape(rows // MR, MR, k).transpose(0, 2, 1)
    return out


def group_panels(packed: np.ndarray) -> np.ndarray:
    """(N/MR, K, MR) panels -> (N/(MR*P_ROWS), K, MR*P_ROWS): P_ROWS panels interleaved, k-major.

    The one-sequence kernel reads a group of P_ROWS panels per call; stored
    this way the group is one contiguous stream (192 vs 129 GB/s from L2,
    measured). A second copy of the weights: the lanes kernels keep ``w``.
    """
    n_pan, K, mr = packed.shape
    out = aligned_empty((n_pan // P_ROWS, K, P_ROWS * mr), packed.dtype)
    out[...] = packed.reshape(n_pan // P_ROWS, P_ROWS, K, mr).transpose(0, 2, 1, 3).reshape(out.shape)
    return out


def projected_elements(in_size: int, precision: Precision) -> int:
    """Operand elements of ``[b_ih | W_ih]`` (``in_size + 1`` columns) a one-sequence tile projects for all its steps
    first (`rnnjit.kernels.layer.project_steps`): every whole element (bf16: the pair of the last input column and
    the first h column stays per step); 0 for int8, whose input columns are a product of their own with a per-step
    scale (`rnnjit.kernels.layer.gate_products`)."""
    return 0 if precision.k_pack > 2 else (in_size + 1) // precision.k_pack


def aligned_empty(shape, dtype, align: int = 64) -> np.ndarray:
    """An uninitialized C-contiguous array whose data starts on a cache line."""
    dtype = np.dtype(dtype)
    n = math.prod(shape) if isinstance(shape, (tuple, list)) else int(shape)
    buf = np.empty(n * dtype.itemsize + align, np.uint8)
    off = (-buf.ctypes.data) % align
    return buf[off : off + n * dtype.itemsize].view(dtype).reshape(shape)


def padded_hidden(hidden: int) -> int:
    """Rows per gate block in the packed layout."""
    return _round_up(hidden, MR)


def to_operand(a: np.ndarray, precision: Precision) -> np.ndarray:
    """(N, K) float -> (N, ceil(K / 2)) uint32 for bf16: column pairs rounded (`rnnjit.reference.bf16_bits`),
    the lower index in the low half. The identity for precisions whose products read the compute dtype
    (int8 packs with `int8_rows`)."""
    if precision.k_pack == 1:
        return np.ascontiguousarray(a, precision.dtype)
    n, k = a.shape
    kp = _round_up(k, 2)
    full = np.zeros((n, kp), np.float32)
    full[:, :k] = a
    bits = bf16_bits(full)
    return np.ascontiguousarray(bits[:, 0::2] | (bits[:, 1::2] << 16))


def int8_rows(mat: np.ndarray, segments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric int8 per row and column segment: ``(quads, scales, corrections)``.

    Each segment ``(c0, c1)`` of ``mat``'s columns gets per row the scale
    ``max|w| / 127`` and values ``floor(w / scale + 0.5)`` in [-127, 127],
    stored 4 per int32 (column j in byte j % 4; a segment starts a new int32).
    The products read inputs offset by 128 (unsigned, `rnnjit.kernels.layer.pack_operand`),
    so each row and segment also gets ``128 * sum(values)`` to subtract.
    """
    rows = mat.shape[0]
    quads = [-(-(c1 - c0) // 4) for c0, c1 in segments]
    q = np.zeros((rows, 4 * sum(quads)), np.int8)
    scale = np.zeros((rows, 3), np.float32)
    corr = np.zeros((rows, 2), np.int32)
    at = 0
    for j, ((c0, c1), nq) in enumerate(zip(segments, quads)):
        seg = np.asarray(mat[:, c0:c1], np.float32)
        top = np.abs(seg).max(axis=1) if c1 > c0 else np.zeros(rows, np.float32)
        sc = np.where(top > 0, top / np.float32(127), np.float32(1)).astype(np.float32)
        vals = np.clip(np.floor(seg / sc[:, None] + np.float32(0.5)), -127, 127).astype(np.int8)
        q[:, 4 * at : 4 * at + (c1 - c0)] = vals
        scale[:, j], corr[:, j] = sc, 128 * vals.astype(np.int32).sum(axis=1)
        at += nq
    return np.ascontiguousarray(q).view(np.int32), scale, corr


def _rows(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` with rows zero-padded to ``n`` (the panels' padding)."""
    out = np.zeros((n, *a.shape[1:]), a.dtype)
    out[: a.shape[0]] = a
    return out


def pack_layer(cell: str, w: Mapping[str, np.ndarray], hidden: int, h_out: int, precision: Precision) -> PackedLayer:
    """Pack one direction of one layer; ``w`` has keys ih, hh and optionally b_ih, b_hh, hr."""
    dtype, kp = precision.dtype, precision.k_pack
    ih = np.asarray(w["ih"], dtype)
    hh = np.asarray(w["hh"], dtype)
    in_size = ih.shape[1]
    K = in_size + h_out + 2
    x0, h0 = 1, 1 + in_size  # first x column, first h column
    H, Hp = hidden, padded_hidden(hidden)
    gates = {"lstm": 4, "gru": 3}.get(cell, 1)
    b_ih = np.asarray(w["b_ih"], dtype) if "b_ih" in w else np.zeros(gates * H, dtype)
    b_hh = np.asarray(w["b_hh"], dtype) if "b_hh" in w else np.zeros(gates * H, dtype)
    blocks = 4 if cell == "gru" else gates
    full = np.zeros((blocks * Hp, K), dtype)
    ranges = []
    for q in range(gates):
        rows = slice(q * Hp, q * Hp + H)
        src = slice(q * H, (q + 1) * H)
        full[rows, 0] = b_ih[src]
        full[rows, x0:h0] = ih[src]
        if cell == "gru" and q == 2:
            ranges.append((0, h0))
            rows = slice(3 * Hp, 3 * Hp + H)
            ranges.append((h0, K - h0))
        else:
            ranges.append((0, K))
        full[rows, h0 : K - 1] = hh[src]
        full[rows, K - 1] = b_hh[src]
    if precision.product == "dpbusd":
        return _pack_int8(full, w, in_size, h_out, dtype, precision)
    packed = panels(to_operand(full, precision))
    n_pan = packed.shape[0]
    kstart = np.zeros(n_pan, np.int64)
    klen = np.zeros(n_pan, np.int64)  # padding panels read nothing and store zeros
    for p in range(min(n_pan, blocks * Hp // MR)):
        k0, n = ranges[p * MR // Hp]
        kstart[p], klen[p] = k0 // kp, -(-(k0 + n) // kp) - k0 // kp  # whole elements covering the range
    if "hr" in w:
        wr = panels(to_operand(np.asarray(w["hr"], dtype), precision))
    else:
        wr = np.zeros((P_ROWS, 1, MR), precision.operand)
    wg = group_panels(packed)
    # the h elements again, groups contiguous: per step one sequential stream, as over all of ``wg`` (reading
    # ``wg`` from element kx skips kx * 256 bytes at every group, and the hardware prefetcher lost the stream at
    # each one: measured, LSTM H=128 I=32 batch of one, 0.4 us more per step than reading every column)
    hgroup = unit_major(wg.shape[0], blocks, Hp)
    wgh = aligned_empty((wg.shape[0], wg.shape[1] - projected_elements(in_size, precision), wg.shape[2]), wg.dtype)
    wgh[...] = wg[hgroup, wg.shape[1] - wgh.shape[1] :]
    return PackedLayer(packed, wg, kstart, klen, wr, group_panels(wr), in_size, wgh=wgh, hgroup=hgroup)


def unit_major(n_groups: int, blocks: int, hp: int) -> np.ndarray:
    """The order of ``wg``'s groups in ``wgh``: when every gate block is whole groups (``hp`` a multiple of
    ``MR * P_ROWS``), the groups of the same hidden units next to each other (units 0-63 of every gate, then
    units 64-127, ...), else ``wg``'s order.

    A chunk of a team (`rnnjit.kernels.team`) computes every gate of its units: in ``wg``'s order (gate after
    gate) its groups lie a quarter of the weights apart and the hardware prefetcher restarts at each one,
    stored together they are one stream. Measured (LSTM I=H=192, batch of one, one thread, the worker reading
    ``wg``'s order strided as a chunk does): 4.95 against 4.25 us per step. The worker reads ``wgh`` in its
    stored order (`hgroup`), so it is one stream either way.
    """
    per = hp // (MR * P_ROWS)
    if hp % (MR * P_ROWS) or blocks * per != n_groups:
        return np.arange(n_groups, dtype=np.int64)
    return np.arange(n_groups, dtype=np.int64).reshape(blocks, per).T.reshape(-1).copy()


def _pack_int8(full: np.ndarray, w, in_size: int, h_out: int, dtype, precision: Precision) -> PackedLayer:
    """`pack_layer` for int8: x and h columns as two segments (`int8_rows`), the two bias columns summed in float."""
    K = full.shape[1]
    q, scale, corr = int8_rows(full, [(1, 1 + in_size), (1 + in_size, K - 1)])
    scale[:, 2] = full[:, 0] + full[:, K - 1]
    packed = panels(q)
    n_pan = packed.shape[0]
    kstart = np.zeros(n_pan, np.int64)
    klen = np.full(n_pan, packed.shape[1], np.int64)
    if "hr" in w:
        hr = np.asarray(w["hr"], dtype)
        rq, rscale, rcorr = int8_rows(hr, [(0, hr.shape[1])])
        wr = panels(rq)
    else:
        wr = np.zeros((P_ROWS, 1, MR), precision.operand)
        rscale, rcorr = np.zeros((0, 3), np.float32), np.zeros((0, 2), np.int32)
    n_r = wr.shape[0] * MR

    def fields(a, n):  # (rows, fields) -> (fields, n rows), rows zero-padded as the panels are
        return np.ascontiguousarray(_rows(a, n).T)

    return PackedLayer(packed, group_panels(packed), kstart, klen, wr, group_panels(wr), in_size,
                       fields(scale, n_pan * MR), fields(corr, n_pan * MR), fields(rscale, n_r), fields(rcorr, n_r),
                       -(-in_size // 4), np.zeros((0, 1, MR * P_ROWS), np.int32))  # fmt: skip
