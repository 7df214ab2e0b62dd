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


CLASSIFIER_TAILS = {"sigmoid": "0.5 threshold", "softmax": "argmax", "log_softmax": "argmax"}
"""A chain ending in one of these activations is a classifier: `precision_cost` counts rows whose class changes."""


def classifier_rule(model: Model) -> str | None:
    """How the model's last step picks a class ("argmax" or "0.5 threshold"), or None for other heads."""
    last = model.chain[-1]
    return CLASSIFIER_TAILS.get(last.name) if last.kind == "activation" else None


def _classes(y: np.ndarray, rule: str) -> np.ndarray:
    """Per row: the class index (argmax) or every output's side of 0.5 (threshold), as rows of integers."""
    y = y.reshape(y.shape[0], -1)
    return np.argmax(y, axis=1)[:, None] if rule == "argmax" else (y > 0.5).astype(np.int8)


def compare_outputs(full: np.ndarray, reduced: np.ndarray, rule: str | None) -> dict[str, Any]:
    """Max and mean abs difference of two (rows, ...) score arrays, and with a classifier ``rule`` the fraction
    of rows whose class changes (for per-step scores a row is a step)."""
    full = np.asarray(full, np.float64)
    reduced = np.asarray(reduced, np.float64)
    diff = np.abs(full - reduced)
    out = {
        "n_rows": int(full.shape[0]),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "rule": rule,
        "changed": None,
    }
    if rule is not None and full.shape[0]:
        out["changed"] = float(np.mean(np.any(_classes(full, rule) != _classes(reduced, rule), axis=1)))
    return out


def precision_cost(model: Model, precision: str, x, lengths, engine: str | None = None) -> dict[str, Any]:
    """Score ``x`` at the model's precision and at ``precision``; `compare_outputs` of the two.

    Per-step scores ("all" without pooling) are compared on each sequence's valid steps.
    """
    full = model.predict(x, lengths=lengths, engine=engine)
    reduced = model.with_precision(precision).predict(x, lengths=lengths, engine=engine)
    if model.returns_steps():
        valid = np.arange(full.shape[1])[None, :] < np.asarray(lengths)[:, None]
        full, reduced = full[valid], reduced[valid]
    return compare_outputs(full, reduced, classifier_rule(model))


def reference_input(model: Model):
    """The reference input stored at convert time: ``(x, lengths)``, or None when the bundle has none."""
    ref = model.config.get("reference")
    if not ref:
        return None
    x = np.asarray(ref["x"], dtype=np.int64 if model.takes_tokens else model.dtype)
    return x, np.asarray(ref["lengths"], dtype=np.int64)


def _score_rows(column, width: int) -> np.ndarray:
    """A ``score`` column (nulls dropped) as (rows, width): a row per sequence, or per step for per-step scores."""
    import pyarrow as pa

    values = column.drop_null()
    while not (pa.types.is_floating(values.type)):
        values = values.flatten()
    return values.to_numpy(zero_copy_only=False).reshape(-1, width)


def sample_cost(model: Model, path, precision: str, rows: int, options=None) -> dict[str, Any]:
    """`compare_outputs` on the first ``rows`` rows of a list-layout Parquet file, scored by `score_batch`
    (``options``: a `rnnjit.scoring.ScoreOptions`, e.g. the sequence column) at float32 and at ``precision``.
    Rows that do not decode (null, NaN) are skipped in both."""
    import dataclasses

    import pyarrow.parquet as pq

    from rnnjit.scoring import ScoreOptions, score_batch

    base = dataclasses.replace(options or ScoreOptions(), pass_through=(), emit_state=False, on_invalid="skip")
    batch = next(pq.ParquetFile(path).iter_batches(batch_size=rows, columns=[base.features_column]), None)
    if batch is None:
        raise BundleError(f"{os.fspath(path)} has no rows; give a Parquet file with sequences to compare on")
    full = score_batch(model, batch, dataclasses.replace(base, precision="float32")).column("score")
    reduced = score_batch(model, batch, dataclasses.replace(base, precision=precision)).column("score")
    w = model.output_dim
    return compare_outputs(_score_rows(full, w), _score_rows(reduced, w), classifier_rule(model))
