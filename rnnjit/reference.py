"""The exact numpy reference engine: PyTorch's recurrent semantics, step by step.

Slow and obviously correct. It is the oracle for the compiled kernels and the
fallback where numba cannot be imported (``engine="numpy"``). It needs numpy
only; the logistic function and pooling over time are `rnnjit.steps`', shared
with the chain's other steps.

Engine contract (shared with `rnnjit.kernels`):

``prepare(spec, weights, precision=None) -> prepared`` once per model and
precision (None: the weights' dtype; ``"bf16"``: see `bf16_round`), then
``run(prepared, x, lengths, h0, c0, select, threads, table=None) -> (y, hn, cn)`` where

- ``x``: (B, T, I) C-contiguous, the weights' dtype; or, with ``table`` (an
  embedding's (V, I) weight), (B, T) integer token ids, each valid step's id
  in ``0..V-1`` (checked by the caller; ids past a sequence's length are not
  read); ``lengths``: int64 (B,) with ``1 <= lengths[b] <= T``; ``h0``:
  (L*D, B, H_out) or None (zeros); ``c0``: (L*D, B, H) or None (zeros, LSTM only).
- ``select == "all"``: y is (B, T, D*H_out), zero past each length;
  ``"last"``: y is (B, D*H_out), the per-step output at ``lengths[b]-1``;
  ``"final"``: y is (B, D*H_out), the last layer's final h, directions
  concatenated; ``"sum"``, ``"mean"``, ``"max"``: y is (B, D*H_out), the
  per-step outputs pooled over each sequence's valid steps (`pool_steps`).
- hn: (L*D, B, H_out); cn: (L*D, B, H) for LSTM, else None.

and for a run of per-vector steps (kinds with ``per_vector`` in `rnnjit.kinds`:
linear, norms, activations, dropout): ``prepare_steps(steps, weights,
in_features, dtype) -> prepared`` once, then ``run_steps(prepared, src,
src_idx, dst, dst_idx, threads)``, which sets ``dst[dst_idx[r]]`` to the
steps applied to ``src[src_idx[r]]`` (2-d row arrays, int64 indexes): only
the rows a model needs (valid steps, or one per sequence) are computed, read
and written where they live.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from rnnjit.kinds import KINDS
from rnnjit.spec import RNNSpec
from rnnjit.steps import POOLS, matmul_rows, pool_steps, sigmoid


def prepare_steps(steps, weights: Mapping[str, np.ndarray], in_features: int, dtype):
    """A run of per-vector steps for `run_steps`: the steps and the weights, as they are."""
    return tuple(steps), weights


def run_steps(prepared, src: np.ndarray, src_idx: np.ndarray, dst: np.ndarray, dst_idx: np.ndarray, threads=None):
    """``dst[dst_idx[r]] = steps(src[src_idx[r]])``, each step its kind's numpy function (the oracle of the kernels')."""
    steps, weights = prepared
    if src_idx.size:
        y = src[src_idx]
        for s in steps:
            y = KINDS[s.kind].apply(s, weights, y, None)
        dst[dst_idx] = y


PRECISIONS = ("float32", "float64", "bf16", "int8")
"""What `prepare` takes as ``precision`` (the numba engine's table: `rnnjit.kernels.precision`)."""


def bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 -> the bfloat16 nearest to each value (ties to even), as uint32 holding its bits in the low half.

    The rounding of the numba engine's bf16 operands too (`rnnjit.kernels.pack.to_operand`, and per step
    `rnnjit.kernels.layer.pack_operand`)."""
    u = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint32)


def bf16_round(a: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (ties to even), still as float32."""
    return (bf16_bits(a) << 16).view(np.float32).reshape(np.shape(a))


def _same(a):
    return a


