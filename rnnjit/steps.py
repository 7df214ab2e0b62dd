"""The chain's non-recurrent steps in numpy, with PyTorch's eval-mode semantics.

Each function maps values along the last axis of an array of any leading
shape (a per-step (B, T, F) or a per-sequence (B, F) tensor) and keeps its
dtype; `pool_steps` reduces over time (engines also pool in their output
pass). The step-kind table (`rnnjit.kinds`) names which function applies
which kind. Nothing here imports another rnnjit module but `rnnjit.errors`
(numba only lazily, for erf): the reference engine and the table both stand on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from rnnjit.errors import InputError

_SQRT1_2 = 1.0 / math.sqrt(2.0)
POOLS = ("last", "mean", "max", "sum")


def matmul_rows(x: np.ndarray, w_t: np.ndarray) -> np.ndarray:
    """``x @ w_t`` for ``x`` (..., K) and ``w_t`` (K, N), each output row from its own input row alone.

    A row's numbers must not depend on the rows batched with it, their count
    or the thread count (README "Same bits for a row"). BLAS does not promise
    that: gemm's blocking and its small-matrix and gemv paths depend on the
    row count, and even fixed-size row blocks gave a row other bits at
    another position in its block (OpenBLAS Haswell kernels, measured), while
    a per-row gemv is split across threads for large weights. numpy's own
    einsum loop (``optimize=False`` never calls BLAS; numpy runs it in one
    thread) accumulates each output over k in an order fixed by K alone.
    Cost: bench/REPORT.md "Same bits for a row".
    """
    return np.einsum("...k,kn->...n", x, w_t, optimize=False)


def sigmoid(v: np.ndarray) -> np.ndarray:
    """Logistic function without overflow: 1/(1+exp(-v)) == (1+tanh(v/2))/2."""
    return 0.5 * (1.0 + np.tanh(0.5 * v))


def pool_steps(method: str, y: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Reduce (B, T, F) over each sequence's first ``lengths[b]`` steps (padding never counted)."""
    B, T = y.shape[0], y.shape[1]
    if method == "last":
        return y[np.arange(B), lengths - 1] if T else np.zeros((B, y.shape[2]), y.dtype)
    valid = (np.arange(T)[None, :] < lengths[:, None])[:, :, None]
    if method == "max":
        return np.where(valid, y, -np.inf).max(axis=1, initial=-np.inf).astype(y.dtype)
    # summed step by step from +0: numpy's pairwise sum groups the steps by the batch's longest
    # sequence (one output feature) and padding would then change a row's bits
    total = np.zeros((B, y.shape[2]), y.dtype)
    for t in range(T):
        total += np.where(valid[:, t], y[:, t], 0)
    if method == "sum":
        return total.astype(y.dtype)
    if method == "mean":
        return (total / lengths[:, None].astype(y.dtype)).astype(y.dtype)
    raise ValueError(f"pooling {method!r} is not known")


_erf_ufunc = None


def _erf(v: np.ndarray) -> np.ndarray:
    """libm's erf elementwise: numba's vectorized math.erf when numba loads, else math.erf per element.

    numpy has no erf and scipy is not a dependency; per element in Python
    costs about 0.1 s per million values, a per-step GELU on a large batch
    would notice, so the compiled ufunc is used where it can be.
    """
    global _erf_ufunc
    if _erf_ufunc is None:
        try:
            import numba

            _erf_ufunc = numba.vectorize(["float32(float32)", "float64(float64)"], cache=False)(
                lambda a: math.erf(a)
            )
        except Exception:  # noqa: BLE001 - numba missing or broken: the exact slow path
            _erf_ufunc = np.frompyfunc(math.erf, 1, 1)
    return np.asarray(_erf_ufunc(v), dtype=v.dtype)


