"""Reading Parquet input: a file, a directory or a glob, in bounded batches.

The input is listed with `pyarrow.dataset` and read file by file in batches of
at most ``batch_rows`` rows, so memory follows the batch size and the Parquet
row-group size, not the size of the input. Read errors become `InputError`.
"""

from __future__ import annotations

import glob as _glob
import os
import queue
import threading
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.dataset as ds

from rnnjit.errors import InputError


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
