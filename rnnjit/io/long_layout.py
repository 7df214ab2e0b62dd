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

from rnnjit import memory
from rnnjit.errors import InputError
from rnnjit.io.arrow import as_array, is_numeric_type, sequences_from_steps


@dataclass
class LongLayout:
    """Column roles for one-row-per-step input.

    ``check_values``: refuse a null, NaN, inf or out-of-range feature value while
    grouping, naming the real column and the input row (``on_invalid="error"``);
    otherwise such a sequence reaches `score_batch` and is counted invalid there.
    ``note``: how the feature columns were chosen, when rnnjit chose them.
    """

    id_columns: tuple[str, ...]
    order_column: str
    feature_columns: tuple[str, ...]
    h0_column: str | None = None
    c0_column: str | None = None
    check_values: bool = False
    note: str = ""

    @property
    def columns(self) -> list[str]:
        cols = [*self.id_columns, self.order_column, *self.feature_columns]
        cols += [c for c in (self.h0_column, self.c0_column) if c]
        return list(dict.fromkeys(cols))


def resolve_long_layout(schema: pa.Schema, model, id_columns, order_column, feature_columns, options) -> LongLayout:
    """Check the long-layout columns against ``schema`` and choose the feature columns.

    Features, by name, never by position: ``feature_columns`` when given, else
    the bundle's ``feature_names`` (every one must be present; the file's column
    order never matters). Without either, a model with one input feature takes
    the only numeric column left (and says so); otherwise rnnjit stops and
    lists the candidates for ``feature_columns``.
    """
    names = list(schema.names)
    have = ", ".join(names)
    if not id_columns:
        raise InputError("layout='long' needs id_columns (the sequence key); e.g. id_columns=['customer_id']")
    if not order_column:
        raise InputError("layout='long' needs order_column (the time step within a sequence); e.g. order_column='t'")
    for c in [*id_columns, order_column, *(feature_columns or ())]:
        if c not in names:
            raise InputError(f"column {c!r} not found; the input has columns {have}")
    I = model.input_size  # values per step: 1 for a token-id model
    note = ""
    bundle_names = list(model.feature_names or [])
    if feature_columns:
        feats = tuple(feature_columns)
        # mapping other columns onto the inputs is what the flag is for; a bundle feature's own name at
        # another input's position is a wrong order, which would score silently wrong
        moved = [(c, i) for i, c in enumerate(feats) if c in bundle_names and bundle_names.index(c) != i]
        if moved:
            c, i = moved[0]
            raise InputError(
                f"feature_columns puts {c!r} at input {i}, but the bundle names it as input "
                f"{bundle_names.index(c)} (its features, in model order: {', '.join(bundle_names)}); "
                "list the columns in model order, or drop feature_columns to use the bundle's names"
            )
    elif bundle_names:
        missing = [f for f in bundle_names if f not in names]
        if missing:
            raise InputError(
                f"the bundle's feature {missing[0]!r} is not a column of the input "
                f"({len(missing)} of {len(bundle_names)} missing: {', '.join(missing)}); the input has columns "
                f"{have}; rename the column, or map columns to the model's inputs with feature_columns"
            )
        feats = tuple(bundle_names)
    else:
        skip = {*id_columns, order_column, options.h0_column, options.c0_column}
        cands = [n for n in names if n not in skip and is_numeric_type(schema.field(n).type)]
        if I == 1 and len(cands) == 1:
            feats = (cands[0],)
            note = f"feature column {cands[0]!r} (the only numeric column; the bundle names none)"
        else:
            raise InputError(
                f"the model takes {I} input feature(s) and the bundle names none, so rnnjit will not guess "
                f"which columns they are or their order; the numeric candidates are {', '.join(cands) or 'none'}; "
                f"name the {I} columns the model was trained on, in its input order, with feature_columns "
                "(in model order; the file's column order says nothing about it), or convert with feature_names="
            )
    for c in feats:
        if not is_numeric_type(schema.field(c).type):
            raise InputError(
                f"feature column {c!r} has type {schema.field(c).type}; expected a number; "
                "pick numeric columns with feature_columns"
            )
    if len(feats) != I:
        raise InputError(
            f"found {len(feats)} feature columns ({', '.join(feats) or 'none'}) but the model expects "
            f"input_size={I}; list them in order with feature_columns=['a', 'b', 'c']"
        )
    return LongLayout(
        id_columns=tuple(id_columns),
        order_column=order_column,
        feature_columns=feats,
        h0_column=options.h0_column if options.h0_column in names else None,
        c0_column=options.c0_column if options.c0_column in names else None,
        check_values=options.on_invalid == "error",
        note=note,
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


def _row_at(locate, row: int) -> str:
    file, r = locate(row) if locate else (None, row)
    return f"file {file!r} row {r}" if file else f"row {r}"


def _ids(tbl: pa.Table, cols, i: int) -> str:
    return ", ".join(f"{c}={tbl.column(c)[i].as_py()!r}" for c in cols)


def _check_values(batch: pa.RecordBatch, layout: LongLayout, dtype, first_row: int, locate) -> None:
    """Refuse the first null, NaN, inf or (for float32) out-of-range feature value, by column and row."""
    big = np.finfo(np.dtype(dtype)).max
    for c in layout.feature_columns:
        col = batch.column(c)
        if not is_numeric_type(col.type):
            continue  # sequences_from_steps names the column and its type
        bad = np.asarray(col.is_null()) if col.null_count else np.zeros(len(col), bool)
        vals = col.fill_null(0).to_numpy(zero_copy_only=False) if col.null_count else col.to_numpy(zero_copy_only=False)
        if vals.dtype.kind == "f":
            bad = bad | ~(np.abs(vals) <= big)  # NaN, inf, and float64 values float32 cannot hold
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            v = col[i].as_py()
            what = ("is null" if v is None else f"holds {v!r}" if not np.isfinite(v) else
                    f"holds {v!r}, beyond {np.dtype(dtype).name}'s range (+-{big:.3g}); scale it, or load the bundle "
                    "with dtype='float64'")
            ids = ", ".join(f"{k}={batch.column(k)[i].as_py()!r}" for k in layout.id_columns)
            raise InputError(
                f"{_row_at(locate, first_row + i)} ({ids}): column {c!r} {what}; fix or drop that step, "
                "or pass on_invalid='skip' to write a null score for its sequence"
            )


def group_long(batches: Iterator[pa.RecordBatch], layout: LongLayout, dtype,
               locate=None, memory_limit: int | str | None = None) -> Iterator[tuple[pa.RecordBatch, int]]:
    """Turn sorted one-row-per-step batches into list-layout batches of whole sequences.

    Yields ``(batch, input_rows_consumed)``. The last sequence of each input batch
    is held back until the next batch shows where it ends.

    ``locate(n) -> (file or None, row within it)`` names the n-th input row
    (0-based, over all batches) in messages; an input that is not sorted across
    two files names both files.

    Time is linear in the input: the held-back rows are kept as a list of
    slices, each new batch is compared with the last held-back row only, and
    the slices are joined once, when the sequence ends. A sequence whose held
    rows pass the memory limit (`rnnjit.memory`) is refused with one line.
    """
    carry: list[pa.Table] = []  # the unfinished sequence's rows, in input order
    carry_rows = 0
    carry_bytes = 0
    carried_from = 0  # input row number of the first held-back row
    rows_seen = 0
    key_cols = [*layout.id_columns]
    limit = memory.limit(memory_limit)
    for batch in batches:
        for c in [*key_cols, layout.order_column]:
            col = batch.column(c)
            if col.null_count:
                i = int(np.flatnonzero(np.asarray(col.is_null()))[0])
                raise InputError(
                    f"{_row_at(locate, rows_seen + i)}: column {c!r} is null; every step needs an id and an order value"
                )
        if layout.check_values:
            _check_values(batch, layout, dtype, rows_seen, locate)
        rows_seen += batch.num_rows
        new = pa.Table.from_batches([batch])
        e = 1 if carry else 0  # tbl's row 0 is the last held-back row
        tbl = pa.concat_tables([carry[-1].slice(carry[-1].num_rows - 1), new]) if e else new
        base = carried_from + carry_rows - e  # input row number of tbl's row 0
        changed, decreased = _key_compare(tbl, key_cols)
        if decreased.any():
            i = int(np.flatnonzero(decreased)[0]) + 1
            sort_hint = (f"sort it by ({', '.join(key_cols)}, {layout.order_column}) first, e.g. "
                         f"ORDER BY {', '.join(key_cols)}, {layout.order_column}")
            here, before = (locate(base + i), locate(base + i - 1)) if locate else ((None, 0),) * 2
            if here[0] and before[0] and here[0] != before[0]:
                raise InputError(
                    f"long-layout input is not sorted across files: file {here[0]!r} starts with ({_ids(tbl, key_cols, i)}) "
                    f"but file {before[0]!r}, read before it, ends with ({_ids(tbl, key_cols, i - 1)}); files are read "
                    f"in the order given (a directory's in path order): name them in order, or {sort_hint}"
                )
            raise InputError(
                f"long-layout input is not sorted: {_row_at(locate, base + i)} ({_ids(tbl, key_cols, i)}) "
                f"comes after ({_ids(tbl, key_cols, i - 1)}); {sort_hint}"
            )
        order = as_array(tbl.column(layout.order_column))
        n = tbl.num_rows
        if n > 1:
            not_inc = np.asarray(pc.less_equal(order.slice(1), order.slice(0, n - 1)).fill_null(False)) & ~changed
            if not_inc.any():
                i = int(np.flatnonzero(not_inc)[0]) + 1
                raise InputError(
                    f"long-layout input is not sorted: {_row_at(locate, base + i)} ({_ids(tbl, key_cols, i)}) has "
                    f"{layout.order_column}={order[i].as_py()!r} after {order[i - 1].as_py()!r} in the same sequence; "
                    f"{layout.order_column} must increase within a sequence; sort by "
                    f"({', '.join(key_cols)}, {layout.order_column}) and drop duplicate steps"
                )
        starts = np.concatenate([[0], np.flatnonzero(changed) + 1]).astype(np.int64)
        last = int(starts[-1])  # tbl row where the unfinished sequence starts
        if len(starts) > 1:
            done = pa.concat_tables([*carry, new.slice(0, last - e)])
            done_starts = starts + (carry_rows - e)
            done_starts[0] = 0
            yield _to_list_batch(done, done_starts, layout, dtype), done.num_rows
            carried_from += done.num_rows
            carry, carry_rows, carry_bytes = [], 0, 0
            rest = new.slice(last - e)
        else:
            rest = new
        carry.append(rest)
        carry_rows += rest.num_rows
        carry_bytes += rest.nbytes
        if carry_bytes > limit:
            raise memory.InputMemoryError(
                f"{_row_at(locate, carried_from)} ({_ids(carry[0], key_cols, 0)}): one sequence of more than "
                f"{carry_rows} steps ({memory.human(carry_bytes)}) is past the memory limit of {memory.human(limit)}; "
                f"raise it with memory_limit (or {memory.ENV}), or split the sequence"
            )
    if carry_rows:
        tail = pa.concat_tables(carry)
        yield _to_list_batch(tail, np.array([0, carry_rows]), layout, dtype), carry_rows


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
