"""Reading Parquet input: files, directories, globs or URIs, in bounded batches.

`open_input` lists the data files of one or several inputs (in the order
given; a directory's files in path order), skipping what is not Parquet data
(hidden files, ``_SUCCESS``, ``_metadata``, ``.crc``, a README) and counting
it; hive partition folders (``label=0/``) become columns. `read_file` streams
one file in batches of at most ``batch_rows`` rows, so memory follows the batch
size and the Parquet row-group size, not the size of the input. Read errors
become `InputError` naming the file.
"""

from __future__ import annotations

import fnmatch
import glob as _glob
import os
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.fs as pafs

from rnnjit.errors import InputError
from rnnjit.files import regular_file
from rnnjit.io.fs import Location, resolve, store_hint
from rnnjit.io.shapes import is_list_type, is_numeric_type

PARQUET_EXTENSIONS = (".parquet", ".parq", ".pq")
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


@dataclass(frozen=True)
class InputFile:
    """One Parquet data file of the input.

    ``rel`` is its path relative to the input it was found under (its name for
    a single file), used to place its output in a dataset output; ``partition``
    holds the hive ``key=value`` folders of ``rel``.
    """

    loc: Location
    rel: str
    size: int
    mtime_ns: int | None
    partition: dict = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return self.loc.uri


@dataclass
class InputSet:
    """The data files to read, their common schema, and what was skipped."""

    files: list[InputFile]
    schema: pa.Schema
    partition_fields: tuple[pa.Field, ...]
    skipped: list[str]

    def count_rows(self) -> int | None:
        """Total rows from the Parquet footers (None when one cannot be read)."""
        import pyarrow.parquet as pq

        total = 0
        try:
            for f in self.files:
                with f.loc.fs.open_input_file(f.loc.path) as fh:
                    total += pq.ParquetFile(fh).metadata.num_rows
        except (pa.ArrowException, OSError):
            return None
        return total


def _read_error(what, exc) -> InputError:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    hint = store_hint(exc) or "check that it is a complete Parquet file (not truncated, not another format)"
    return InputError(f"cannot read Parquet input {str(what)!r}: {msg}; {hint}")


def is_hidden(rel: str) -> bool:
    """Spark/Hive/pyarrow convention: a path part starting with '.' or '_' is not data."""
    return any(p.startswith((".", "_")) and "=" not in p for p in rel.split("/") if p)


def _is_parquet(loc: Location, rel: str, size: int) -> bool:
    if rel.lower().endswith(PARQUET_EXTENSIONS):
        return True
    if size < 12:  # magic + footer length + magic
        return False
    try:  # Hive writes data files without an extension (000000_0): look at the magic bytes
        with loc.fs.open_input_file(loc.path) as fh:
            return fh.read(4) == b"PAR1"
    except (pa.ArrowException, OSError):
        return False


def _root_partition(root: str) -> dict:
    """The hive folders that end an input directory: ``seq/date=2026-12-01/`` keeps its ``date`` column."""
    parts = [p for p in root.split("/") if p]
    k = len(parts)
    while k and "=" in parts[k - 1]:
        k -= 1
    return _partition("/".join(parts[k:]) + "/")


def _partition(rel: str) -> dict:
    out = {}
    for part in rel.split("/")[:-1]:
        if "=" in part:
            k, v = part.split("=", 1)
            v = unquote(v)
            out[unquote(k)] = None if v == _HIVE_NULL else v
    return out


def _list_one(text, filesystem) -> tuple[list[tuple[Location, str, pafs.FileInfo]], list[str]]:
    """(location, relative path, info) of every file under one input, and the skipped names."""
    loc = resolve(text, filesystem)
    found: list[tuple[Location, str, pafs.FileInfo]] = []
    if any(ch in loc.path for ch in "*?["):
        if loc.local:
            paths = sorted(p for p in _glob.glob(loc.path, recursive=True) if os.path.isfile(p))
            base = loc.path.split("*")[0].split("?")[0].split("[")[0].rsplit("/", 1)[0]
        else:  # a glob on a remote filesystem: match the file names of its folder
            base = loc.path.rsplit("/", 1)[0]
            infos = loc.fs.get_file_info(pafs.FileSelector(base, recursive=False, allow_not_found=True))
            paths = sorted(i.path for i in infos if i.type == pafs.FileType.File and fnmatch.fnmatch(i.path, loc.path))
        if not paths:
            raise InputError(f"no file matches the input glob {loc.uri!r}; check the pattern (quote it in the shell)")
        for info in loc.fs.get_file_info(paths):
            rel = info.path[len(base):].lstrip("/") if info.path.startswith(base) else info.base_name
            found.append((Location(loc.fs, info.path, _uri(loc, info.path)), rel, info))
    else:
        try:
            info = loc.info()
        except (pa.ArrowException, OSError) as exc:
            raise _read_error(loc.uri, exc) from exc
        if info.type == pafs.FileType.NotFound:
            raise InputError(f"input {loc.uri!r} does not exist; give a Parquet file, a directory, a glob or a URI")
        if info.type == pafs.FileType.Directory:
            infos = loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True))
            base = loc.path.rstrip("/")
            for i in sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: i.path):
                found.append((Location(loc.fs, i.path, _uri(loc, i.path)), i.path[len(base):].lstrip("/"), i))
        else:  # a file named on its own is read whatever its name: an error beats a silent skip
            if loc.local and info.type != pafs.FileType.File:  # a FIFO would block the read, a device never end
                regular_file(loc.path, "input (a Parquet file, a directory, a glob or a URI)", InputError,
                             directory_ok=True)
            return [(loc, info.base_name, info)], []
    data, skipped = [], []
    for floc, rel, info in found:
        size = info.size or 0
        if is_hidden(rel) or not _is_parquet(floc, rel, size):
            skipped.append(rel)
        else:
            data.append((floc, rel, info))
    if not data:
        extra = f" (skipped {len(skipped)} that are not Parquet data: {', '.join(skipped[:3])})" if skipped else ""
        raise InputError(f"input {loc.uri!r} holds no Parquet files{extra}")
    return data, skipped


