"""The user-mistake catalogue (issue #7, data and outputs): one line per mistake a user really makes.

``MISTAKES`` rows are ``(id, setup, extra CLI args, fragments of the one error line)``:
``setup(d)`` writes the input files into ``d`` and returns the score arguments
(input, output, bundle). Every row must end in exactly one ``error:`` line,
exit code 2, no traceback and nothing left in the output's directory. Cases
whose right answer is a score, not an error, follow the table.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import list_table, long_table, make_bundle, make_weights, random_sequences, run, write

import rnnjit
from rnnjit.spec import RNNSpec

NP = ("--engine", "numpy")
SEQS = random_sequences(6, 3, seed=11, min_len=2, max_len=5)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("mistake-bundles")
    return {
        "named": make_bundle(d, feature_names=["a", "b", "c"], name="named.npz"),
        "plain": make_bundle(d, name="plain.npz"),
        "bidir": make_bundle(d, bidirectional=True, name="bidir.npz"),
        "one": make_bundle(d, input_size=1, name="one.npz"),
        "uni-then-bidir": _chain_bundle(d, [RNNSpec("lstm", 3, 5, prefix="a."), RNNSpec("gru", 5, 4, bidirectional=True,
                                                                                     prefix="b.")], "a,b,fc"),
        "mean-pool": _chain_bundle(d, [RNNSpec("lstm", 3, 5, prefix="a.")], "a,pool:mean,fc"),
    }


def _chain_bundle(d, specs, chain):
    """A bundle of several modules (or a pooling) from random weights, without torch."""
    w = {}
    for k, spec in enumerate(specs):
        w.update({n: v for n, v in make_weights(spec, 1, seed=k).items() if not n.startswith("fc.")})
    w.update({n: v for n, v in make_weights(specs[-1], 1, seed=9).items() if n.startswith("fc.")})
    np.savez(d / f"{chain}.npz", **w)
    rnnjit.convert(d / f"{chain}.npz", d / f"bundle-{chain}.npz", chain=chain)
    return d / f"bundle-{chain}.npz"


def _list(d, name="in.parquet", **kw):
    return write(list_table(SEQS, **kw), d / name)


def _long(d, names=("a", "b", "c")):
    return write(long_table(SEQS, names=list(names)), d / "long.parquet")


def _two_files(d, bad_file=1, bad_row=1):
    """Two files of three rows; a NaN in row ``bad_row`` of file ``bad_file``."""
    (d / "parts").mkdir()
    for k in range(2):
        seqs = [s.copy() for s in SEQS[3 * k: 3 * k + 3]]
        if k == bad_file:
            seqs[bad_row][0, 1] = np.nan
        write(list_table(seqs, ids=[10 * k + i for i in range(3)]), d / "parts" / f"p{k}.parquet")
    return d / "parts"


def _long_nan(d):
    t = long_table(SEQS, names=["a", "b", "c"])
    b = t.column("b").to_numpy().copy()
    b[4] = np.nan
    return write(t.set_column(3, "b", pa.array(b, pa.float32())), d / "long.parquet")


def _long_unsorted_files(d):
    (d / "parts").mkdir()
    t = long_table(SEQS, names=["a", "b", "c"])
    half = sum(len(s) for s in SEQS[:3])
    write(t.slice(half), d / "parts" / "p0.parquet")  # ids 3..5 first
    write(t.slice(0, half), d / "parts" / "p1.parquet")  # then ids 0..2
    return d / "parts"


def _float64_overflow(d):
    feats = [s.astype(np.float64).tolist() for s in SEQS]
    feats[2][1][0] = 1e39
    return write(pa.table({"id": range(len(SEQS)), "features": pa.array(feats, pa.list_(pa.list_(pa.float64())))}),
                 d / "in.parquet")


def _long_float64_overflow(d):
    t = long_table(SEQS, names=["a", "b", "c"])
    a = t.column("a").to_numpy().astype(np.float64)
    a[3] = -1e39
    return write(t.set_column(2, "a", pa.array(a)), d / "long.parquet")


def _fifo(d):
    os.mkfifo(d / "out.parquet")
    return _list(d)


LONG = ("--layout", "long", "--key-column", "id", "--order-column", "t")
# (id, setup(d) -> input, bundle, extra args, output name, fragments of the one error line)
MISTAKES = [
    ("bundle-feature-missing", lambda d: _long(d, ["a", "b", "x"]), "named", LONG, "o.parquet",
     ["the bundle's feature 'c' is not a column", "--feature-columns"]),
    ("feature-columns-reorder-the-bundle-names", _long, "named", (*LONG, "--feature-columns", "c,b,a"), "o.parquet",
     ["--feature-columns puts 'c' at input 0, but the bundle names it as input 2", "in model order: a, b, c"]),
    ("feature-columns-move-one-bundle-name", lambda d: _long(d, ["x", "a", "b"]), "named",
     (*LONG, "--feature-columns", "a,x,b"), "o.parquet", ["puts 'b' at input 2, but the bundle names it as input 1"]),
    ("no-names-refuses-to-guess", lambda d: _long(d, ["f4", "f0", "f1"]), "plain", LONG, "o.parquet",
     ["will not guess", "candidates are f4, f0, f1", "with --feature-columns (in model order",
      "convert with --feature-names"]),
    ("emit-state-bidirectional", _list, "bidir", ("--emit-state",), "o.parquet",
     ["--emit-state on a bidirectional model"]),
    ("emit-state-bidirectional-second-module", _list, "uni-then-bidir", ("--emit-state",), "o.parquet",
     ["--emit-state on a bidirectional model"]),
    ("emit-state-mean-pool", _list, "mean-pool", ("--emit-state",), "o.parquet",
     ["--emit-state on a model that pools over time (pool:mean)", "without --emit-state"]),
    ("h0-column-missing", _list, "named", ("--h0-column", "yesterday"), "o.parquet",
     ["state column 'yesterday' (--h0-column) not found"]),
    ("output-is-input", _list, "named", ("--overwrite",), "in.parquet",
     ["is the input file", "would destroy the input"]),
    ("output-is-fifo", _fifo, "named", ("--overwrite",), "out.parquet", ["not a regular file"]),
    ("extension-vs-format", _list, "named", ("--format", "csv"), "o.parquet",
     ["has a .parquet name but --format csv"]),
    ("gzip-parquet", _list, "named", (), "o.parquet.gz", ["Parquet compresses inside the file"]),
    ("parquet-to-stdout", _list, "named", ("--format", "parquet"), "-", ["cannot be streamed to standard output"]),
    ("resume-needs-dataset", _list, "named", ("--resume",), "o.parquet", ["--resume needs a dataset output"]),
    ("dataset-to-stdout", _list, "named", ("--output-layout", "dataset"), "-", ["not standard output"]),
    ("multi-file-error-names-file-row-id", _two_files, "named", (), "o.parquet",
     ["p1.parquet' row 1 (id=11)", "holds NaN or inf"]),
    ("long-error-names-real-column", _long_nan, "named", LONG, "o.parquet",
     ["row 4 (id=", "): column 'b' holds nan", "--on-invalid skip"]),
    ("long-unsorted-across-files", _long_unsorted_files, "named", LONG, "o.parquet",
     ["not sorted across files", "p1.parquet' starts with (id=0)", "p0.parquet', read before it, ends with (id=5)"]),
    ("float64-1e39-list", _float64_overflow, "named", (), "o.parquet",
     ["row 2 (id=2): step 1", "holds 1e+39, beyond float32's range"]),
    ("float64-1e39-long", _long_float64_overflow, "named", LONG, "o.parquet",
     ["row 3 (id=1): column 'a' holds -1e+39, beyond float32's range"]),
]


@pytest.mark.parametrize("case", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_mistake_is_one_error_line(case, bundles, tmp_path):
    _, setup, bundle, extra, out_name, fragments = case
    src = setup(tmp_path)
    out = out_name if out_name == "-" else tmp_path / out_name
    before = sorted(p.name for p in tmp_path.iterdir())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning before the error line fails the case
        r = run("score", "--model", bundles[bundle], "--input", src, "--output", out, *NP, *extra)
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr, r.exception)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, nothing removed


# ------------------------------------------------------------------ right answers, not errors
def _expected(bundle, seqs, **kw):
    return rnnjit.load(bundle).predict(seqs, engine="numpy", **kw)[:, 0]


def _scores(path):
    return pq.read_table(path).column("score").to_numpy()


def test_one_feature_model_takes_the_only_numeric_column_and_says_so(bundles, tmp_path):
    seqs = random_sequences(5, 1, seed=2)
    src = write(long_table(seqs, names=["load"]), tmp_path / "l.parquet")
    r = run("score", "--model", bundles["one"], "-i", src, "-o", tmp_path / "o.parquet", *NP, *LONG)
    assert r.exit_code == 0, r.stderr
    assert "feature column 'load' (the only numeric column" in r.stderr
    np.testing.assert_allclose(_scores(tmp_path / "o.parquet"), _expected(bundles["one"], seqs), atol=1e-6)


def test_yesterdays_hn_without_rename_warns_and_h0_column_uses_it(bundles, tmp_path, rng):
    h = rng.normal(size=(len(SEQS), 5)).astype(np.float32)
    c = rng.normal(size=(len(SEQS), 5)).astype(np.float32)
    src = write(list_table(SEQS, hn=pa.array(list(h), pa.list_(pa.float32())),
                           cn=pa.array(list(c), pa.list_(pa.float32()))), tmp_path / "in.parquet")
    r = run("score", "--model", bundles["named"], "-i", src, "-o", tmp_path / "zero.parquet", "--id-column", "id", *NP)
    assert r.exit_code == 0, r.stderr
    warns = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warns) == 2 and "'hn' column but no 'h0': scoring starts from a zero state" in warns[0]
    assert "--h0-column hn" in warns[0] and "--c0-column cn" in warns[1]
    r = run("score", "--model", bundles["named"], "-i", src, "-o", tmp_path / "o.parquet", *NP,
            "--h0-column", "hn", "--c0-column", "cn")
    assert r.exit_code == 0 and "warning" not in r.stderr, r.stderr
    assert pq.read_table(tmp_path / "o.parquet").column_names == ["id", "score"]
    np.testing.assert_allclose(_scores(tmp_path / "o.parquet"), _expected(bundles["named"], SEQS, h0=h[None], c0=c[None]),
                               atol=1e-6)


def test_summary_notes_hold_the_warning(bundles, tmp_path):
    from rnnjit.local import score_dataset
    from rnnjit.scoring import ScoreOptions

    h = np.zeros((len(SEQS), 5), np.float32)
    src = write(list_table(SEQS, hn=pa.array(list(h), pa.list_(pa.float32()))), tmp_path / "in.parquet")
    s = score_dataset(rnnjit.load(bundles["named"]), src, tmp_path / "o.parquet",
                      options=ScoreOptions(engine="numpy", pass_through=("id",)))
    assert any("'hn' column but no 'h0'" in n for n in s.notes) and "zero state" in s.line()


def test_repeated_input_scores_every_file_in_order(bundles, tmp_path):
    a = write(list_table(SEQS[:2], ids=[1, 2]), tmp_path / "a.parquet")
    b = write(list_table(SEQS[2:], ids=[3, 4, 5, 6]), tmp_path / "b.parquet")
    r = run("score", "--model", bundles["named"], "-i", b, "-i", a, "-o", tmp_path / "o.parquet", *NP)
    assert r.exit_code == 0, r.stderr
    out = pq.read_table(tmp_path / "o.parquet")
    assert out.column("id").to_pylist() == [3, 4, 5, 6, 1, 2]
    np.testing.assert_allclose(out.column("score").to_numpy(), _expected(bundles["named"], SEQS[2:] + SEQS[:2]),
                               atol=1e-6)


def test_empty_pandas_partition_and_non_parquet_files_are_skipped(bundles, tmp_path):
    pd = pytest.importorskip("pandas")
    d = tmp_path / "ds"
    d.mkdir()
    df = pd.DataFrame({"id": range(len(SEQS)), "features": [s.tolist() for s in SEQS]})
    df.head(0).to_parquet(d / "part-0.parquet")  # features typed null: pandas' empty partition
    df.to_parquet(d / "part-1.parquet")
    for junk in ("README.md", "_SUCCESS", ".part-1.parquet.crc", "part-1.crc"):
        (d / junk).write_text("not parquet\n")
    pq.write_metadata(pq.read_schema(d / "part-1.parquet"), d / "_common_metadata")
    assert pq.read_schema(d / "part-0.parquet").field("features").type == pa.null()
    r = run("score", "--model", bundles["named"], "-i", d, "-o", tmp_path / "o.parquet", *NP)
    assert r.exit_code == 0, r.stderr
    assert "skipped 5 file(s) that are not Parquet data" in r.stderr
    np.testing.assert_allclose(_scores(tmp_path / "o.parquet"), _expected(bundles["named"], SEQS), atol=1e-6)


@pytest.mark.parametrize("ext,fmt,opener", [
    ("csv.gz", "csv", "gzip"), ("jsonl.gz", "jsonl", "gzip"), ("csv.zst", "csv", "zstd"), ("jsonl.zst", "jsonl", "zstd"),
])
def test_compression_from_the_extension(bundles, tmp_path, ext, fmt, opener):
    import json

    import pyarrow.csv as pcsv

    out = tmp_path / f"o.{ext}"
    r = run("score", "--model", bundles["named"], "-i", _list(tmp_path), "-o", out, *NP)
    assert r.exit_code == 0, r.stderr
    with pa.CompressedInputStream(pa.OSFile(str(out)), opener) as fh:
        text = fh.read()
    if fmt == "csv":
        got = pcsv.read_csv(pa.BufferReader(text)).column("score").to_numpy()
    else:
        got = np.array([json.loads(ln)["score"] for ln in text.decode().splitlines()])
    np.testing.assert_allclose(got, _expected(bundles["named"], SEQS), atol=1e-6)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_dash_writes_to_stdout(bundles, tmp_path, fmt):
    r = run("score", "--model", bundles["named"], "-i", _list(tmp_path), "-o", "-", "--format", fmt, "-q", *NP)
    assert r.exit_code == 0, r.stderr
    assert not (tmp_path / "-").exists()
    lines = r.stdout.strip().splitlines()
    assert len(lines) == len(SEQS) + (fmt == "csv")
    assert lines[0] == '"id","score"' if fmt == "csv" else lines[0].startswith('{"id": 0, "score": ')


def test_symlink_output_writes_the_target_and_keeps_the_link(bundles, tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "scores.parquet"
    target.write_bytes(b"old")
    link = tmp_path / "latest.parquet"
    link.symlink_to(target)
    r = run("score", "--model", bundles["named"], "-i", _list(tmp_path), "-o", link, "--overwrite", *NP)
    assert r.exit_code == 0, r.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    np.testing.assert_allclose(_scores(target), _expected(bundles["named"], SEQS), atol=1e-6)


def test_stale_temp_files_of_dead_runs_are_removed(bundles, tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = [tmp_path / f".o.parquet.rnnjit-tmp-{pid}", tmp_path / f".x.csv.rnnjit-tmp-{pid}-{os.uname().nodename}"]
    other_host = tmp_path / f".o.parquet.rnnjit-tmp-{pid}-elsewhere"
    live = tmp_path / f".o.parquet.rnnjit-tmp-{os.getppid()}"
    for p in [*stale, other_host, live]:
        p.write_bytes(b"half")
    r = run("score", "--model", bundles["named"], "-i", _list(tmp_path), "-o", tmp_path / "o.parquet", *NP)
    assert r.exit_code == 0, r.stderr
    assert not any(p.exists() for p in stale) and other_host.exists() and live.exists()


def test_sigterm_is_handled_like_ctrl_c(bundles, tmp_path):
    import subprocess
    import sys

    src = _list(tmp_path)
    env = {**os.environ, "RNNJIT_KILL_AT": "score:1:TERM"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run([sys.executable, "-m", "rnnjit.cli", "score", "--model", str(bundles["named"]), "-i", str(src),
                        "-o", str(tmp_path / "o.parquet"), "--batch-rows", "2", *NP],
                       env=env, cwd=root, capture_output=True, text=True, timeout=120)
    assert p.returncode == 143, p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("error: terminated (SIGTERM)")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["in.parquet"]


def test_pandas_index_and_nullable_dtypes_round_trip(bundles, tmp_path):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"id": pd.array([1, None, 3, 4, 5, 6], dtype="Int64"),
                       "name": pd.array(list("abcdef"), dtype="string"),
                       "features": [s.tolist() for s in SEQS]},
                      index=pd.Index([f"k{i}" for i in range(6)], name="key"))
    df.to_parquet(tmp_path / "in.parquet")
    r = run("score", "--model", bundles["named"], "-i", tmp_path / "in.parquet", "-o", tmp_path / "o.parquet", *NP)
    assert r.exit_code == 0, r.stderr
    out = pd.read_parquet(tmp_path / "o.parquet")
    assert out.index.name == "key" and list(out.index) == list(df.index)
    assert str(out["id"].dtype) == "Int64" and out["name"].dtype == df["name"].dtype
    assert list(out.columns) == ["id", "name", "score"]


def test_range_index_is_dropped_where_it_would_lie(bundles, tmp_path):
    pd = pytest.importorskip("pandas")
    d = tmp_path / "parts"
    d.mkdir()
    for k in range(2):
        pd.DataFrame({"id": [k], "features": [SEQS[k].tolist()]}).to_parquet(d / f"p{k}.parquet")
    r = run("score", "--model", bundles["named"], "-i", d, "-o", tmp_path / "o.parquet", *NP)
    assert r.exit_code == 0, r.stderr
    out = pd.read_parquet(tmp_path / "o.parquet")
    assert list(out.index) == [0, 1] and list(out["id"]) == [0, 1]


def test_many_small_files_do_not_make_tiny_row_groups(bundles, tmp_path):
    d = tmp_path / "parts"
    d.mkdir()
    for k in range(40):
        write(list_table(SEQS[:2], ids=[2 * k, 2 * k + 1]), d / f"p{k:02d}.parquet")
    r = run("score", "--model", bundles["named"], "-i", d, "-o", tmp_path / "o.parquet", *NP)
    assert r.exit_code == 0, r.stderr
    meta = pq.ParquetFile(tmp_path / "o.parquet").metadata
    assert meta.num_rows == 80 and meta.num_row_groups == 1


def test_long_layout_h0_column_names_the_state(bundles, tmp_path, rng):
    h = rng.normal(size=(len(SEQS), 5)).astype(np.float32)
    t = long_table(SEQS, names=["a", "b", "c"])
    rows_of = np.repeat(np.arange(len(SEQS)), [len(s) for s in SEQS])
    src = write(t.append_column("hn", pa.array(list(h[rows_of]), pa.list_(pa.float32()))), tmp_path / "l.parquet")
    r = run("score", "--model", bundles["named"], "-i", src, "-o", tmp_path / "zero.parquet", *NP, *LONG)
    assert r.exit_code == 0 and "warning: the input has a 'hn' column but no 'h0'" in r.stderr, r.stderr
    r = run("score", "--model", bundles["named"], "-i", src, "-o", tmp_path / "o.parquet", *NP, *LONG,
            "--h0-column", "hn")
    assert r.exit_code == 0 and "warning" not in r.stderr, r.stderr
    np.testing.assert_allclose(_scores(tmp_path / "o.parquet"), _expected(bundles["named"], SEQS, h0=h[None]),
                               atol=1e-6)


def test_feature_columns_map_other_names_onto_the_bundle_inputs(tmp_path, bundles):
    """Columns the bundle does not name are a mapping, in model order: the same scores as the bundle's names."""
    write(long_table(SEQS, names=["a", "b", "c"]), tmp_path / "named.parquet")
    write(long_table(SEQS, names=["p", "q", "r"]), tmp_path / "other.parquet")
    r1 = run("score", "-m", bundles["named"], "-i", tmp_path / "named.parquet", "-o", tmp_path / "s1.parquet", *LONG, *NP)
    r2 = run("score", "-m", bundles["named"], "-i", tmp_path / "other.parquet", "-o", tmp_path / "s2.parquet", *LONG,
             *NP, "--feature-columns", "p,q,r")
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.stderr + r2.stderr
    assert pq.read_table(tmp_path / "s1.parquet")["score"] == pq.read_table(tmp_path / "s2.parquet")["score"]
