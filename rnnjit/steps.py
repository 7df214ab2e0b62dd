"""The chain's non-recurrent steps in numpy, with PyTorch's eval-mode semantics.

Each function maps values along the last axis of an array of any leading
shape (a per-step (B, T, F) or a per-sequence (B, F) tensor) and keeps its
dtype. Pooling over time is `rnnjit.reference.pool_steps` (engines also pool in their output pass).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from rnnjit.reference import matmul_rows, sigmoid
from rnnjit.spec import Step

_SQRT1_2 = 1.0 / math.sqrt(2.0)
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


def linear_weight(weights: Mapping[str, np.ndarray], step: Step) -> np.ndarray:
    """(out, in) weight of a linear step; a Conv1d weight (out, in, 1) is squeezed."""
    w = weights[f"{step.prefix}weight"]
    return w.reshape(w.shape[0], w.shape[1])


def _layer_norm(step: Step, weights, y: np.ndarray) -> np.ndarray:
    mean = y.mean(axis=-1, keepdims=True)
    var = np.square(y - mean).mean(axis=-1, keepdims=True)  # biased, as torch
    out = (y - mean) / np.sqrt(var + step.eps)
    if step.affine:
        out = out * weights[f"{step.prefix}weight"]
    if step.bias:
        out = out + weights[f"{step.prefix}bias"]
    return out


def _batch_norm(step: Step, weights, y: np.ndarray) -> np.ndarray:
    p = step.prefix
    out = (y - weights[f"{p}running_mean"]) / np.sqrt(weights[f"{p}running_var"] + step.eps)
    if step.affine:
        out = out * weights[f"{p}weight"] + weights[f"{p}bias"]
    return out


def apply_step(step: Step, weights: Mapping[str, np.ndarray], y: np.ndarray) -> np.ndarray:
    """Apply one per-vector step (linear, layernorm, batchnorm, activation, dropout) along the last axis."""
    dtype = y.dtype
    if step.kind == "linear":
        y = matmul_rows(y, np.ascontiguousarray(linear_weight(weights, step).T))
        if step.bias:
            y = y + weights[f"{step.prefix}bias"]
    elif step.kind == "layernorm":
        y = _layer_norm(step, weights, y)
    elif step.kind == "batchnorm":
        y = _batch_norm(step, weights, y)
    elif step.kind == "activation":
        y = ACTIVATION_FUNCS[step.name](y)
    elif step.kind != "dropout":  # dropout is a no-op in eval mode
        raise ValueError(f"step kind {step.kind!r} is not a per-vector step")
    return np.asarray(y, dtype=dtype)


def apply_head(head, weights: Mapping[str, np.ndarray], y: np.ndarray) -> np.ndarray:
    """Apply a sequence of per-vector steps along the last axis of ``y``."""
    for step in head:
        y = apply_step(step, weights, y)
    return y


def check_token_ids(step: Step, weights: Mapping[str, np.ndarray], ids: np.ndarray, lengths: np.ndarray, row_name=None):
    """Raise `InputError` naming the first sequence whose valid steps hold an id outside ``0 <= id < num_embeddings``.

    Run before any table read: the kernels read table rows by id unchecked.
    """
    from rnnjit.errors import InputError

    n = weights[f"{step.prefix}weight"].shape[0]
    valid = np.arange(ids.shape[1])[None, :] < lengths[:, None]
    bad = valid & ((ids < 0) | (ids >= n))
    if bad.any():
        b, t = (int(i) for i in np.argwhere(bad)[0])
        who = row_name(b) if row_name else f"sequence {b}"
        raise InputError(
            f"{who}: token id {int(ids[b, t])} at step {t} is out of range for embedding {step.name!r} "
            f"with {n} rows (valid ids 0..{n - 1}); map unknown tokens to an id the model knows"
        )


def embed(step: Step, weights: Mapping[str, np.ndarray], ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Look up (B, T) token ids (checked by `check_token_ids`) in the embedding table; padding positions give zeros.

    Used when the embedding does not feed a recurrent module directly (which
    reads the table itself, inside its tiles).
    """
    valid = np.arange(ids.shape[1])[None, :] < lengths[:, None]
    out = weights[f"{step.prefix}weight"][np.where(valid, ids, 0)]
    out[~valid] = 0
    return out
