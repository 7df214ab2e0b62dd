"""rnnjit.io.parquet_out and the Parquet sink: writer settings per column, row groups in bytes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rnnjit.io import parquet_out
from rnnjit.io.fs import resolve
from rnnjit.io.parquet_out import writer_options
from rnnjit.io.sinks import Sink


def scores_table(rows: int, width: int, rng) -> pa.Table:
    lengths = rng.integers(1, 6, rows)
    steps = pa.array(list(rng.standard_normal((int(lengths.sum()), width)).astype(np.float32)),
                     pa.list_(pa.float32(), width))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.table({
        "id": pa.array(np.arange(rows)),
        "tags": pa.array([["a", "b"][: i % 3] for i in range(rows)], pa.list_(pa.string())),
        "score": pa.ListArray.from_arrays(pa.array(offsets), steps),
        "hn": pa.array([[1.5, 2.5]] * rows, pa.list_(pa.float32())),
        "p": pa.array(rng.random(rows).astype(np.float32)),
    })


def test_float_columns_get_no_dictionary_and_nested_ones_no_statistics(tmp_path, rng):
    table = scores_table(20, 3, rng)
    opts = writer_options(table.schema)
    assert opts == {"use_dictionary": ["id", "tags.list.element"],
                    "write_statistics": ["id", "tags.list.element", "p"]}
    pq.write_table(table, tmp_path / "t.parquet", **opts)
    meta = pq.ParquetFile(tmp_path / "t.parquet").metadata.row_group(0)
    cols = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    assert "PLAIN_DICTIONARY" not in cols["score.list.element.list.element"].encodings
    assert "RLE_DICTIONARY" not in cols["score.list.element.list.element"].encodings
    assert not cols["score.list.element.list.element"].is_stats_set and not cols["hn.list.element"].is_stats_set
    assert cols["p"].is_stats_set and cols["id"].is_stats_set and cols["tags.list.element"].is_stats_set
    assert "RLE_DICTIONARY" in cols["id"].encodings
    assert pq.read_table(tmp_path / "t.parquet").equals(table)


def test_wide_batches_are_cut_into_row_groups_of_about_the_byte_limit(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(parquet_out, "ROW_GROUP_BYTES", 20_000)
    table = scores_table(150, 64, rng)
    target = resolve(str(tmp_path / "out.parquet"))
    sink = Sink(target, table.schema, "parquet")
    for b in table.to_batches(max_chunksize=45):
        sink.write(b)
    sink.commit()
    f = pq.ParquetFile(tmp_path / "out.parquet")
    sizes = [f.metadata.row_group(i).num_rows for i in range(f.metadata.num_row_groups)]
    about = 20_000 / (table.nbytes / table.num_rows)  # rows of 20 kB; batches hold 45 rows, about twice that
    assert sum(sizes) == 150 and about < 45 / 1.5
    assert all(s <= 1.5 * about for s in sizes) and all(s >= about / 1.5 for s in sizes[:-1])
    assert f.read().equals(table)
