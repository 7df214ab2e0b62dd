"""Streaming Parquet scoring: read a dataset in batches, score, write atomically.

Memory is bounded by ``batch_rows`` (and the input's Parquet row-group size),
not by the size of the input:

- the input (a file, a directory or a glob) is scanned with
  `pyarrow.dataset` in batches of at most ``batch_rows`` rows;
- in the long layout (one row per step) steps are grouped into sequences; a
  sequence that continues into the next batch is carried over, so the input
  must be sorted by (id, order), which is checked as it streams;
- each batch goes through `rnnjit.scoring.score_batch` and is appended to the
  output, written under a temporary name in the output's directory and
  renamed when complete (removed on any error or Ctrl-C).
"""

from __future__ import annotations

import glob as _glob
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from rnnjit.arrow_io import as_array, is_numeric_type, sequences_from_steps
from rnnjit.errors import InputError
from rnnjit.scoring import ScoreOptions, ScoreStats, output_schema, pass_through_columns, score_batch

FORMATS = ("parquet", "csv", "jsonl")
LAYOUTS = ("list", "long")
_EXT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


class OutputExistsError(InputError):
    """The output path exists and ``overwrite`` was not given."""


# --------------------------------------------------------------------------- input
def _read_error(path, exc) -> InputError:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InputError(
        f"cannot read Parquet input {str(path)!r}: {msg}; "
        "check that it is a complete Parquet file (not truncated, not another format)"
    )


def open_dataset(path) -> ds.Dataset:
    """A pyarrow dataset for a Parquet file, a directory of files, or a glob."""
    p = str(path)
    if any(ch in p for ch in "*?["):
        files = sorted(f for f in _glob.glob(p, recursive=True) if os.path.isfile(f))
        if not files:
            raise InputError(f"no file matches the input glob {p!r}; check the pattern (quote it in the shell)")
        source = files
    elif os.path.isdir(p):
        source = p
    elif os.path.isfile(p):
        source = p
    else:
        raise InputError(f"input {p!r} does not exist; give a Parquet file, a directory or a glob")
    try:  # used to list the files and read the first file's schema; `iter_batches` reads
        dataset = ds.dataset(source, format="parquet")
    except (pa.ArrowException, OSError) as exc:
        raise _read_error(p, exc) from exc
    if isinstance(source, str) and os.path.isdir(source) and not dataset.files:
        raise InputError(f"input directory {p!r} holds no Parquet files")
    return dataset


def count_rows(dataset: ds.Dataset) -> int | None:
    """Total rows from the Parquet footers (None when that fails)."""
    try:
        return int(dataset.count_rows())
    except (pa.ArrowException, OSError):
        return None


