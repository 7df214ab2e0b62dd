"""Scores as text: CSV and JSON lines encodings of an output batch.

CSV writes a vector score as ``score_0..score_{O-1}`` and list columns as JSON
text; JSON lines keeps lists as arrays. float32 values are printed with their
shortest repr (0.1, not 0.10000000149); NaN/inf become null.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa


def _float32_to_float64(arr: pa.Array) -> pa.Array:
    """float32 -> float64 holding the shortest decimal repr (so text shows 0.1, not 0.10000000149)."""
    vals = arr.to_numpy(zero_copy_only=False)
    vals = np.asarray(vals, dtype=np.float32).astype(str).astype(np.float64)
    return pa.array(vals, pa.float64(), mask=np.asarray(arr.is_null()) if arr.null_count else None)


def _json_lists(arr: pa.Array) -> pa.Array:
    """A list column as JSON text per row (null stays null)."""
    out = []
    for v in arr.to_pylist():
        out.append(None if v is None else json.dumps(_round32(v), allow_nan=False))
    return pa.array(out, pa.string())


def _round32(v):
    if isinstance(v, list):
        return [_round32(e) for e in v]
    if isinstance(v, float):
        return float(np.format_float_positional(np.float32(v), unique=True, trim="-")) if np.isfinite(v) else None
    return v


def csv_table(batch: pa.RecordBatch) -> pa.Table:
    """Flatten for CSV: a vector score becomes score_0..score_{O-1}; lists become JSON text."""
    arrays, names = [], []
    for name, col in zip(batch.schema.names, batch.columns):
        t = col.type
        if name == "score" and pa.types.is_fixed_size_list(t):
            O = t.list_size
            valid = ~np.asarray(col.is_null()) if col.null_count else None
            vals = np.asarray(col.values.slice(col.offset * O, len(col) * O).to_numpy(zero_copy_only=False)).reshape(-1, O)
            for j in range(O):
                a = pa.array(vals[:, j], pa.float32(), mask=None if valid is None else ~valid)
                arrays.append(_float32_to_float64(a))
                names.append(f"score_{j}")
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_struct(t):
            arrays.append(_json_lists(col))
            names.append(name)
        elif pa.types.is_float32(t):
            arrays.append(_float32_to_float64(col))
            names.append(name)
        else:
            arrays.append(col)
            names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def csv_header_names(schema: pa.Schema) -> list[str]:
    names = []
    for f in schema:
        if f.name == "score" and pa.types.is_fixed_size_list(f.type):
            names += [f"score_{j}" for j in range(f.type.list_size)]
        else:
            names.append(f.name)
    return names


def jsonl_rows(batch: pa.RecordBatch) -> list[dict]:
    """Rows as dicts for JSON lines; float32 values printed with their shortest repr."""
    cols = {}
    for name, col in zip(batch.schema.names, batch.columns):
        t = col.type
        if pa.types.is_float32(t):
            cols[name] = [None if v is None or not np.isfinite(v) else v for v in _float32_to_float64(col).to_pylist()]
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            cols[name] = [None if v is None else _round32(v) for v in col.to_pylist()]
        elif pa.types.is_floating(t):
            cols[name] = [None if v is None or not np.isfinite(v) else v for v in col.to_pylist()]
        else:
            cols[name] = [_jsonable(v) for v in col.to_pylist()]
    n = batch.num_rows
    return [{k: v[i] for k, v in cols.items()} for i in range(n)]


def _jsonable(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, (list, tuple)):
        return [_jsonable(e) for e in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(e) for k, e in v.items()}
    return str(v)
