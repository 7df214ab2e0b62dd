"""Checks that a bundle still computes what it computed at convert time."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from rnnjit.engines import default_engine
from rnnjit.errors import BundleError
from rnnjit.model import Model


def tolerance(dtype: np.dtype, scale: float) -> float:
    """Absolute tolerance for engine-vs-reference differences at output magnitude ``scale``."""
    base = 1e-5 if np.dtype(dtype) == np.float32 else 1e-10
    return base * max(1.0, scale)


def verify_reference(model: Model, engine: str | None = None) -> dict[str, Any]:
    """Recompute the reference input stored at convert time and compare.

    Returns a dict with ``ok``, ``max_abs_error``, ``tolerance``,
    ``n_sequences`` and ``engine``. Raises `BundleError` when the bundle has no
    reference (converted with ``reference=False``).
    """
    ref = model.config.get("reference")
    if not ref:
        raise BundleError(
            "this bundle stores no reference input (converted with reference=False); "
            "re-convert it, or use `rnnjit verify --against model.pth`"
        )
    engine = engine or default_engine()
    x = np.asarray(ref["x"], dtype=np.int64 if model.takes_tokens else model.dtype)
    lengths = np.asarray(ref["lengths"], dtype=np.int64)
    expected = np.asarray(ref["y"], dtype=np.float64)
    got = model.predict(x, lengths=lengths, output=ref.get("output", model.output), engine=engine)
    if got.shape != expected.shape:
        raise BundleError(f"reference output has shape {expected.shape} but the model gives {got.shape}")
    err = float(np.max(np.abs(got - expected))) if got.size else 0.0
    tol = tolerance(model.dtype, float(np.max(np.abs(expected))) if expected.size else 1.0)
    return {"ok": err <= tol, "max_abs_error": err, "tolerance": tol, "n_sequences": int(len(lengths)), "engine": engine}


def compare_weights(model: Model, path: str | os.PathLike) -> dict[str, Any]:
    """Re-read a weight file (torch-free) and compare every weight the bundle holds.

    Returns ``ok``, ``max_abs_error``, ``n_keys``, ``missing`` (keys absent from
    the file) and ``mismatched`` (keys whose shape differs) and ``different``
    (keys whose values differ), and ``unused``: tensors of the file that no
    step of the bundle's chain uses and that were not dropped on purpose
    (``--ignore``) — the model the file describes is then not the one the
    bundle scores.
    """
    from rnnjit.formats import read_state_dict
    from rnnjit.keys import ignored_keys, unused_keys

    sd, _ = read_state_dict(path)
    unused, _ = unused_keys(sd, model.chain, ignored_keys(sd, model.config.get("ignored") or []))
    missing, mismatched, differ, err = [], [], [], 0.0
    for key, w in model.weights.items():
        if key not in sd:
            missing.append(key)
            continue
        v = np.asarray(sd[key])
        if v.shape != w.shape:
            mismatched.append(key)
            continue
        # convert stored sd[key] cast to the bundle dtype, so equality is exact
        if not np.array_equal(v.astype(model.config.get("dtype", w.dtype)).astype(w.dtype), w):
            differ.append(key)
        if v.size:
            err = max(err, float(np.max(np.abs(v.astype(np.float64) - w.astype(np.float64)))))
    ok = not (missing or mismatched or differ or unused)
    return {
        "unused": unused,
        "ok": ok,
        "max_abs_error": err,
        "n_keys": len(model.weights),
        "missing": missing,
        "mismatched": mismatched,
        "different": differ,
    }
