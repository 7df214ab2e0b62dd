"""The long layout: one row per time step, grouped into list-layout sequences.

Steps are grouped by the id columns and ordered by the order column; a
sequence that continues into the next batch is carried over, so the input
must be sorted by (id, order), which is checked as it streams. Both runners
(local and Spark) group with `group_long`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rnnjit.errors import InputError
from rnnjit.io.arrow import as_array, is_numeric_type, sequences_from_steps


@dataclass
class LongLayout:
    """Column roles for one-row-per-step input."""

    id_columns: tuple[str, ...]
    order_column: str
    feature_columns: tuple[str, ...]
    h0_column: str | None = None
    c0_column: str | None = None

    @property
    def columns(self) -> list[str]:
        cols = [*self.id_columns, self.order_column, *self.feature_columns]
        cols += [c for c in (self.h0_column, self.c0_column) if c]
        return cols


def resolve_long_layout(schema: pa.Schema, model, id_columns, order_column, feature_columns, options) -> LongLayout:
    """Check the long-layout columns against ``schema``; default the feature columns.

    Default features: the bundle's ``feature_names`` when all are present, else every
    numeric column other than the id and order columns.
    """
    names = list(schema.names)
    have = ", ".join(names)
    if not id_columns:
        raise InputError("--layout long needs --id-column (the sequence key); e.g. --id-column customer_id")
    if not order_column:
        raise InputError("--layout long needs --order-column (the time step within a sequence); e.g. --order-column t")
    for c in [*id_columns, order_column, *(feature_columns or ())]:
        if c not in names:
            raise InputError(f"column {c!r} not found; the input has columns {have}")
    I = model.input_size  # values per step: 1 for a token-id model
    if feature_columns:
        feats = tuple(feature_columns)
    else:
        fn = model.feature_names or []
        if fn and all(f in names for f in fn):
            feats = tuple(fn)
        else:
            skip = {*id_columns, order_column, options.h0_column, options.c0_column}
            feats = tuple(n for n in names if n not in skip and is_numeric_type(schema.field(n).type))
    for c in feats:
        if not is_numeric_type(schema.field(c).type):
            raise InputError(
                f"feature column {c!r} has type {schema.field(c).type}; expected a number; "
                "pick numeric columns with --feature-columns"
            )
    if len(feats) != I:
        raise InputError(
            f"found {len(feats)} feature columns ({', '.join(feats) or 'none'}) but the model expects "
            f"input_size={I}; list them in order with --feature-columns a,b,c"
        )
    return LongLayout(
        id_columns=tuple(id_columns),
        order_column=order_column,
        feature_columns=feats,
        h0_column=options.h0_column if options.h0_column in names else None,
        c0_column=options.c0_column if options.c0_column in names else None,
    )


def _key_compare(table: pa.Table, cols: Sequence[str]):
    """(changed, decreased) between consecutive rows, lexicographic over ``cols``."""
    n = table.num_rows
    changed = np.zeros(max(n - 1, 0), dtype=bool)
    decreased = np.zeros(max(n - 1, 0), dtype=bool)
    equal_so_far = np.ones(max(n - 1, 0), dtype=bool)
    for c in cols:
        a = as_array(table.column(c))
        prev, cur = a.slice(0, n - 1), a.slice(1)
        lt = np.asarray(pc.less(cur, prev).fill_null(False))
        ne = np.asarray(pc.not_equal(cur, prev).fill_null(False))
        decreased |= equal_so_far & lt
        changed |= ne
        equal_so_far &= ~ne
    return changed, decreased


def group_long(batches: Iterator[pa.RecordBatch], layout: LongLayout, dtype) -> Iterator[tuple[pa.RecordBatch, int]]:
    """Turn sorted one-row-per-step batches into list-layout batches of whole sequences.

    Yields ``(batch, input_rows_consumed)``. The last sequence of each input batch
    is held back until the next batch shows where it ends.
    """
    carry: pa.Table | None = None
    carried_from = 0  # input row number of carry's first row
    rows_seen = 0
    key_cols = [*layout.id_columns]
    for batch in batches:
        for c in [*key_cols, layout.order_column]:
            col = batch.column(c)
            if col.null_count:
                i = int(np.flatnonzero(np.asarray(col.is_null()))[0])
                raise InputError(f"row {rows_seen + i}: column {c!r} is null; every step needs an id and an order value")
        rows_seen += batch.num_rows
        tbl = pa.Table.from_batches([batch]) if carry is None else pa.concat_tables([carry, pa.Table.from_batches([batch])])
        changed, decreased = _key_compare(tbl, key_cols)
        if decreased.any():
            i = int(np.flatnonzero(decreased)[0]) + 1
            ids = ", ".join(f"{c}={tbl.column(c)[i].as_py()!r}" for c in key_cols)
            prev = ", ".join(f"{c}={tbl.column(c)[i - 1].as_py()!r}" for c in key_cols)
            raise InputError(
                f"long-layout input is not sorted: row {carried_from + i} ({ids}) comes after ({prev}); "
                f"sort it by ({', '.join(key_cols)}, {layout.order_column}) first, e.g. "
                f"ORDER BY {', '.join(key_cols)}, {layout.order_column}"
            )
        order = as_array(tbl.column(layout.order_column))
        n = tbl.num_rows
        if n > 1:
            not_inc = np.asarray(pc.less_equal(order.slice(1), order.slice(0, n - 1)).fill_null(False)) & ~changed
            if not_inc.any():
                i = int(np.flatnonzero(not_inc)[0]) + 1
                ids = ", ".join(f"{c}={tbl.column(c)[i].as_py()!r}" for c in key_cols)
                raise InputError(
                    f"long-layout input is not sorted: row {carried_from + i} ({ids}) has "
                    f"{layout.order_column}={order[i].as_py()!r} after {order[i - 1].as_py()!r} in the same sequence; "
                    f"{layout.order_column} must increase within a sequence; sort by "
                    f"({', '.join(key_cols)}, {layout.order_column}) and drop duplicate steps"
                )
        starts = np.concatenate([[0], np.flatnonzero(changed) + 1]).astype(np.int64)
        last = int(starts[-1])
        if len(starts) > 1:
            done = tbl.slice(0, last)
            yield _to_list_batch(done, starts, layout, dtype), last
        carry = tbl.slice(last).combine_chunks()
        carried_from += last
    if carry is not None and carry.num_rows:
        yield _to_list_batch(carry, np.array([0, carry.num_rows]), layout, dtype), carry.num_rows


def _to_list_batch(tbl: pa.Table, starts: np.ndarray, layout: LongLayout, dtype) -> pa.RecordBatch:
    """Whole sequences (rows ``starts[k]:starts[k+1]``) as one list-layout batch."""
    first = pa.array(starts[:-1], pa.int64())
    arrays, names = [], []
    for c in layout.id_columns:
        arrays.append(as_array(tbl.column(c)).take(first))
        names.append(c)
    arrays.append(sequences_from_steps(tbl, layout.feature_columns, starts, dtype))
    names.append("features")
    for c in (layout.h0_column, layout.c0_column):
        if c:  # a state is per sequence: take it from the sequence's first step
            arrays.append(as_array(tbl.column(c)).take(first))
            names.append(c)
    return pa.RecordBatch.from_arrays(arrays, names=names)
