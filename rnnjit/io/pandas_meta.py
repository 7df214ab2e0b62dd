"""Keep the pandas metadata of passed-through columns, and only what stays true.

A Parquet file written by pandas carries a ``pandas`` schema entry: the index
(named columns, or a RangeIndex described by start/stop/step) and each
column's pandas dtype (nullable ``Int64``, ``string``, categories...). The
output keeps that entry restricted to the columns it holds, so
``pd.read_parquet(scores)`` gives back the user's index and dtypes. A
RangeIndex is kept only where the output has the same rows as the one input
file it describes (list layout, one output per input file); elsewhere it would
lie and is dropped (pandas then numbers the rows from 0).
"""

from __future__ import annotations

import json

import pyarrow as pa


def restrict(input_schema: pa.Schema, output_schema: pa.Schema, keep_range_index: bool) -> pa.Schema:
    """``output_schema`` with the input's pandas metadata restricted to its columns (if any)."""
    meta = input_schema.metadata or {}
    raw = meta.get(b"pandas")
    if not raw:
        return output_schema
    try:
        doc = json.loads(raw)
    except ValueError:  # not ours to repair: drop it rather than copy something unreadable
        return output_schema
    names = set(output_schema.names)
    index = []
    for ix in doc.get("index_columns") or []:
        if isinstance(ix, str):
            if ix in names:
                index.append(ix)
        elif isinstance(ix, dict) and ix.get("kind") == "range" and keep_range_index:
            index.append(ix)
    doc["index_columns"] = index
    doc["columns"] = [c for c in doc.get("columns") or [] if c.get("field_name") in names]
    return output_schema.with_metadata({**(output_schema.metadata or {}), b"pandas": json.dumps(doc).encode()})
