"""rnnjit.io.streaming: an output file that starts write-back as it goes and drops the pages behind it."""

from __future__ import annotations

import ctypes
import errno
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rnnjit.io import streaming
from rnnjit.io.fs import resolve
from rnnjit.io.sinks import Sink
from rnnjit.io.streaming import StreamingFile

PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def small_chunks(monkeypatch):
    """Write-back every 4 pages, 8 pages kept: a few hundred KB exercise every branch."""
    monkeypatch.setattr(streaming, "CHUNK", 4 * PAGE)
    monkeypatch.setattr(streaming, "KEEP", 8 * PAGE)


def _open(path) -> StreamingFile:
    return StreamingFile(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


@pytest.mark.skipif(streaming._SYNC is None, reason="no sync_file_range on this system")
def test_bytes_written_in_odd_pieces_read_back_the_same_and_pages_behind_are_dropped(tmp_path, rng, small_chunks):
    data = rng.integers(0, 256, 70 * PAGE + 123, dtype=np.uint8).tobytes()
    path = tmp_path / "out.bin"
    fh = _open(path)
    at = 0
    for size in [1, PAGE - 1, 3 * PAGE + 7, 17, 10 * PAGE, 5] * 100:
        piece = data[at : at + size]
        assert fh.write(piece) == len(piece)
        at += len(piece)
        if at == len(data):
            break
    fh.write(data[at:])
    assert fh._on, "sync_file_range refused a regular file"
    assert 0 < fh._dropped <= len(data) - streaming.KEEP and fh._dropped % PAGE == 0
    assert fh._started > fh._dropped
    fh.close()
    assert path.read_bytes() == data


def test_a_file_that_refuses_the_calls_is_written_as_a_plain_one(tmp_path, rng, small_chunks, monkeypatch):
    def refuses(fd, start, length, flags):
        ctypes.set_errno(errno.EINVAL)
        return -1

    monkeypatch.setattr(streaming, "_SYNC", refuses)
    data = rng.integers(0, 256, 40 * PAGE, dtype=np.uint8).tobytes()
    fh = _open(tmp_path / "out.bin")
    for i in range(0, len(data), 3 * PAGE):
        fh.write(data[i : i + 3 * PAGE])
    assert not fh._on and fh._dropped == 0
    fh.close()
    assert (tmp_path / "out.bin").read_bytes() == data


def test_a_write_back_error_is_raised_not_lost(tmp_path, small_chunks, monkeypatch):
    def fails(fd, start, length, flags):
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(streaming, "_SYNC", fails)
    path = tmp_path / "out.bin"
    fh = StreamingFile(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), str(path))
    with pytest.raises(OSError, match="Input/output error") as exc:
        fh.write(b"x" * (5 * PAGE))
    assert exc.value.errno == errno.EIO and exc.value.filename == str(path)
    fh.close()


@pytest.mark.skipif(streaming._SYNC is None, reason="no sync_file_range on this system")
def test_a_parquet_sink_through_the_streaming_file_reads_back_every_row(tmp_path, rng, small_chunks):
    lengths = rng.integers(1, 9, 300)
    values = rng.standard_normal((int(lengths.sum()), 50)).astype(np.float32)
    steps = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), 50)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    table = pa.table({"id": pa.array(np.arange(300)), "score": pa.ListArray.from_arrays(pa.array(offsets), steps)})
    sink = Sink(resolve(str(tmp_path / "out.parquet")), table.schema, "parquet", row_group_rows=50)
    assert isinstance(sink._raw, StreamingFile)
    for b in table.to_batches(max_chunksize=70):
        sink.write(b)
    dropped = sink._raw._dropped
    sink.commit()
    assert dropped > 0
    assert pq.read_table(tmp_path / "out.parquet").equals(table)


def test_the_cli_reports_a_write_back_error_in_one_line_and_leaves_nothing(tmp_path, small_chunks, monkeypatch):
    from cli_helpers import list_table, make_bundle, random_sequences, run, write

    def fails(fd, start, length, flags):
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(streaming, "_SYNC", fails)
    bundle = make_bundle(tmp_path, out_features=40, head="fc", output="all")
    src = write(list_table(random_sequences(300, 3, seed=2, min_len=5, max_len=9)), tmp_path / "in.parquet")
    out = tmp_path / "out" / "scores.parquet"
    out.parent.mkdir()
    r = run("score", "--model", bundle, "--input", src, "--output", out, "--batch-rows", 100)
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Input/output error (") and "rnnjit-tmp" in lines[0]
    assert list(out.parent.iterdir()) == []