def int8_round(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """Symmetric int8 fake quantization along ``axis``: ``floor(v * inv + 0.5) / inv``, ``inv = 127 / max|v|``.

    The numba engine's int8 inputs per sequence and step (`rnnjit.kernels.layer.pack_operand`), in the same
    float32 operations; weights per row use `int8_weights`."""
    a = np.asarray(a, np.float32)
    top = np.max(np.abs(a), axis=axis, keepdims=True)
    inv = np.where(top > 0, np.float32(127) / np.where(top > 0, top, 1), np.float32(0)).astype(np.float32)
    scale = np.where(inv > 0, np.float32(1) / np.where(inv > 0, inv, 1), np.float32(0)).astype(np.float32)
    return (np.floor(a * inv + np.float32(0.5)) * scale).astype(np.float32)


def int8_weights(w: np.ndarray) -> np.ndarray:
    """Each row rounded to ``floor(w / s + 0.5) * s``, ``s = max|row| / 127`` (`rnnjit.kernels.pack.int8_rows`)."""
    w = np.asarray(w, np.float32)
    top = np.max(np.abs(w), axis=1, keepdims=True) if w.shape[1] else np.zeros((w.shape[0], 1), np.float32)
    sc = np.where(top > 0, top / np.float32(127), np.float32(1)).astype(np.float32)
    return (np.clip(np.floor(w / sc + np.float32(0.5)), -127, 127) * sc).astype(np.float32)


def prepare(spec: RNNSpec, weights: Mapping[str, np.ndarray], precision: str | None = None):
    """``precision="bf16"`` emulates the numba engine's bf16 products: every weight and bias, and each step's
    input and state, rounded to bfloat16 before a float32 product; ``"int8"`` its int8 products: weight
    matrices per row and each step's input and state per sequence rounded to int8 levels (`int8_weights`,
    `int8_round`), biases exact (slow; the oracles for the kernels)."""
    if precision not in (None, *PRECISIONS):
        raise ValueError(f"precision {precision!r} is not known; expected one of {', '.join(PRECISIONS)}")
    if precision == "int8":  # weight matrices per row (biases stay float), inputs and state per sequence and step
        mats = {k: int8_weights(v) for k, v in weights.items() if k.startswith(spec.prefix) and np.ndim(v) == 2}
        return spec, _per_direction(spec, {**weights, **mats}), int8_round
    if precision != "bf16":
        return spec, _per_direction(spec, weights), _same
    rounded = {k: bf16_round(np.asarray(v, np.float32)) if k.startswith(spec.prefix) else v for k, v in weights.items()}
    return spec, _per_direction(spec, rounded), bf16_round


def _per_direction(spec: RNNSpec, weights: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Per layer-direction suffix, its weights by role, the matrices transposed once for `matmul_rows`."""
    out = {}
    for _, _, sfx in spec.suffixes():
        w = spec.direction_weights(weights, sfx)
        for role in ("ih", "hh", "hr"):
            if role in w:
                w[role] = np.ascontiguousarray(w[role].T)
        out[sfx] = w
    return out


def _step(spec: RNNSpec, w: dict, x_t, h, c, rnd=_same):
    """One time step for the whole batch (``w``'s matrices transposed, `_per_direction`); ``rnd`` rounds each
    product's input (`prepare`). Returns (h', c')."""
    gi = matmul_rows(rnd(x_t), w["ih"])
    gh = matmul_rows(rnd(h), w["hh"])
    if "b_ih" in w:
        gi = gi + w["b_ih"]
        gh = gh + w["b_hh"]
    H = spec.hidden_size
    if spec.cell == "lstm":
        g = gi + gh
        i = sigmoid(g[:, 0:H])
        f = sigmoid(g[:, H : 2 * H])
        cand = np.tanh(g[:, 2 * H : 3 * H])
        o = sigmoid(g[:, 3 * H : 4 * H])
        c_new = f * c + i * cand
        h_new = o * np.tanh(c_new)
        if "hr" in w:
            h_new = matmul_rows(rnd(h_new), w["hr"])
        return h_new, c_new
    if spec.cell == "gru":
        r = sigmoid(gi[:, 0:H] + gh[:, 0:H])
        z = sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
        n = np.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
        return (1.0 - z) * n + z * h, None
    pre = gi + gh
    if spec.cell == "rnn_tanh":
        return np.tanh(pre), None
    return np.maximum(pre, 0.0), None


def run(prepared, x, lengths, h0=None, c0=None, select="all", threads=None, table=None):
    """Run the recurrent stack; see the module docstring for the contract."""
    spec, per_direction, rnd = prepared
    lengths = np.asarray(lengths, dtype=np.int64)
    if table is not None:  # ids past a sequence's length may be anything: read row 0 there
        ids = np.asarray(x)
        x = table[np.where(np.arange(ids.shape[1])[None, :] < lengths[:, None], ids, 0)]
    dtype = x.dtype
    B, T, _ = x.shape
    D = spec.num_directions
    h_shape, c_shape = spec.state_shapes(B)
    hn = np.zeros(h_shape, dtype)
    cn = np.zeros(c_shape, dtype) if c_shape else None
    layer_in = x
    for layer in range(spec.num_layers):
        out = np.zeros((B, T, D * spec.h_out), dtype)
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            w = per_direction[sfx]
            k = layer * D + d
            h = np.zeros((B, spec.h_out), dtype) if h0 is None else h0[k].astype(dtype, copy=True)
            c = None
            if spec.has_cell_state:
                c = np.zeros((B, spec.hidden_size), dtype) if c0 is None else c0[k].astype(dtype, copy=True)
            steps = range(T - 1, -1, -1) if d else range(T)
            for t in steps:
                active = (t < lengths)[:, None]
                h_new, c_new = _step(spec, w, layer_in[:, t, :], h, c, rnd)
                h = np.where(active, h_new, h)
                if c is not None:
                    c = np.where(active, c_new, c)
                out[:, t, d * spec.h_out : (d + 1) * spec.h_out] = np.where(active, h, 0.0)
            hn[k] = h
            if c is not None:
                cn[k] = c
        layer_in = out
    if select == "all":
        y = layer_in
    elif select == "final":
        last = spec.num_layers - 1
        y = np.concatenate([hn[last * D + d] for d in range(D)], axis=1)
    elif select in POOLS:
        y = pool_steps(select, layer_in, lengths)
    else:
        raise ValueError(f"select must be 'all', 'final' or one of {', '.join(POOLS)}, got {select!r}")
    return np.ascontiguousarray(y, dtype=dtype), hn, cn