def _softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(v: np.ndarray) -> np.ndarray:
    s = v - v.max(axis=-1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def _gelu(v: np.ndarray) -> np.ndarray:
    # nn.GELU() default (approximate="none"): the exact erf form
    return (0.5 * v * (1.0 + _erf(v * v.dtype.type(_SQRT1_2)))).astype(v.dtype, copy=False)


def _elu(v: np.ndarray) -> np.ndarray:
    # nn.ELU(alpha=1.0); expm1 on the clipped value so large inputs do not overflow
    return np.where(v > 0, v, np.expm1(np.minimum(v, 0))).astype(v.dtype, copy=False)


def _leaky_relu(v: np.ndarray) -> np.ndarray:
    # nn.LeakyReLU(negative_slope=0.01)
    return np.where(v >= 0, v, v * v.dtype.type(0.01))


ACTIVATION_FUNCS = {
    "sigmoid": sigmoid,
    "softmax": _softmax,
    "log_softmax": _log_softmax,
    "tanh": np.tanh,
    "relu": lambda v: np.maximum(v, 0.0).astype(v.dtype, copy=False),
    "identity": lambda v: v,
    "gelu": _gelu,
    "elu": _elu,
    "leaky_relu": _leaky_relu,
}


def linear_weight(weights: Mapping[str, np.ndarray], step) -> np.ndarray:
    """(out, in) weight of a linear step; a Conv1d weight (out, in, 1) is squeezed."""
    w = weights[f"{step.prefix}weight"]
    return w.reshape(w.shape[0], w.shape[1])


def linear(step, weights, y: np.ndarray) -> np.ndarray:
    out = matmul_rows(y, np.ascontiguousarray(linear_weight(weights, step).T))
    if step.bias:
        out = out + weights[f"{step.prefix}bias"]
    return out


def layer_norm(step, weights, y: np.ndarray) -> np.ndarray:
    mean = y.mean(axis=-1, keepdims=True)
    var = np.square(y - mean).mean(axis=-1, keepdims=True)  # biased, as torch
    out = (y - mean) / np.sqrt(var + step.eps)
    if step.affine:
        out = out * weights[f"{step.prefix}weight"]
    if step.bias:
        out = out + weights[f"{step.prefix}bias"]
    return out


def batch_norm(step, weights, y: np.ndarray) -> np.ndarray:
    p = step.prefix
    out = (y - weights[f"{p}running_mean"]) / np.sqrt(weights[f"{p}running_var"] + step.eps)
    if step.affine:
        out = out * weights[f"{p}weight"] + weights[f"{p}bias"]
    return out


def l2_normalize(step, weights, y: np.ndarray) -> np.ndarray:
    """``F.normalize(y, p=2, dim=-1, eps=step.eps)``: ``y / max(||y||_2, eps)``."""
    norm = np.sqrt(np.square(y).sum(axis=-1, keepdims=True))
    return y / np.maximum(norm, y.dtype.type(step.eps))


def renorm_rows(table: np.ndarray, max_norm: float) -> np.ndarray:
    """``nn.Embedding(max_norm=...)``: each row whose 2-norm exceeds ``max_norm`` scaled to ``max_norm / (norm + 1e-7)``.

    torch renormalizes the rows a forward pass looks up, in place; a row once
    renormalized stays as it is, so renormalizing every row up front gives
    the lookups torch gives (in any order, on any call).
    """
    norm = np.sqrt(np.square(table, dtype=np.float64).sum(axis=1))
    scale = np.where(norm > max_norm, max_norm / (norm + 1e-7), 1.0)
    return np.ascontiguousarray(table * scale[:, None].astype(table.dtype), dtype=table.dtype)


SMALL_IDS = 256
"""Token id arrays up to this size have their range checked in Python, larger ones with numpy."""


def check_token_ids(step, weights: Mapping[str, np.ndarray], ids: np.ndarray, lengths: np.ndarray, row_name=None):
    """Raise `InputError` naming the first sequence whose valid steps hold an id outside ``0 <= id < num_embeddings``.

    Run before any table read: the kernels read table rows by id unchecked.
    """
    n = weights[f"{step.prefix}weight"].shape[0]
    if ids.size <= SMALL_IDS:  # a list's min and max: numpy's two reductions cost ~2 us on a sentence's ids
        flat = ids.ravel().tolist()
        if not flat or (min(flat) >= 0 and max(flat) < n):
            return
    elif ids.min() >= 0 and ids.max() < n:  # every id in range, padding included: nothing to find
        return
    valid = np.arange(ids.shape[1])[None, :] < lengths[:, None]
    bad = valid & ((ids < 0) | (ids >= n))
    if bad.any():
        b, t = (int(i) for i in np.argwhere(bad)[0])
        who = row_name(b) if row_name else f"sequence {b}"
        raise InputError(
            f"{who}: token id {int(ids[b, t])} at step {t} is out of range for embedding {step.name!r} "
            f"with {n} rows (valid ids 0..{n - 1}); map unknown tokens to an id the model knows"
        )


def embed(step, weights: Mapping[str, np.ndarray], ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Look up (B, T) token ids (checked by `check_token_ids`) in the embedding table; padding positions give zeros.

    Used when the embedding does not feed a recurrent module directly (which
    reads the table itself, inside its tiles).
    """
    valid = np.arange(ids.shape[1])[None, :] < lengths[:, None]
    out = weights[f"{step.prefix}weight"][np.where(valid, ids, 0)]
    out[~valid] = 0
    return out