def _uri(root: Location, path: str) -> str:
    """How messages name a file found under ``root``: in the user's own spelling where possible."""
    from rnnjit.io.fs import is_uri

    if root.local and not is_uri(root.uri):
        return path if os.path.isabs(root.uri) else os.path.relpath(path)
    if is_uri(root.uri):
        scheme = root.uri.split("://", 1)[0]
        return f"{scheme}://{path}" if path.startswith("/") or scheme != "file" else f"{scheme}:///{path}"
    return path


def footer_hash(f: InputFile) -> str:
    """A hash of ``f``'s Parquet footer (schema, row groups, row counts, column statistics).

    Cheap (the last bytes of the file) and it changes with the content: a
    same-size rewrite whose modification time was restored (``cp -p``,
    ``rsync -t``) still has other statistics or offsets in its footer.
    """
    import hashlib
    import struct

    try:
        with f.loc.fs.open_input_file(f.loc.path) as fh:
            size = fh.size()
            fh.seek(max(size - 8, 0))
            tail = fh.read(8)
            n = struct.unpack("<I", tail[:4])[0] if len(tail) == 8 else 0
            if size >= 12 and tail[4:] == b"PAR1" and n + 12 <= size:
                fh.seek(size - 8 - n)
                return hashlib.sha256(fh.read(n) + tail).hexdigest()[:32]
    except (pa.ArrowException, OSError) as exc:
        raise _read_error(f.uri, exc) from exc
    footer_schema(f)  # no footer: pyarrow's own words for what is wrong
    raise _read_error(f.uri, OSError("no Parquet footer at its end"))


def _partition_type(values: list) -> pa.DataType:
    """pyarrow's hive inference: int32 when every value is an integer in range, else string."""
    vals = [v for v in values if v is not None]
    try:
        ints = [int(v) for v in vals]
    except ValueError:
        return pa.string()
    return pa.int32() if all(-(2**31) <= i < 2**31 for i in ints) else pa.int64()


def footer_schema(f: InputFile) -> pa.Schema:
    import pyarrow.parquet as pq

    try:
        with f.loc.fs.open_input_file(f.loc.path) as fh:
            return pq.ParquetFile(fh).schema_arrow
    except (pa.ArrowException, OSError) as exc:
        raise _read_error(f.uri, exc) from exc


def open_input(inputs, filesystem: pafs.FileSystem | None = None) -> InputSet:
    """List the Parquet data files of ``inputs`` (one or several) and their common schema.

    The schema is the first file's, except that a column typed ``null`` (an
    empty partition written by pandas) takes its type from the next file that
    has one. Partition folders (``key=value``) add columns after the file's.
    """
    if isinstance(inputs, (str, os.PathLike, Location)):
        inputs = [inputs]
    files: list[InputFile] = []
    skipped: list[str] = []
    for text in inputs:
        try:
            data, skip = _list_one(text, filesystem)
        except (pa.ArrowException, OSError) as exc:  # listing a store: credentials, endpoint
            raise _read_error(resolve(text, filesystem).uri, exc) from exc
        skipped += skip
        root = resolve(text, filesystem)
        folder = data and data[0][0].path != root.path and not any(c in root.path for c in "*?[")
        above = _root_partition(root.path) if folder else {}  # a folder that is itself a partition
        for loc, rel, info in data:
            mtime = info.mtime_ns if info.mtime is not None else None
            files.append(InputFile(loc, rel, info.size or 0, mtime, {**above, **_partition(rel)}))
    schema = footer_schema(files[0])
    for f in files[1:]:
        nulls = [n for n in schema.names if pa.types.is_null(schema.field(n).type)]
        if not nulls:
            break
        other = footer_schema(f)
        for n in nulls:
            if n in other.names and not pa.types.is_null(other.field(n).type):
                schema = schema.set(schema.get_field_index(n), other.field(n))
    keys: dict[str, list] = {}
    for f in files:
        for k, v in f.partition.items():
            keys.setdefault(k, []).append(v)
    pfields = tuple(pa.field(k, _partition_type(v)) for k, v in keys.items() if k not in schema.names)
    for fld in pfields:
        schema = schema.append(fld)
    return InputSet(files, schema, pfields, skipped)


