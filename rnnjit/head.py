"""The head: a chain of linear layers and activations applied to each selected vector."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rnnjit.reference import sigmoid
from rnnjit.spec import HeadStep


def _softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(v: np.ndarray) -> np.ndarray:
    s = v - v.max(axis=-1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


ACTIVATION_FUNCS = {
    "sigmoid": sigmoid,
    "softmax": _softmax,
    "log_softmax": _log_softmax,
    "tanh": np.tanh,
    "relu": lambda v: np.maximum(v, 0.0),
    "identity": lambda v: v,
}


def linear_weight(weights: Mapping[str, np.ndarray], step: HeadStep) -> np.ndarray:
    """(out, in) weight of a linear step; a Conv1d weight (out, in, 1) is squeezed."""
    w = weights[f"{step.name}.weight"]
    return w.reshape(w.shape[0], w.shape[1])


def apply_head(head: Sequence[HeadStep], weights: Mapping[str, np.ndarray], y: np.ndarray) -> np.ndarray:
    """Apply ``head`` along the last axis of ``y`` (any leading shape), keeping y's dtype."""
    for step in head:
        if step.kind == "linear":
            y = y @ linear_weight(weights, step).T
            if step.bias:
                y = y + weights[f"{step.name}.bias"]
        else:
            y = ACTIVATION_FUNCS[step.name](y)
    return y


def head_output_size(head: Sequence[HeadStep], input_size: int) -> int:
    size = input_size
    for step in head:
        if step.kind == "linear":
            size = step.out_features
    return size
