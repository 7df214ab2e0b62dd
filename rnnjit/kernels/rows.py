"""The chain's per-vector steps (linear, LayerNorm, BatchNorm, l2norm, activations) compiled, on valid rows only.

A run of consecutive per-vector steps is one *program* (`prepare_steps`),
applied by `run_steps` to a list of rows: the valid steps of every sequence
(per-step steps) or one row per sequence (after ``last``/``final``/pooling).
Rows are read through an index array from wherever they live (the padded
output of a recurrent module, a packed array of valid steps, an embedding
table read by token id) and written through another (a packed array that the
next recurrent module reads by index, or the padded (B, T, O) result): no
padded (B, T, F) array is built between steps, and padding is never computed.

Layout ("rows in lanes", as the recurrent kernel's): a tile of up to
``NV * lanes`` rows (48 float32, 24 float64) is gathered into a (features,
lanes) buffer, every step of the program runs on it while it is in cache, and
the result is scattered. A linear layer is the recurrent kernel's micro-kernel
(`mk_lanes`: one MR-row weight panel against three vectors of lanes, the
accumulators in registers): a wide output layer (876 outputs in the
polyphone tagger) runs at the machine's FMA rate, not as a numpy product per
batch.

Same bits for a row whatever else is in its batch: lanes never mix, every
output is one FMA chain over the input features in order (the same in
`mk_lanes`, `mk_lanes2` and `mk_lanes1`), and reductions over features (softmax, LayerNorm)
run per lane in feature order; no BLAS call, whose blocking would depend on
the number of rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numba
import numpy as np
from numba import njit

from rnnjit.kernels._simd import MR, NV, fetch_add, mk_lanes, mk_lanes1, mk_lanes2
from rnnjit.kernels._transpose import lanes_to_rows, rows_to_lanes
from rnnjit.kernels.activations import sigmoid, tanh
from rnnjit.kernels.config import JIT
from rnnjit.kernels.layer import lanes_row
from rnnjit.kernels.pool import parallel
from rnnjit.kernels.precision import VECTOR_BYTES, lanes

LINEAR, ACTIVATION, LAYERNORM, BATCHNORM, L2NORM, LINEAR_OUT = 0, 1, 2, 3, 4, 5
"""Op codes of a program row ``[code, in, out, a, b, c]`` (see `prepare_steps` for a, b, c)."""

ROWS_OUT_FROM = 2
"""A program's last step, when it is a linear layer at least this many SIMD vectors wide, runs rows-major
(`LINEAR_OUT`, `_linear_out`): each output row is then written as one contiguous run, not gathered from
``bt`` lanes apart, and a tile's rows are padded to ``MR``, not to a vector of lanes. Measured: bench/report_notes.md
("Wide output layers on few rows"). In calls of at least one full tile of rows only from `ROWS_OUT_TILES_FROM`."""

ROWS_OUT_TILES_FROM = 32
"""SIMD vectors of outputs (512 float32) from which the last linear layer runs rows-major in calls of full tiles
too; narrower, those calls keep the lane layout (`PreparedSteps.few`), whose scatter moves 16 x 16 blocks
(`rnnjit.kernels._transpose`). Measured (one thread, CPU time, 12000 rows, lane layout against rows-major):
outputs 32-150 0.40-0.84, 256 0.91-1.06, 512 0.98, 876 0.94-1.09 (inputs 32, 64, 256; bench/report_notes.md)."""

ACT_CODES = {"identity": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "softmax": 4, "log_softmax": 5, "gelu": 6,
             "elu": 7, "leaky_relu": 8}  # fmt: skip
_SQRT1_2 = 1.0 / math.sqrt(2.0)


@njit(**JIT)
def _softmax_lanes(cur, fi, bt, used, stat, log):
    """Softmax (or log-softmax) over the ``fi`` feature rows of each lane, in place."""
    m = stat[0:bt]
    s = stat[bt : 2 * bt]
    for l in range(used):
        m[l] = cur[l]
        s[l] = 0
    for f in range(1, fi):
        row = cur[f * bt : f * bt + used]
        for l in range(used):
            m[l] = max(m[l], row[l])
    for f in range(fi):
        row = cur[f * bt : f * bt + used]
        for l in range(used):
            v = row[l] - m[l]
            e = np.exp(v)
            s[l] += e
            row[l] = v if log else e
    if log:
        for l in range(used):
            s[l] = np.log(s[l])
        for f in range(fi):
            row = cur[f * bt : f * bt + used]
            for l in range(used):
                row[l] -= s[l]
    else:
        for f in range(fi):
            row = cur[f * bt : f * bt + used]
            for l in range(used):
                row[l] /= s[l]


@njit(inline="always", **JIT)
def _elementwise(row, code):
    """Element-wise activation ``code`` (`ACT_CODES`, not softmax) on a contiguous run of values, in place: a
    feature row of a lane tile (`_activation`) or an output row (`_linear_out`), the same operations per value."""
    n = row.shape[0]
    if n == 0 or code == 0:
        return
    zero = row[0] - row[0]
    if code == 1:
        for l in range(n):
            row[l] = max(row[l], zero)
    elif code == 2:
        for l in range(n):
            row[l] = sigmoid(row[l])
    elif code == 3:
        for l in range(n):
            row[l] = tanh(row[l])
    elif code == 6:
        for l in range(n):
            v = row[l]
            row[l] = 0.5 * v * (1.0 + math.erf(v * _SQRT1_2))
    elif code == 7:
        for l in range(n):
            v = row[l]
            row[l] = v if v > 0 else np.expm1(min(v, zero))
    elif code == 8:
        for l in range(n):
            v = row[l]
            row[l] = v if v >= 0 else v * 0.01


@njit(**JIT)
def _activation(cur, code, fi, bt, used, stat):
    """Activation ``code`` (`ACT_CODES`) on ``fi`` feature rows of ``used`` lanes, in place."""
    if code == 4 or code == 5:
        _softmax_lanes(cur, fi, bt, used, stat, code == 5)
        return
    for f in range(fi):
        _elementwise(cur[f * bt : f * bt + used], code)


@njit(**JIT)
def _layernorm(cur, fi, bt, used, stat, wts, wo, bo, eps):
    """LayerNorm over the feature rows of each lane (biased variance, as torch), optional weight and bias."""
    mean = stat[0:bt]
    var = stat[bt : 2 * bt]
    for l in range(used):
        mean[l] = 0
        var[l] = 0
    for f in range(fi):
        row = cur[f * bt : f * bt + used]
        for l in range(used):
            mean[l] += row[l]
    for l in range(used):
        mean[l] /= fi
    for f in range(fi):
        row = cur[f * bt : f * bt + used]
        for l in range(used):
            d = row[l] - mean[l]
            var[l] += d * d
    for l in range(used):
        var[l] = np.sqrt(var[l] / fi + eps)
    one = eps * 0 + 1  # in the rows' dtype
    for f in range(fi):
        row = cur[f * bt : f * bt + used]
        w = wts[wo + f] if wo >= 0 else one
        b = wts[bo + f] if bo >= 0 else one - one
        for l in range(used):
            row[l] = (row[l] - mean[l]) / var[l] * w + b


@njit(**JIT)
def _l2norm(cur, fi, bt, used, stat, eps):
    """``F.normalize(p=2)`` over the feature rows of each lane: x / max(||x||, eps)."""
    norm = stat[0:bt]
    for l in range(used):
        norm[l] = 0
    for f in range(fi):
        row = cur[f * bt : f * bt + used]
        for l in range(used):
            norm[l] += row[l] * row[l]
    for l in range(used):
        norm[l] = max(np.sqrt(norm[l]), eps)
    for f in range(fi):
        row = cur[f * bt : f * bt + used]
        for l in range(used):
            row[l] /= norm[l]


ROW_ACTIVATIONS = frozenset(ACT_CODES) - {"softmax", "log_softmax"}
"""Activations that may follow a `LINEAR_OUT` step (run on its rows). Not softmax: its sum over a row
is a chain through every element, which keeps numba's loop over a row scalar, exp calls included
(32 -> 876 + softmax, one thread: rows-major 2.2x faster on 1 row, 0.88x on 24, 0.78x on 480), where a
lane tile runs the exponentials of 16 rows in one vector."""

SPLIT_ROWS_WORK = 8_000_000
"""Work of a `run_steps` call (rows x `PreparedSteps.row_work`, about multiply-adds) below which it runs on the
calling thread alone (~80 us of one thread's work), and above which a call with fewer tiles than threads
splits its last linear layer's output columns over the threads: handing work to a pool thread costs ~30 us
(measured: bench/report_notes.md, "Wide output layers on few rows")."""

ELEMENT_WORK = 4
"""`PreparedSteps.row_work` of one element of a step that is not a product (an activation, a norm)."""


@njit(inline="always", **JIT)
def gather_rows(sf, offs, nr, fin, cur, bt, lv):
    """``cur[f * bt + l] = sf[offs[l] + f]`` for rows l < ``nr``, features f < ``fin``: whole blocks of ``lv``
    rows and features by `rows_to_lanes`, the rest one value at a time."""
    whole, fw = nr // lv * lv, fin // lv * lv
    for l0 in range(0, whole, lv):
        for f0 in range(0, fw, lv):
            rows_to_lanes(sf, offs, l0, f0, cur, f0 * bt + l0, bt)
        for l in range(l0, l0 + lv):
            for f in range(fw, fin):
                cur[f * bt + l] = sf[offs[l] + f]
    for l in range(whole, nr):
        for f in range(fin):
            cur[f * bt + l] = sf[offs[l] + f]


@njit(inline="always", **JIT)
def scatter_rows(cur, bt, df, offs, nr, fout, lv):
    """``df[offs[l] + f] = cur[f * bt + l]`` for rows l < ``nr``, features f < ``fout`` (`gather_rows` back)."""
    whole, fw = nr // lv * lv, fout // lv * lv
    for l0 in range(0, whole, lv):
        for f0 in range(0, fw, lv):
            lanes_to_rows(cur, f0 * bt + l0, bt, df, offs, l0, f0)
        for l in range(l0, l0 + lv):
            for f in range(fw, fout):
                df[offs[l] + f] = cur[f * bt + l]
    for l in range(whole, nr):
        for f in range(fout):
            df[offs[l] + f] = cur[f * bt + l]


@njit(**JIT)
def _linear_out(cur, bt, nr, fout, wts, prog, lo, lv, pa, ob, df, dst_idx, r0, v0, v1):
    """The last linear layer of a tile, rows-major, written to its rows of ``df`` (`LINEAR_OUT`).

    The micro-kernel with the roles turned: MR rows of the tile as the
    panel (``pa``, k-major), the output features as the lanes (the weight
    stored transposed, ``ldw`` wide, zero-padded to whole vectors). Each
    output is the same FMA chain over the input features in order as in
    the lane layout (`mk_lanes` multiplies the same two numbers into the
    same accumulator, from zero), then the bias: the same bits.
    Column groups of NV vectors outside, blocks of rows inside, so a
    group's weights are read once per tile. Only the output vectors
    ``[v0, v1)`` (a column chunk, `run_steps`). The activations after it
    (program rows ``lo + 1 ...``) run on each written row (`_elementwise`).
    """
    fi, wo, bo, ldw = prog[lo, 1], prog[lo, 3], prog[lo, 4], prog[lo, 5]
    nb = (nr + MR - 1) // MR
    for j in range(nb):
        for f in range(fi):
            src = cur[f * bt + j * MR : f * bt + j * MR + MR]
            dst = pa[(j * fi + f) * MR : (j * fi + f) * MR + MR]
            for r in range(MR):
                dst[r] = src[r]
    v = v0
    while v < v1:
        step = NV if v + NV <= v1 else (2 if v + 2 <= v1 else 1)
        for j in range(nb):
            if step == NV:
                mk_lanes(pa, j * fi * MR, wts, wo + v * lv, ldw, ob, j * MR * ldw + v * lv, ldw, fi)
            elif step == 2:
                mk_lanes2(pa, j * fi * MR, wts, wo + v * lv, ldw, ob, j * MR * ldw + v * lv, ldw, fi)
            else:
                mk_lanes1(pa, j * fi * MR, wts, wo + v * lv, ldw, ob, j * MR * ldw + v * lv, ldw, fi)
        v += step
    c0, c1 = v0 * lv, min(v1 * lv, fout)
    for l in range(nr):
        out = df[dst_idx[r0 + l] * fout + c0 : dst_idx[r0 + l] * fout + c1]
        row = ob[l * ldw + c0 : l * ldw + c1]
        if bo >= 0:
            bias = wts[bo + c0 : bo + c1]
            for o in range(c1 - c0):
                out[o] = row[o] + bias[o]
        else:
            for o in range(c1 - c0):
                out[o] = row[o]
        for op in range(lo + 1, prog.shape[0]):
            _elementwise(out, prog[op, 3])


@njit(**JIT)
def rows_worker(src, src_idx, dst, dst_idx, prog, wts, width, chunks, next_tile):
    """One thread's share: tiles of rows from the shared counter, each gathered, run through ``prog``, scattered.

    ``src`` (rows, F_in) is read at rows ``src_idx``; result row r goes to
    ``dst[dst_idx[r]]`` (dst (rows, F_out)). ``width``: rows of each tile
    buffer (the widest step, rounded up to MR).

    Fewer rows than a tile (a batch of one's steps) get buffers only as wide
    as their SIMD vectors, and the buffers are not zeroed: every value a step
    reads was written before (the gather zero-fills the lanes past the last
    row, each linear layer writes all its panel rows). Zeroing two full-tile
    buffers for a 876-wide output took ~9 us, the whole call for one row.
    """
    n = src_idx.shape[0]
    fin = src.shape[1]
    fout = dst.shape[1]
    lv = VECTOR_BYTES // src.itemsize  # rows per SIMD vector
    rows_per_tile = NV * lv
    bt = min(rows_per_tile, (n + lv - 1) // lv * lv)  # the buffers' lane stride
    sf = src.reshape(src.size)
    df = dst.reshape(dst.size)
    a = np.empty(width * bt, src.dtype)
    b = np.empty(width * bt, src.dtype)
    stat = np.zeros(2 * bt, src.dtype)
    offs = np.zeros(bt, np.int64)  # where each row of the tile starts in ``src``, then in ``dst``
    lo = prog.shape[0] - 1  # the `LINEAR_OUT` row, if any: the last that is not an activation
    while lo > 0 and prog[lo, 0] == ACTIVATION:
        lo -= 1
    rows_out = lo >= 0 and prog[lo, 0] == LINEAR_OUT
    pa = np.empty(bt * prog[lo, 1] if rows_out else 0, src.dtype)
    ob = np.empty(bt * prog[lo, 5] if rows_out else 0, src.dtype)
    n_tiles = (n + rows_per_tile - 1) // rows_per_tile
    out_vecs = prog[lo, 5] // lv if rows_out else 0
    per_chunk = ((out_vecs + chunks - 1) // chunks + NV - 1) // NV * NV  # output vectors per chunk
    held, kept = -1, a  # the tile whose steps before the last are in ``kept``
    while True:
        unit = fetch_add(next_tile, 0, 1)
        if unit >= n_tiles * chunks:
            break
        tile, chunk = unit // chunks, unit % chunks
        r0 = tile * rows_per_tile
        nr = min(bt, n - r0)
        nvec = (nr + lv - 1) // lv
        used = nvec * lv
        if tile == held:
            _linear_out(kept, bt, nr, fout, wts, prog, lo, lv, pa, ob, df, dst_idx, r0, chunk * per_chunk,
                        min(out_vecs, (chunk + 1) * per_chunk))  # fmt: skip
            continue
        cur, nxt = a, b
        for l in range(nr):
            offs[l] = src_idx[r0 + l] * fin
        gather_rows(sf, offs, nr, fin, cur, bt, lv)
        for f in range(fin):
            for l in range(nr, used):
                cur[f * bt + l] = 0
        for op in range(prog.shape[0]):
            code, fi, fo = prog[op, 0], prog[op, 1], prog[op, 2]
            if code == LINEAR:
                wo, bo = prog[op, 3], prog[op, 4]
                for p in range((fo + MR - 1) // MR):
                    lanes_row(wts, wo + p * fi * MR, cur, 0, nxt, p * MR * bt, bt, fi, nvec, lv)
                if bo >= 0:
                    for o in range(fo):
                        bias = wts[bo + o]
                        row = nxt[o * bt : o * bt + used]
                        for l in range(used):
                            row[l] += bias
                cur, nxt = nxt, cur
            elif code == LINEAR_OUT:
                held, kept = tile, cur
                _linear_out(cur, bt, nr, fout, wts, prog, lo, lv, pa, ob, df, dst_idx, r0, chunk * per_chunk,
                            min(out_vecs, (chunk + 1) * per_chunk))  # fmt: skip
                break  # it ran the activations after it too
            elif code == ACTIVATION:
                _activation(cur, prog[op, 3], fi, bt, used, stat)
            elif code == LAYERNORM:
                _layernorm(cur, fi, bt, used, stat, wts, prog[op, 3], prog[op, 4], wts[prog[op, 5]])
            elif code == L2NORM:  # x / max(||x||_2, eps) per lane (eps at offset a)
                _l2norm(cur, fi, bt, used, stat, wts[prog[op, 3]])
            else:  # BATCHNORM: (x - mean) / sqrt(var + eps), then weight and bias (offsets a, b, c, c + fi)
                mo, so, ao = prog[op, 3], prog[op, 4], prog[op, 5]
                for f in range(fi):
                    row = cur[f * bt : f * bt + used]
                    mu, sd = wts[mo + f], wts[so + f]
                    w = wts[ao + f] if ao >= 0 else sd / sd
                    bb = wts[ao + fi + f] if ao >= 0 else mu - mu
                    for l in range(used):
                        row[l] = (row[l] - mu) / sd * w + bb
        if rows_out:
            continue
        for l in range(nr):
            offs[l] = dst_idx[r0 + l] * fout
        scatter_rows(cur, bt, df, offs, nr, fout, lv)


@dataclass(frozen=True)
class PreparedSteps:
    """A run of per-vector steps as one program: ``prog`` rows (`LINEAR`...), their weights packed in ``wts``."""

    prog: np.ndarray  # int64 (ops, 6)
    wts: np.ndarray  # flat, the dtype of the rows
    width: int  # rows of a tile buffer
    in_features: int
    out_features: int
    dtype: np.dtype
    row_work: int  # multiply-adds of one row, plus `ELEMENT_WORK` per element of the other steps (`SPLIT_ROWS_WORK`)
    out_width: int  # ``ldw`` of the `LINEAR_OUT` step (its transposed weight's width), 0 without one
    few: tuple | None = None  # (prog, wts, out_width) for calls under one tile, when they differ (`ROWS_OUT_FROM`)


def _linear_panels(w: np.ndarray) -> np.ndarray:
    """(out, in) -> flat panels of MR output rows, k-major (``p[panel, k, r] = w[panel*MR + r, k]``), rows zero-padded."""
    o, k = w.shape
    rows = -(-o // MR) * MR
    full = np.zeros((rows, k), w.dtype)
    full[:o] = w
    return full.reshape(rows // MR, MR, k).transpose(0, 2, 1).ravel()


def _linear_op(s, weights, width, put):
    w = weights[f"{s.prefix}weight"]
    w = np.asarray(w.reshape(w.shape[0], w.shape[1]))
    bo = put(weights[f"{s.prefix}bias"]) if s.bias else -1
    return (LINEAR, width, w.shape[0], put(_linear_panels(w)), bo, 0), w.shape[0]


def _linear_out_op(s, weights, width, put, lv):
    """`LINEAR_OUT`: the weight transposed, (in, ldw) with ``ldw`` the outputs rounded up to whole vectors."""
    w = weights[f"{s.prefix}weight"]
    fo = w.shape[0]
    ldw = -(-fo // lv) * lv
    wt = np.zeros((width, ldw), w.dtype)
    wt[:, :fo] = np.asarray(w.reshape(fo, width)).T
    bo = put(weights[f"{s.prefix}bias"]) if s.bias else -1
    return (LINEAR_OUT, width, fo, put(wt), bo, ldw), fo


def _layernorm_op(s, weights, width, put):
    wo = put(weights[f"{s.prefix}weight"]) if s.name and s.affine else -1
    bo = put(weights[f"{s.prefix}bias"]) if s.name and s.bias else -1
    return (LAYERNORM, width, width, wo, bo, put([s.eps])), width


def _batchnorm_op(s, weights, width, put):
    p = s.prefix
    var = np.asarray(weights[f"{p}running_var"])
    mo, so = put(weights[f"{p}running_mean"]), put(np.sqrt(var + var.dtype.type(s.eps)))
    ao = put(np.concatenate([weights[f"{p}weight"], weights[f"{p}bias"]])) if s.affine else -1
    return (BATCHNORM, width, width, mo, so, ao), width


OPS = {
    "linear": _linear_op,
    "activation": lambda s, weights, width, put: ((ACTIVATION, width, width, ACT_CODES[s.name], 0, 0), width),
    "layernorm": _layernorm_op,
    "batchnorm": _batchnorm_op,
    "l2norm": lambda s, weights, width, put: ((L2NORM, width, width, put([s.eps]), 0, 0), width),
    "dropout": None,  # a no-op in eval mode
}
"""Step kind -> ``op(step, weights, width, put) -> (program row, width out)``; ``put`` stores an array in ``wts``."""


def prepare_steps(steps: Sequence, weights: Mapping[str, np.ndarray], in_features: int, dtype) -> PreparedSteps:
    """Pack a run of per-vector steps (`rnnjit.spec.Step` of the kinds in `OPS`) as one program.

    ``in_features`` is the width of the rows the run receives; ``weights``
    hold the steps' tensors under their state_dict names.
    """
    dtype = np.dtype(dtype)
    last = _last_product(steps)
    lv = lanes(dtype)
    wide = last is not None and last.kind == "linear" and last.out_features >= ROWS_OUT_FROM * lv
    if wide and last.out_features < ROWS_OUT_TILES_FROM * lv:
        tiles = _program(steps, weights, in_features, dtype, None)
        few = _program(steps, weights, in_features, dtype, last)
        return PreparedSteps(*tiles, few=(few[0], few[1], few[7]))
    return PreparedSteps(*_program(steps, weights, in_features, dtype, last if wide else None))


def _last_product(steps):
    """The last step that runs, not counting the element-wise activations after it (`ROW_ACTIVATIONS`: they run
    on its rows when it is a `LINEAR_OUT`), or None."""
    kept = [s for s in steps if OPS.get(s.kind, 0) is not None]
    while kept and kept[-1].kind == "activation" and kept[-1].name in ROW_ACTIVATIONS:
        kept.pop()
    return kept[-1] if kept else None


def _program(steps, weights, in_features, dtype, rows_out):
    """(prog, wts, width, in_features, out_features, dtype, row_work, out_width) of `prepare_steps`;
    ``rows_out``: the step (`_last_product`, a linear layer) to run as `LINEAR_OUT`, or None."""
    parts: list[np.ndarray] = []
    size = 0

    def put(a) -> int:
        nonlocal size
        a = np.ascontiguousarray(a, dtype=dtype).ravel()
        parts.append(a)
        size += a.size
        return size - a.size

    prog = []
    width = widest = in_features
    for s in steps:
        if s.kind not in OPS:
            raise ValueError(f"step kind {s.kind!r} is not a per-vector step the kernels run")
        if s is rows_out:
            row, width = _linear_out_op(s, weights, width, put, lanes(dtype))
            prog.append(row)
        elif OPS[s.kind] is not None:
            row, width = OPS[s.kind](s, weights, width, put)
            prog.append(row)
            widest = max(widest, width)
    wts = np.concatenate(parts) if parts else np.zeros(1, dtype)
    prog_a = np.array(prog, dtype=np.int64).reshape(len(prog), 6)
    linear = np.isin(prog_a[:, 0], (LINEAR, LINEAR_OUT))
    row_work = int((prog_a[:, 1] * prog_a[:, 2])[linear].sum() + ELEMENT_WORK * prog_a[~linear, 2].sum())
    out_width = int(prog_a[prog_a[:, 0] == LINEAR_OUT, 5].sum())
    return prog_a, wts, -(-widest // MR) * MR, in_features, width, dtype, row_work, out_width


def one_thread_steps(prepared: PreparedSteps, n: int) -> bool:
    """True when `run_steps` runs ``n`` rows on the calling thread alone whatever its ``threads`` (`SPLIT_ROWS_WORK`)."""
    return n * prepared.row_work < SPLIT_ROWS_WORK


def run_steps(prepared: PreparedSteps, src: np.ndarray, src_idx: np.ndarray, dst: np.ndarray, dst_idx: np.ndarray,
              threads: int) -> None:  # fmt: skip
    """``dst[dst_idx[r]] = steps(src[src_idx[r]])`` for every r, on up to ``threads`` threads.

    ``src`` (rows, in_features) and ``dst`` (rows, out_features) C-contiguous
    in the prepared dtype; indexes int64, in range (checked by the caller).
    """
    threads = numba.get_num_threads() if threads is None else int(threads)
    n = src_idx.shape[0]
    if n == 0:
        return
    lv = lanes(prepared.dtype)
    n_tiles = -(-n // (NV * lv))
    prog, wts, out_width = prepared.prog, prepared.wts, prepared.out_width
    if prepared.few is not None and n < NV * lv:
        prog, wts, out_width = prepared.few
    chunks = 1
    work = n * prepared.row_work
    if out_width and n_tiles < threads and work >= SPLIT_ROWS_WORK:
        chunks = min(-(-threads // n_tiles), -(-out_width // (NV * lv)))  # chunks of whole column groups
    workers = 1 if one_thread_steps(prepared, n) else max(1, min(threads, n_tiles * chunks))
    args = (src, src_idx, dst, dst_idx, prog, wts, prepared.width, chunks, np.zeros(1, np.int64))
    parallel(workers, rows_worker, args)