def _partition_array(f: InputFile, fld: pa.Field, n: int) -> pa.Array:
    v = f.partition.get(fld.name)
    if v is not None and not pa.types.is_string(fld.type):
        v = int(v)
    return pa.array([v] * n, fld.type) if v is not None else pa.nulls(n, fld.type)


def _text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def castable(src: pa.DataType, dst: pa.DataType) -> bool:
    """A sibling file's type that reads as ``dst`` without a guess.

    Numbers to numbers (another width), lists to lists with such leaves, text to
    text, and ``null`` (an empty pandas partition) to anything. Text to numbers
    is refused: parsing "1.5" would hide a broken writer.
    """
    if src == dst or pa.types.is_null(src):
        return True
    if is_list_type(src) and is_list_type(dst):
        return castable(src.value_type, dst.value_type)
    return (is_numeric_type(src) and is_numeric_type(dst)) or (_text(src) and _text(dst))


def check_columns(f: InputFile, have: pa.Schema, schema: pa.Schema, cols: Sequence[str]) -> bool:
    """Refuse a file (footer schema ``have``) that lacks a column of ``cols`` or types one beyond a cast.

    Returns True when every column already has the type of ``schema`` (no cast needed).
    """
    missing = [c for c in cols if c not in have.names]
    if missing:
        raise InputError(
            f"file {f.uri!r} has no column {missing[0]!r} (it has {', '.join(have.names)}); "
            "every file of the input must have the same columns"
        )
    bad = next((c for c in cols if not castable(have.field(c).type, schema.field(c).type)), None)
    if bad is not None:
        raise InputError(
            f"file {f.uri!r}: column {bad!r} has type {have.field(bad).type} but the first file has "
            f"{schema.field(bad).type}; every file of the input must have the same schema"
        )
    return all(have.field(c).type == schema.field(c).type for c in cols)


def read_file(f: InputFile, schema: pa.Schema, columns: Sequence[str], batch_rows: int,
              partition_fields: Iterable[pa.Field] = ()) -> Iterator[pa.RecordBatch]:
    """Batches of ``columns`` (typed as in ``schema``) from one file.

    Column chunks are streamed through a 1 MiB buffer (no pre-buffering). A
    column typed differently from ``schema`` is cast to it (a ``null`` column of
    an empty pandas partition casts to anything), or refused by name; partition
    columns are filled from the file's folders.
    """
    import pyarrow.parquet as pq

    pnames = {p.name: p for p in partition_fields}
    cols = [c for c in columns if c not in pnames]
    target = pa.schema([schema.field(c) for c in cols])
    out_schema = pa.schema([schema.field(c) for c in columns])
    try:
        with f.loc.fs.open_input_file(f.loc.path) as fh:
            pf = pq.ParquetFile(fh, buffer_size=1 << 20, pre_buffer=False)
            have = pf.schema_arrow
            same = check_columns(f, have, schema, cols)
            for batch in pf.iter_batches(batch_size=batch_rows, columns=cols, use_threads=False):
                if not batch.num_rows:
                    continue
                if not same:
                    try:
                        batch = batch.cast(target)
                    except (pa.ArrowException, ValueError) as exc:
                        bad = next(c for c in cols if have.field(c).type != schema.field(c).type)
                        raise InputError(
                            f"file {f.uri!r}: column {bad!r} has type {have.field(bad).type} but the first "
                            f"file has {schema.field(bad).type}; every file of the input must have the same schema"
                        ) from exc
                if pnames:
                    arrays = [batch.column(c) if c not in pnames else _partition_array(f, pnames[c], batch.num_rows)
                              for c in columns]
                    batch = pa.RecordBatch.from_arrays(arrays, schema=out_schema)
                yield batch
    except (pa.ArrowException, OSError) as exc:
        raise _read_error(f.uri, exc) from exc


# --------------------------------------------------------------------------- prefetch
_DONE = object()


def prefetched(items: Iterable, enabled: bool = True) -> Iterator:
    """Iterate ``items`` in a background thread, one item ahead.

    pyarrow releases the GIL while it decodes and the numba kernels release it
    while they run, so the next batch is read while this one is scored; at most
    one item waits in memory. An exception in the reader is raised here.
    """
    if not enabled:
        yield from items
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
            for item in items:
                if not offer(item):
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
