"""Streaming: datasets, long layout with carry-over, atomic output, formats."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import list_table, long_table, make_bundle, random_sequences, scores, write

import rnnjit
from rnnjit import InputError
from rnnjit.scoring import ScoreOptions
from rnnjit import local
from rnnjit.local import score_dataset

NP = ScoreOptions(engine="numpy")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("bundle")
    return rnnjit.load(make_bundle(d, feature_names=["a", "b", "c"]))


@pytest.fixture(scope="module")
def seqs():
    return random_sequences(23, 3, seed=5, min_len=1, max_len=9)


def _expected(model, seqs):
    return model.predict(seqs, engine="numpy")[:, 0]


def _leftovers(d):
    return [p.name for p in d.iterdir() if "rnnjit-tmp" in p.name]


@pytest.mark.parametrize("batch_rows", [1, 4, 1000])
def test_list_layout_in_small_batches(model, seqs, tmp_path, batch_rows):
    src = write(list_table(seqs), tmp_path / "in.parquet", row_group_size=5)
    s = score_dataset(model, src, tmp_path / "out.parquet", options=NP, batch_rows=batch_rows)
    np.testing.assert_allclose(scores(tmp_path / "out.parquet"), _expected(model, seqs), atol=1e-6)
    assert (s.rows, s.scored, s.input_rows) == (23, 23, 23)
    assert "scored 23 rows (0 invalid, 0 empty)" in s.line()


@pytest.mark.parametrize("batch_rows", [1, 3, 7, 10_000])
def test_long_layout_carries_groups_across_batches(model, seqs, tmp_path, batch_rows):
    ids = [f"k{i:02d}" for i in range(len(seqs))]
    src = write(long_table(seqs, ids=ids), tmp_path / "long.parquet", row_group_size=6)
    opts = ScoreOptions(engine="numpy", id_columns=("id",))
    s = score_dataset(model, src, tmp_path / "out.parquet", options=opts, layout="long", order_column="t",
                      feature_columns=["f0", "f1", "f2"], batch_rows=batch_rows)
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.column_names == ["id", "score"]
    assert out.column("id").to_pylist() == ids
    np.testing.assert_allclose(out.column("score").to_numpy(), _expected(model, seqs), atol=1e-6)
    assert s.rows == 23 and s.input_rows == sum(len(x) for x in seqs)
    assert "23 sequences" in s.line()


def test_long_layout_defaults_to_bundle_feature_names(model, seqs, tmp_path):
    t = long_table(seqs, names=["a", "b", "c"]).append_column("noise", pa.array(np.zeros(sum(map(len, seqs)))))
    t = t.select(["id", "t", "noise", "c", "a", "b"])  # stored in another order; the bundle's names put it right
    src = write(t, tmp_path / "long.parquet")
    score_dataset(model, src, tmp_path / "o.parquet", options=ScoreOptions(engine="numpy", id_columns=("id",)),
                  layout="long", order_column="t", batch_rows=5)
    np.testing.assert_allclose(scores(tmp_path / "o.parquet"), _expected(model, seqs), atol=1e-6)


def test_long_layout_feature_count_mismatch(tmp_path, seqs):
    m = rnnjit.load(make_bundle(tmp_path))  # no feature names
    src = write(long_table(seqs).append_column("x", pa.array(np.zeros(sum(map(len, seqs))))), tmp_path / "l.parquet")
    with pytest.raises(InputError, match=r"found 2 feature columns \(f0, x\) but the model expects input_size=3"):
        score_dataset(m, src, tmp_path / "o.parquet", options=ScoreOptions(id_columns=("id",)), layout="long",
                      order_column="t", feature_columns=["f0", "x"])


@pytest.mark.parametrize("batch_rows", [2, 100])
def test_long_layout_unsorted_ids_are_refused(model, tmp_path, batch_rows):
    seqs = random_sequences(4, 3, seed=1, min_len=2, max_len=3)
    src = write(long_table(seqs, ids=[1, 2, 1, 3]), tmp_path / "l.parquet")
    with pytest.raises(InputError, match=r"not sorted: row \d+ \(id=1\) comes after \(id=2\); sort it by \(id, t\)"):
        score_dataset(model, src, tmp_path / "o.parquet", options=ScoreOptions(id_columns=("id",)), layout="long",
                      order_column="t", feature_columns=["f0", "f1", "f2"], batch_rows=batch_rows)
    assert not (tmp_path / "o.parquet").exists() and not _leftovers(tmp_path)


def test_long_layout_order_must_increase(model, tmp_path):
    t = long_table(random_sequences(2, 3, min_len=3, max_len=3))
    t = t.set_column(1, "t", pa.array([0, 2, 1, 0, 1, 2], pa.int64()))
    src = write(t, tmp_path / "l.parquet")
    with pytest.raises(InputError, match=r"row 2 \(id=0\) has t=1 after 2 in the same sequence"):
        score_dataset(model, src, tmp_path / "o.parquet", options=ScoreOptions(id_columns=("id",)), layout="long",
                      order_column="t", feature_columns=["f0", "f1", "f2"])


def test_long_layout_needs_id_and_order(model, seqs, tmp_path):
    src = write(long_table(seqs), tmp_path / "l.parquet")
    with pytest.raises(InputError, match=r"layout='long' needs id_columns .*; e.g. id_columns=\['customer_id'\]"):
        score_dataset(model, src, tmp_path / "o.parquet", layout="long", order_column="t")
    with pytest.raises(InputError, match="needs order_column"):
        score_dataset(model, src, tmp_path / "o.parquet", options=ScoreOptions(id_columns=("id",)), layout="long")
    with pytest.raises(InputError, match=r"column 'when' not found; the input has columns id, t, f0, f1, f2"):
        score_dataset(model, src, tmp_path / "o.parquet", options=ScoreOptions(id_columns=("id",)), layout="long",
                      order_column="when")


def test_directory_and_glob_inputs(model, seqs, tmp_path):
    d = tmp_path / "parts"
    d.mkdir()
    for k, lo in enumerate(range(0, 23, 8)):
        write(list_table(seqs[lo : lo + 8], ids=list(range(lo, min(lo + 8, 23)))), d / f"part-{k}.parquet")
    for i, src in enumerate([d, str(d / "part-*.parquet")]):
        score_dataset(model, src, tmp_path / f"o{i}.parquet", options=NP, batch_rows=3)
        out = pq.read_table(tmp_path / f"o{i}.parquet")
        assert out.column("id").to_pylist() == list(range(23))
        np.testing.assert_allclose(out.column("score").to_numpy(), _expected(model, seqs), atol=1e-6)
    with pytest.raises(InputError, match="no file matches the input glob"):
        score_dataset(model, str(d / "nope-*.parquet"), tmp_path / "o.parquet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no Parquet files"):
        score_dataset(model, tmp_path / "empty", tmp_path / "o.parquet")


def test_output_exists_and_overwrite(model, seqs, tmp_path):
    src = write(list_table(seqs), tmp_path / "in.parquet")
    out = tmp_path / "o.parquet"
    out.write_text("yesterday")
    with pytest.raises(InputError, match="already exists; pass overwrite=True to replace it"):
        score_dataset(model, src, out, options=NP)
    assert out.read_text() == "yesterday"
    score_dataset(model, src, out, options=NP, overwrite=True)
    assert pq.read_table(out).num_rows == 23


def test_error_midway_leaves_nothing(model, seqs, tmp_path):
    bad = list(seqs)
    bad[20] = np.full((2, 3), np.nan, np.float32)
    src = write(list_table(bad), tmp_path / "in.parquet")
    with pytest.raises(InputError, match=r"row 20 \(id=20\): step 0 .*NaN"):
        score_dataset(model, src, tmp_path / "o.parquet", options=NP, batch_rows=4)
    assert not (tmp_path / "o.parquet").exists() and not _leftovers(tmp_path)
    s = score_dataset(model, src, tmp_path / "o.parquet", options=ScoreOptions(engine="numpy", on_invalid="skip"))
    assert s.invalid == 1 and scores(tmp_path / "o.parquet")[20] is None


def test_keyboard_interrupt_removes_temp_file(model, seqs, tmp_path, monkeypatch):
    src = write(list_table(seqs), tmp_path / "in.parquet")
    calls = []
    real = local.score_batch

    def interrupted(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            assert _leftovers(tmp_path)  # the temp file is being written
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(local, "score_batch", interrupted)
    with pytest.raises(KeyboardInterrupt) as exc:
        score_dataset(model, src, tmp_path / "o.parquet", options=NP, batch_rows=5)
    assert exc.traceback[-1].name == "interrupted"  # the interrupt the test raised, not another one
    assert not (tmp_path / "o.parquet").exists() and not _leftovers(tmp_path)


def test_corrupt_and_truncated_parquet(model, seqs, tmp_path):
    good = write(list_table(seqs), tmp_path / "good.parquet")
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet at all" * 10)
    data = good.read_bytes()
    (tmp_path / "trunc.parquet").write_bytes(data[: len(data) // 2])
    for name in ("garbage.parquet", "trunc.parquet"):
        with pytest.raises(InputError, match=rf"cannot read Parquet input .*{name}.*check that it is a complete Parquet file"):
            score_dataset(model, tmp_path / name, tmp_path / "o.parquet", options=NP)
        assert not (tmp_path / "o.parquet").exists() and not _leftovers(tmp_path)


def test_corrupt_data_pages(model, tmp_path):
    seqs = random_sequences(300, 3, seed=2, min_len=5, max_len=9)
    good = write(list_table(seqs), tmp_path / "good.parquet", compression="none", row_group_size=50)
    data = bytearray(good.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 2000] = os.urandom(2000)  # footer intact, pages garbled
    (tmp_path / "bad.parquet").write_bytes(bytes(data))
    try:
        score_dataset(model, tmp_path / "bad.parquet", tmp_path / "o.parquet", options=NP, batch_rows=16)
    except InputError:
        pass  # either refused with a one-line error ...
    assert not _leftovers(tmp_path)  # ... or (random bytes happened to decode) written: never a temp file


def test_empty_input_writes_schema_only(model, tmp_path):
    src = write(list_table([np.zeros((1, 3), np.float32)]).slice(0, 0), tmp_path / "in.parquet")
    s = score_dataset(model, src, tmp_path / "o.parquet", options=NP)
    out = pq.read_table(tmp_path / "o.parquet")
    assert out.num_rows == 0 and out.column_names == ["id", "score"] and s.rows == 0


def test_csv_and_jsonl(tmp_path, seqs):
    m3 = rnnjit.load(make_bundle(tmp_path, out_features=3, head="fc,softmax", name="b3.npz"))
    data = list(seqs[:4]) + [np.zeros((0, 3), np.float32)]
    src = write(list_table(data), tmp_path / "in.parquet")
    exp = m3.predict(data[:4], engine="numpy")
    score_dataset(m3, src, tmp_path / "o.csv", options=NP)
    lines = (tmp_path / "o.csv").read_text().splitlines()
    assert lines[0] == '"id","score_0","score_1","score_2"'
    first = [float(v) for v in lines[1].split(",")]
    np.testing.assert_allclose(first[1:], exp[0], atol=1e-6)
    assert lines[5] == "4,,,"
    score_dataset(m3, src, tmp_path / "o.jsonl", options=ScoreOptions(engine="numpy", emit_state=True))
    rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert rows[0]["id"] == 0 and len(rows[0]["score"]) == 3 and len(rows[0]["hn"]) == 5
    np.testing.assert_allclose(rows[1]["score"], exp[1], atol=1e-6)
    assert rows[4] == {"id": 4, "score": None, "hn": None, "cn": None}
    score_dataset(m3, src, tmp_path / "all.csv", options=ScoreOptions(engine="numpy", output_mode="all"))
    row = (tmp_path / "all.csv").read_text().splitlines()[1]
    assert row.startswith('0,"[[') and len(json.loads(row.split(",", 1)[1].strip('"').replace('""', '"'))) == len(data[0])


def test_empty_csv_has_header(model, tmp_path):
    src = write(list_table([np.zeros((1, 3), np.float32)]).slice(0, 0), tmp_path / "in.parquet")
    score_dataset(model, src, tmp_path / "o.csv", options=NP)
    assert (tmp_path / "o.csv").read_text() == '"id","score"\n'  # the same quoting as pyarrow's header


def test_progress_bar_runs(model, seqs, tmp_path, capsys):
    src = write(list_table(seqs), tmp_path / "in.parquet", row_group_size=5)
    s = score_dataset(model, src, tmp_path / "o.parquet", options=NP, batch_rows=5, progress=True)
    assert s.rows == 23
    assert capsys.readouterr().out == ""  # the bar goes to stderr, never stdout


def test_output_inside_input_directory_is_refused(model, seqs, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    write(list_table(seqs), d / "part-0.parquet")
    with pytest.raises(InputError, match="is inside the input directory"):
        score_dataset(model, d, d / "scores.parquet", options=NP)


def test_schema_clash_between_files_is_one_error(model, seqs, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    write(list_table(seqs[:3]), d / "part-0.parquet")
    write(pa.table({"id": ["x"], "features": list_table(seqs[:1]).column("features")}), d / "part-1.parquet")
    with pytest.raises(InputError, match=r"part-1.parquet': column 'id' has type string but the first file has int64"):
        score_dataset(model, d, tmp_path / "o.parquet", options=NP)
    assert not _leftovers(tmp_path)
    (d / "part-1.parquet").unlink()
    write(pa.table({"id": [9]}), d / "part-1.parquet")
    with pytest.raises(InputError, match=r"part-1.parquet' has no column 'features' \(it has id\)"):
        score_dataset(model, d, tmp_path / "o.parquet", options=NP)


def test_compatible_types_across_files_are_cast(model, seqs, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    write(list_table(seqs[:3]), d / "part-0.parquet")
    feats = pa.array([s.tolist() for s in seqs[3:5]], pa.large_list(pa.list_(pa.float64(), 3)))
    write(pa.table({"id": pa.array([3, 4], pa.int32()), "features": feats}), d / "part-1.parquet")
    score_dataset(model, d, tmp_path / "o.parquet", options=NP)
    np.testing.assert_allclose(scores(tmp_path / "o.parquet"), _expected(model, seqs[:5]), atol=1e-6)


@pytest.mark.parametrize("layout", ["list", "long"])
def test_batches_never_exceed_batch_rows(model, seqs, tmp_path, monkeypatch, layout):
    """Memory is bounded by batch_rows: no batch handed to score_batch is larger."""
    seen = []
    real = local.score_batch

    def spy(m, batch, *a, **kw):
        seen.append(batch.num_rows)
        return real(m, batch, *a, **kw)

    monkeypatch.setattr(local, "score_batch", spy)
    if layout == "list":
        src = write(list_table(seqs), tmp_path / "in.parquet", row_group_size=100)
        score_dataset(model, src, tmp_path / "o.parquet", options=NP, batch_rows=4)
        assert max(seen) <= 4 and sum(seen) == 23
    else:
        src = write(long_table(seqs), tmp_path / "in.parquet", row_group_size=1000)
        score_dataset(model, src, tmp_path / "o.parquet", options=ScoreOptions(engine="numpy", id_columns=("id",)),
                      layout="long", order_column="t", feature_columns=["f0", "f1", "f2"], batch_rows=10)
        assert max(seen) <= 10 and sum(seen) == 23  # whole sequences from at most 10 input rows (plus carry)


def test_reader_thread_stops_after_an_error(model, seqs, tmp_path):
    import threading

    bad = list(seqs) * 4
    bad[3] = np.full((2, 3), np.nan, np.float32)
    src = write(list_table(bad), tmp_path / "in.parquet", row_group_size=4)
    with pytest.raises(InputError, match=r"row 3 \(id=3\): step 0 .*NaN"):
        score_dataset(model, src, tmp_path / "o.parquet", options=NP, batch_rows=2)
    assert not [t for t in threading.enumerate() if t.name == "rnnjit-reader"]


def test_long_layout_takes_state_from_the_first_step(model, seqs, tmp_path, rng):
    h0 = rng.normal(size=(len(seqs), 5)).astype(np.float32)
    c0 = rng.normal(size=(len(seqs), 5)).astype(np.float32)
    t = long_table(seqs)
    rows_of = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs])
    t = t.append_column("h0", pa.array(list(h0[rows_of]), pa.list_(pa.float32())))
    t = t.append_column("c0", pa.array(list(c0[rows_of]), pa.list_(pa.float32())))
    src = write(t, tmp_path / "l.parquet")
    score_dataset(model, src, tmp_path / "o.parquet", options=ScoreOptions(engine="numpy", id_columns=("id",)),
                  layout="long", order_column="t", feature_columns=["f0", "f1", "f2"], batch_rows=6)
    exp = model.predict(seqs, h0=h0[None], c0=c0[None], engine="numpy")[:, 0]
    np.testing.assert_allclose(scores(tmp_path / "o.parquet"), exp, atol=1e-6)
