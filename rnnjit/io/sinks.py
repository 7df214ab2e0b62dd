"""Output sinks: Parquet, CSV or JSON lines, written under a temporary name and renamed when complete.

A sink writes to a hidden temporary file beside its target, created
exclusively under an unpredictable name (`rnnjit.io.fs.open_temp`: the name
also carries this process's pid and host, so a later run can tell a dead run's
leftovers from a live one's), and `commit` gives it the mode of the file it
replaces (or the umask's) and renames it into place; `abort` removes it. No
reader ever sees a half-written file under the target name. Standard output
has no such promise: what was printed stays printed.

Parquet row groups: small batches (many small input files, a small
``--batch-rows``) are buffered up to ``row_group_rows`` rows (or 16 MiB) before
a row group is written, so an output is not hundreds of tiny row groups; a
batch of wide scores is cut into row groups of about 16 MiB, written with
settings for float scores (`rnnjit.io.parquet_out`).
"""

from __future__ import annotations

import json
import sys

import pyarrow as pa

from rnnjit.io import killpoints, parquet_out
from rnnjit.io.fs import Location, finish_mode, open_temp
from rnnjit.io.parquet_out import group_rows, writer_options
from rnnjit.io.signals import held
from rnnjit.io.text import csv_header_names, csv_table, jsonl_rows
from rnnjit.io.targets import FileTarget

ROW_GROUP_ROWS = 1 << 17


class Sink:
    """Writes batches to a temporary file; `commit` renames it to the target, `abort` removes it.

    Parameters
    ----------
    target : Location, or None for standard output.
    schema : the output schema (its metadata is written to Parquet files).
    fmt : "parquet" | "csv" | "jsonl".
    compression : "gzip" | "zstd" | None, for CSV and JSON lines.
    row_group_rows : Parquet rows per row group (small batches are buffered up to it).
    """

    def __init__(self, target: Location | None, schema: pa.Schema, fmt: str, compression: str | None = None,
                 row_group_rows: int = ROW_GROUP_ROWS):
        self.target = target
        self.fmt = fmt
        self.schema = schema
        self.row_group_rows = max(1, int(row_group_rows))
        self.rows = 0
        self._buf: list[pa.RecordBatch] = []
        self._buf_rows = self._buf_bytes = 0
        self._writer = None
        self._fh = self._raw = None
        self._csv_header = True
        if target is None:
            self.tmp = None
            self._fh = sys.stdout.buffer
            return
        with held():  # a SIGTERM between creating the file and storing its name would leave it behind
            self.tmp, self._raw = open_temp(target)
        try:
            if fmt == "parquet":
                import pyarrow.parquet as pq

                self._writer = pq.ParquetWriter(self._raw, schema, **writer_options(schema))
            elif compression:
                self._fh = pa.CompressedOutputStream(self._raw, compression)
            else:
                self._fh = self._raw
        except BaseException:
            self.abort()
            raise

    @classmethod
    def for_file(cls, target: FileTarget, schema: pa.Schema, **kw) -> "Sink":
        return cls(target.loc, schema, target.fmt, target.compression, **kw)

    def write(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        if self.fmt == "parquet":
            if batch.schema != self.schema:
                batch = batch.cast(self.schema)
            self._buf.append(batch)
            self._buf_rows += batch.num_rows
            self._buf_bytes += batch.nbytes
            if self._buf_rows >= self.row_group_rows or self._buf_bytes >= parquet_out.ROW_GROUP_BYTES:
                self._flush(whole_groups=True)
        elif self.fmt == "csv":
            import pyarrow.csv as pcsv

            sink = pa.BufferOutputStream()
            pcsv.write_csv(csv_table(batch), sink, pcsv.WriteOptions(include_header=self._csv_header))
            self._fh.write(sink.getvalue().to_pybytes())
            self._csv_header = False
        else:
            lines = [json.dumps(r, allow_nan=False) for r in jsonl_rows(batch)]
            if lines:
                self._fh.write(("\n".join(lines) + "\n").encode("utf-8"))
        killpoints.reach("write")

    def _flush(self, whole_groups: bool = False) -> None:
        """Write the buffered rows in row groups of `group_rows`; with ``whole_groups`` a last partial group
        stays buffered for the next batches."""
        if not self._buf:
            return
        table = pa.Table.from_batches(self._buf, schema=self.schema)
        rows = group_rows(table, self.row_group_rows)
        n = table.num_rows // rows * rows if whole_groups else table.num_rows
        rest = table.slice(n)
        self._buf = rest.to_batches() if rest.num_rows else []
        self._buf_rows, self._buf_bytes = rest.num_rows, rest.nbytes
        if n:
            self._writer.write_table(table.slice(0, n), row_group_size=rows)

    def _close(self) -> None:
        if self._writer is not None:
            self._flush()
            self._writer.close()
            self._writer = None
        if self._fh is not None:
            if self.fmt == "csv" and self._csv_header:  # no rows: still a header line
                self._fh.write((",".join(f'"{n}"' for n in csv_header_names(self.schema)) + "\n").encode())
            if self.tmp is None:
                self._fh.flush()
            else:
                self._fh.close()
            self._fh = None
        if self._raw is not None and not self._raw.closed:
            self._raw.close()  # a compressed stream or a Parquet writer may leave the file open
        self._raw = None

    def commit(self) -> None:
        """Finish the file and rename it into place (atomic on a local disk; see `rnnjit.io.fs`)."""
        self._close()
        if self.tmp is None:
            return
        finish_mode(self.tmp, self.target)
        killpoints.reach("commit")
        self.tmp.fs.move(self.tmp.path, self.target.path)
        killpoints.reach("renamed")

    def abort(self) -> None:
        """Drop the temporary file (any error here is ignored: the original error matters)."""
        try:
            self._buf = []
            self._close()
        except Exception:  # noqa: BLE001
            pass
        if self.tmp is None:
            return
        try:
            self.tmp.fs.delete_file(self.tmp.path)
        except (FileNotFoundError, OSError, pa.ArrowException):
            pass
