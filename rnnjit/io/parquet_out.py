"""Parquet output at speed: writer settings for float scores, and row groups sized in bytes.

Per-step scores are the bulk of an output: a tagger's 876 float32 scores per
token are 167 MB of values for 2048 rows of 8-40 tokens, where the input was
200 KB of token ids. Measured on that output (bench/STREAMING.md, "Wide
per-step scores"), on the machine's 2 cores:

- **No dictionary for float columns.** Scores are all distinct: the writer
  hashes values into a dictionary until it overflows, then falls back to plain
  encoding; float columns are written plain from the start. Other columns keep
  pyarrow's defaults (an id or a label compresses well as a dictionary).
- **No statistics for nested float columns.** The min/max of every value of a
  per-step score list (or a state column) prunes nothing a reader asks for and
  costs a pass over every value; a one-value-per-row float score keeps them.
- **Row groups of at most `ROW_GROUP_BYTES`.** Arrow's writer builds a row
  group's repetition and definition levels whole (two int16 per value of a
  nested column); past about 32 MB of values those buffers are large
  allocations that the memory pool gives back to the system and faults in again
  for every row group, which tripled the writer's CPU time on the tagger's
  batches. Row groups of 16 MiB keep them in the pool.
- **Compression stays snappy** (pyarrow's default): on float scores it saves
  nothing and costs little (it gives up on incompressible data quickly); zstd
  level 1 with byte-stream-split saves 15-19% of the file for about 1.3-1.5x the writer's
  CPU time, not worth it as a default.
- **No writer thread.** Encoding batch k on a thread while batch k+1 is
  scored was measured and left out: the kernels already use both cores, and
  in the same process a writer thread made scoring 2-3x slower (memory
  bandwidth, page faults) for no gain end to end (16.9-21.9 s threaded,
  14.8-16.3 s inline, 8,192 rows, alternated).
"""

from __future__ import annotations

import pyarrow as pa

from rnnjit.io.shapes import is_list_type

ROW_GROUP_BYTES = 16 << 20
"""Most bytes of Arrow data per Parquet row group (see the module docstring)."""


def _float_depth(t: pa.DataType) -> int | None:
    """Nesting depth of a float column (0: one float per row, 1: a list of floats...); None: not all floats."""
    depth = 0
    while is_list_type(t):
        t, depth = t.value_type, depth + 1
    return depth if pa.types.is_floating(t) else None


def _leaf_paths(field: pa.Field) -> list[str]:
    """The Parquet column paths of ``field`` (``name`` for a flat column, ``tags.list.element`` for a list...)."""
    if not pa.types.is_nested(field.type):
        return [field.name]
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()  # the writer's own naming of nested leaves, from an empty file's schema
    pq.write_table(pa.schema([field]).empty_table(), sink)
    schema = pq.ParquetFile(pa.BufferReader(sink.getvalue())).schema
    return [schema.column(i).path for i in range(len(schema))]


def writer_options(schema: pa.Schema) -> dict:
    """`pyarrow.parquet.ParquetWriter` keywords for ``schema``: dictionaries and statistics as the module says."""
    dictionary, statistics = [], []
    for field in schema:
        depth = _float_depth(field.type)
        paths = _leaf_paths(field)
        if depth is None:
            dictionary += paths
        if depth is None or depth == 0:
            statistics += paths
    return {"use_dictionary": dictionary, "write_statistics": statistics}


def group_rows(table: pa.Table, row_group_rows: int) -> int:
    """Rows per row group for ``table``'s rows: at most ``row_group_rows`` and about `ROW_GROUP_BYTES`."""
    per_row = table.nbytes / max(table.num_rows, 1)
    return max(1, min(int(row_group_rows), int(ROW_GROUP_BYTES // max(per_row, 1))))