def _file_batches(files: Sequence[str], schema: pa.Schema, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Batches of the ``schema`` columns from each file in turn.

    Column chunks are streamed through a 1 MiB buffer (no pre-buffering), so
    memory follows ``batch_rows`` and the row-group size, not the file size. A
    file whose columns differ in type from ``schema`` (the first file's) is cast
    to it, or refused by name.
    """
    import pyarrow.parquet as pq

    for f in files:
        try:
            pf = pq.ParquetFile(f, buffer_size=1 << 20, pre_buffer=False)
            have = pf.schema_arrow
            missing = [c for c in schema.names if c not in have.names]
            if missing:
                raise InputError(
                    f"file {f!r} has no column {missing[0]!r} (it has {', '.join(have.names)}); "
                    "every file of the input must have the same columns"
                )
            target = pa.schema([schema.field(c) for c in schema.names])
            same = all(have.field(c).type == schema.field(c).type for c in schema.names)
            for batch in pf.iter_batches(batch_size=batch_rows, columns=list(schema.names), use_threads=False):
                if not batch.num_rows:
                    continue
                if not same:
                    try:
                        batch = batch.cast(target)
                    except (pa.ArrowException, ValueError) as exc:
                        bad = next(c for c in schema.names if have.field(c).type != schema.field(c).type)
                        raise InputError(
                            f"file {f!r}: column {bad!r} has type {have.field(bad).type} but the first file has "
                            f"{schema.field(bad).type}; every file of the input must have the same schema"
                        ) from exc
                yield batch
        except (pa.ArrowException, OSError) as exc:
            raise _read_error(f, exc) from exc


_DONE = object()


def iter_batches(dataset: ds.Dataset, columns: Sequence[str], batch_rows: int,
                 prefetch: bool = True) -> Iterator[pa.RecordBatch]:
    """Batches of at most ``batch_rows`` rows, in file order; read errors become `InputError`.

    With ``prefetch`` a background thread reads the next batch while the caller
    scores the current one (pyarrow releases the GIL while it decodes, and the
    numba kernels release it while they run): at most one batch waits in memory.
    """
    files = list(dataset.files)
    schema = pa.schema([dataset.schema.field(c) for c in columns])
    if not prefetch:
        yield from _file_batches(files, schema, batch_rows)
        return
    q: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def offer(item) -> bool:
        """Hand ``item`` to the consumer; False once the consumer has stopped."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for batch in _file_batches(files, schema, batch_rows):
                if not offer(batch):
                    return
            offer(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            offer(exc)

    reader = threading.Thread(target=produce, name="rnnjit-reader", daemon=True)
    reader.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        try:  # unblock a producer waiting on a full queue
            q.get_nowait()
        except queue.Empty:
            pass
        reader.join(timeout=5)


# --------------------------------------------------------------------------- long layout
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
    I = model.spec.input_size
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


# --------------------------------------------------------------------------- output
def infer_format(output, fmt: str | None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise InputError(f"output format {fmt!r} is not known; expected one of {', '.join(FORMATS)}")
        return fmt
    return _EXT_FORMATS.get(Path(str(output)).suffix.lower(), "parquet")


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


class _Sink:
    """Writes batches to ``tmp``; `commit` renames to the final path, `abort` removes tmp."""

    def __init__(self, path: Path, schema: pa.Schema, fmt: str):
        self.path = path
        self.fmt = fmt
        self.tmp = path.parent / f".{path.name}.rnnjit-tmp-{os.getpid()}"
        self.schema = schema
        self._writer = None
        self._fh = None
        if fmt == "parquet":
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(str(self.tmp), schema)
        elif fmt == "csv":
            self._csv_header = True
            self._fh = open(self.tmp, "wb")
        else:
            self._fh = open(self.tmp, "w", encoding="utf-8")

    def write(self, batch: pa.RecordBatch) -> None:
        if self.fmt == "parquet":
            if batch.schema != self.schema:
                batch = batch.cast(self.schema)
            self._writer.write_batch(batch)
        elif self.fmt == "csv":
            import pyarrow.csv as pcsv

            pcsv.write_csv(csv_table(batch), self._fh, pcsv.WriteOptions(include_header=self._csv_header))
            self._csv_header = False
        else:
            tbl = jsonl_rows(batch)
            lines = [json.dumps(r, allow_nan=False) for r in tbl]
            if lines:
                self._fh.write("\n".join(lines) + "\n")

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._fh is not None:
            if self.fmt == "csv" and self._csv_header:
                self._fh.write((",".join(f'"{n}"' for n in _csv_header_names(self.schema)) + "\n").encode())
            self._fh.close()
            self._fh = None

    def commit(self) -> None:
        self._close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self._close()
        except Exception:  # noqa: BLE001 - the original error matters, not this one
            pass
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


def _csv_header_names(schema: pa.Schema) -> list[str]:
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


def check_output(output, overwrite: bool) -> Path:
    path = Path(output)
    if path.exists() and path.is_dir():
        raise InputError(f"output {str(path)!r} is a directory; give a file name, e.g. {str(path / 'scores.parquet')!r}")
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"output {str(path)!r} already exists; pass --overwrite to replace it, or choose another name"
        )
    if not path.parent.exists():
        raise InputError(f"the directory of output {str(path)!r} does not exist; create it first")
    return path


# --------------------------------------------------------------------------- progress
class _Progress:
    """A rich progress bar on stderr when it is a terminal; otherwise nothing."""

    def __init__(self, total: int | None, enabled: bool):
        self._p = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class _Rate(ProgressColumn):
            def render(self, task):  # rows per second, from rich's moving average
                speed = task.finished_speed or task.speed
                return Text(f"{speed:,.0f} rows/s" if speed else "", style="progress.data.speed")

        cols = [TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"), _Rate(), TimeElapsedColumn()]
        if total:
            cols.append(TimeRemainingColumn())
        self._p = Progress(*cols, console=Console(stderr=True), transient=True)
        self._p.start()
        self._task = self._p.add_task("scoring", total=total)

    def advance(self, n: int) -> None:
        if self._p is not None:
            self._p.advance(self._task, n)

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()
            self._p = None


# --------------------------------------------------------------------------- driver
@dataclass
class Summary(ScoreStats):
    """What a scoring run did: the scoring counters, plus input rows, time and output."""

    input_rows: int = 0
    seconds: float = 0.0
    output: str = ""
    layout: str = "list"
    notes: list[str] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.input_rows / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """The one-line summary the CLI prints on stderr."""
        if self.layout == "long":
            what = f"{self.rows:,} sequences from {self.input_rows:,} input rows"
        else:
            what = f"{self.rows:,} rows"
        return (
            f"scored {what} ({self.invalid:,} invalid, {self.empty:,} empty) in {self.seconds:.2f} s, "
            f"{self.rows_per_second:,.0f} rows/s -> {self.output}"
        )


def _warm_up(model, options: ScoreOptions) -> None:
    try:
        model.predict(np.zeros((1, 1, model.spec.input_size), model.dtype), engine=options.engine)
    except Exception:  # noqa: BLE001 - the real call reports any problem
        pass


def score_dataset(
    model,
    input,
    output,
    *,
    options: ScoreOptions | None = None,
    layout: str = "list",
    order_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    fmt: str | None = None,
    batch_rows: int = 4096,
    overwrite: bool = False,
    progress: bool | None = None,
) -> Summary:
    """Score a Parquet dataset and write the result atomically.

    Parameters
    ----------
    model : rnnjit.Model
    input : a Parquet file, a directory of Parquet files, or a glob.
    output : the file to write (parquet, csv or jsonl; see ``fmt``).
    options : ScoreOptions
        Columns, output mode, state, invalid-row policy, engine, threads.
        In the long layout ``options.id_columns`` is the sequence key.
    layout : "list" (one row per sequence) or "long" (one row per step).
    order_column, feature_columns : long layout only.
    fmt : "parquet" | "csv" | "jsonl"; default from the output's extension, else parquet.
    batch_rows : rows read per batch; bounds memory.
    overwrite : replace an existing output.
    progress : show a progress bar; default when stderr is a terminal.

    Returns
    -------
    Summary
    """
    options = options or ScoreOptions()
    # Loading the compiled kernels takes a moment (numba import, cache): do it
    # while the dataset is opened and the first batch is read.
    warm = threading.Thread(target=_warm_up, args=(model, options), daemon=True)
    warm.start()
    if layout not in LAYOUTS:
        raise InputError(f"layout {layout!r} is not known; expected one of {', '.join(LAYOUTS)}")
    if not isinstance(batch_rows, (int, np.integer)) or batch_rows < 1:
        raise InputError(f"batch_rows must be a positive integer, got {batch_rows!r}")
    fmt = infer_format(output, fmt)
    out_path = check_output(output, overwrite)
    if os.path.isdir(str(input)) and Path(input).resolve() in out_path.resolve().parents:
        raise InputError(
            f"output {str(output)!r} is inside the input directory {str(input)!r}, so the next run would "
            "read it as input; write it somewhere else"
        )
    t0 = time.perf_counter()
    dataset = open_dataset(input)
    schema = dataset.schema
    names = list(schema.names)

    if layout == "long":
        lay = resolve_long_layout(schema, model, options.id_columns, order_column, feature_columns, options)
        options = replace(
            options, features_column="features", pass_through=tuple(lay.id_columns), row_label="sequence"
        )
        list_schema = pa.schema(
            [schema.field(c) for c in lay.id_columns]
            + [pa.field("features", pa.list_(pa.list_(pa.float32(), len(lay.feature_columns))))]
            + [schema.field(c) for c in (lay.h0_column, lay.c0_column) if c]
        )
        columns = lay.columns
    else:
        if options.features_column not in names:
            raise InputError(
                f"column {options.features_column!r} not found; the input has columns {', '.join(names)}; "
                "name the sequence column with --features-column, or use --layout long for one row per step"
            )
        keep = pass_through_columns(schema, options)
        columns = [*keep, options.features_column]
        columns += [c for c in (options.h0_column, options.c0_column) if c in names]
        columns = list(dict.fromkeys(columns))
        list_schema = pa.schema([schema.field(c) for c in columns])
    out_schema = output_schema(model, list_schema, options)

    total = count_rows(dataset)
    if progress is None:
        progress = sys.stderr.isatty()
    bar = _Progress(total, progress)
    summary = Summary(output=str(out_path), layout=layout)
    sink = _Sink(out_path, out_schema, fmt)
    batches = iter_batches(dataset, columns, batch_rows)
    try:
        if layout == "long":
            stream = group_long(batches, lay, model.dtype)
        else:
            stream = ((b, b.num_rows) for b in batches)
        for batch, consumed in stream:
            warm.join()
            result = score_batch(model, batch, options, stats=summary, row_offset=summary.rows)
            sink.write(result)
            summary.input_rows += consumed
            bar.advance(consumed)
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    finally:
        batches.close()  # stops the reader thread now, not when the generator is collected
        bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary
