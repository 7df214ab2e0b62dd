"""Nightly jobs (issue #9): dataset in, dataset out, hive partitions, resume, URIs and fsspec filesystems."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from cli_helpers import list_table, long_table, make_bundle, random_sequences, run, write

import rnnjit
from rnnjit import InputError
from rnnjit.io.manifest import MANIFEST
from rnnjit.local import score_dataset
from rnnjit.scoring import ScoreOptions

ROOT = Path(__file__).resolve().parent.parent
NP = ("--engine", "numpy")
SEQS = random_sequences(30, 3, seed=21, min_len=1, max_len=6)
# (relative path, rows of SEQS) of a hive-partitioned input
PARTS = [("label=0/part-0.parquet", range(0, 7)), ("label=0/part-1.parquet", range(7, 12)),
         ("label=1/part-0.parquet", range(12, 25)), ("label=1/region=eu/part-0.parquet", range(25, 30))]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("ds-bundle"), feature_names=["a", "b", "c"])


@pytest.fixture(scope="module")
def model(bundle):
    return rnnjit.load(bundle)


def make_dataset(root: Path, parts=PARTS) -> Path:
    for rel, rows in parts:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        write(list_table([SEQS[i] for i in rows], ids=list(rows)), p)
    return root


def expected(model, rows):
    return model.predict([SEQS[i] for i in rows], engine="numpy")[:, 0]


def read_outputs(out: Path) -> dict[str, pa.Table]:
    return {str(p.relative_to(out)): pq.read_table(p) for p in sorted(out.rglob("*.parquet"))}


# ------------------------------------------------------------------ dataset in, dataset out
@pytest.mark.parametrize("how", ["slash", "existing-dir", "flag"])
def test_dataset_output_mirrors_input_paths_and_keeps_partitions(bundle, model, tmp_path, how):
    src = make_dataset(tmp_path / "in")
    out = tmp_path / "out"
    arg, extra = {"slash": (f"{out}/", ()), "existing-dir": (out, ()),
                  "flag": (out, ("--output-layout", "dataset"))}[how]
    if how == "existing-dir":
        out.mkdir()
    r = run("score", "--model", bundle, "-i", src, "-o", arg, *extra, *NP)
    assert r.exit_code == 0, r.stderr
    assert "(4 files written)" in r.stderr
    got = read_outputs(out)
    assert sorted(got) == sorted(rel for rel, _ in PARTS)
    for rel, rows in PARTS:
        t = got[rel]
        assert t.column("id").to_pylist() == list(rows)
        np.testing.assert_allclose(t.column("score").to_numpy(), expected(model, rows), atol=1e-6)
    t = got["label=1/region=eu/part-0.parquet"]
    assert t.column_names == ["id", "label", "region", "score"]
    assert set(t.column("label").to_pylist()) == {1} and set(t.column("region").to_pylist()) == {"eu"}
    assert got["label=0/part-0.parquet"].column("region").null_count == 7
    # the output reads back as the same hive dataset
    back = ds.dataset(out, partitioning="hive").to_table()
    assert back.num_rows == len(SEQS)


def test_partition_column_as_id_column_in_one_output_file(bundle, model, tmp_path):
    src = make_dataset(tmp_path / "in")
    r = run("score", "--model", bundle, "-i", src, "-o", tmp_path / "o.parquet", "--id-column", "label", *NP)
    assert r.exit_code == 0, r.stderr
    t = pq.read_table(tmp_path / "o.parquet")
    assert t.column_names == ["label", "score"]
    assert t.column("label").to_pylist() == [0] * 12 + [1] * 18
    np.testing.assert_allclose(t.column("score").to_numpy(), expected(model, range(30)), atol=1e-6)


def test_partition_column_as_long_layout_sequence_key(model, tmp_path):
    for k in range(3):
        p = tmp_path / "in" / f"customer={k}" / "steps.parquet"
        p.parent.mkdir(parents=True)
        write(long_table([SEQS[k]], ids=[0], names=["a", "b", "c"]).drop(["id"]), p)
    s = score_dataset(model, tmp_path / "in", tmp_path / "o.parquet", layout="long", order_column="t",
                      options=ScoreOptions(engine="numpy", id_columns=("customer",)))
    t = pq.read_table(tmp_path / "o.parquet")
    assert t.column("customer").to_pylist() == [0, 1, 2] and s.rows == 3
    np.testing.assert_allclose(t.column("score").to_numpy(), expected(model, range(3)), atol=1e-6)


def test_single_input_file_still_writes_one_file(bundle, tmp_path):
    src = write(list_table(SEQS[:3]), tmp_path / "in.parquet")
    r = run("score", "--model", bundle, "-i", src, "-o", tmp_path / "scores", *NP)
    assert r.exit_code == 0 and (tmp_path / "scores").is_file(), r.stderr


def test_dataset_output_refuses_a_filled_directory_without_resume_or_overwrite(bundle, tmp_path):
    src = make_dataset(tmp_path / "in")
    assert run("score", "--model", bundle, "-i", src, "-o", f"{tmp_path}/out/", *NP).exit_code == 0
    r = run("score", "--model", bundle, "-i", src, "-o", f"{tmp_path}/out/", *NP)
    assert r.exit_code == 2 and "already holds 4 output file(s) of this input; pass --resume to finish it" in r.stderr
    r = run("score", "--model", bundle, "-i", src, "-o", f"{tmp_path}/out/", "--overwrite", *NP)
    assert r.exit_code == 0 and "(4 files written)" in r.stderr


def test_dataset_long_layout_refuses_a_sequence_split_across_files(model, tmp_path):
    t = long_table(SEQS[:4], names=["a", "b", "c"])
    (tmp_path / "in").mkdir()
    write(t.slice(0, len(SEQS[0]) + 1), tmp_path / "in" / "p0.parquet")  # id 1 starts here ...
    write(t.slice(len(SEQS[0]) + 1), tmp_path / "in" / "p1.parquet")  # ... and goes on here
    with pytest.raises(InputError, match=r"sequence \(id=1\) continues from file .*p0.parquet' into file .*p1.parquet'"):
        score_dataset(model, tmp_path / "in", f"{tmp_path}/out/", layout="long", order_column="t",
                      options=ScoreOptions(engine="numpy", id_columns=("id",)))


# ------------------------------------------------------------------ resume
def _manifest(out: Path) -> dict:
    return json.loads((out / MANIFEST).read_text())


def test_resume_skips_committed_files_and_redoes_changed_ones(model, tmp_path):
    src = make_dataset(tmp_path / "in")
    out = tmp_path / "out"
    opts = ScoreOptions(engine="numpy")
    s = score_dataset(model, src, f"{out}/", options=opts)
    assert s.files_written == 4 and sorted(_manifest(out)["files"]) == sorted(rel for rel, _ in PARTS)
    first = read_outputs(out)
    s = score_dataset(model, src, f"{out}/", options=opts, resume=True)
    assert (s.files_written, s.files_done_before, s.rows) == (0, 4, 0)
    # one input changes (new rows), one output disappears: exactly those two are redone
    write(list_table([SEQS[i] for i in range(3)], ids=[100, 101, 102]), src / "label=0/part-1.parquet")
    (out / "label=1/part-0.parquet").unlink()
    s = score_dataset(model, src, f"{out}/", options=opts, resume=True)
    assert (s.files_written, s.files_done_before) == (2, 2)
    again = read_outputs(out)
    assert again["label=0/part-1.parquet"].column("id").to_pylist() == [100, 101, 102]
    for rel in ("label=0/part-0.parquet", "label=1/part-0.parquet", "label=1/region=eu/part-0.parquet"):
        assert again[rel].equals(first[rel])


def test_resume_refuses_another_model_or_options(bundle, model, tmp_path):
    src = make_dataset(tmp_path / "in")
    score_dataset(model, src, f"{tmp_path}/out/", options=ScoreOptions(engine="numpy"))
    with pytest.raises(InputError, match=r"written by a run with another options; resume=True would mix"):
        score_dataset(model, src, f"{tmp_path}/out/", options=ScoreOptions(engine="numpy", output_mode="final"),
                      resume=True)
    other = rnnjit.load(make_bundle(tmp_path, feature_names=["a", "b", "c"], seed=3, name="other.npz"))
    with pytest.raises(InputError, match=r"another model"):
        score_dataset(other, src, f"{tmp_path}/out/", options=ScoreOptions(engine="numpy"), resume=True)


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "rnnjit.cli", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("kill_at", ["read:3", "write:4", "commit:2", "renamed:3"])
def test_killed_run_leaves_nothing_finished_looking_and_resume_completes(bundle, model, tmp_path, kill_at):
    """A real ``rnnjit score`` process SIGKILLed at a stage; ``--resume`` then equals an uninterrupted run."""
    src = make_dataset(tmp_path / "in")
    out = tmp_path / "out"
    args = ("score", "--model", bundle, "-i", src, "-o", f"{out}/", "--batch-rows", "3", "-q", *NP)
    p = _cli(*args, env={"RNNJIT_KILL_AT": kill_at})
    assert p.returncode == -9, (p.returncode, p.stderr)
    done = _manifest(out)["files"] if (out / MANIFEST).exists() else {}
    for f in out.rglob("*.parquet"):  # every output file present reads whole
        pq.read_table(f)
    assert all((out / rec["output"]).is_file() for rec in done.values())
    p = _cli(*args, "--resume")
    assert p.returncode == 0, p.stderr
    tmp_left = [f.name for f in out.rglob("*") if "rnnjit-tmp" in f.name]
    assert tmp_left == []
    ref = tmp_path / "ref"
    score_dataset(model, src, f"{ref}/", options=ScoreOptions(engine="numpy"))
    got, want = read_outputs(out), read_outputs(ref)
    assert sorted(got) == sorted(want)
    for rel in want:
        assert got[rel].equals(want[rel]), rel


# ------------------------------------------------------------------ URIs and other filesystems
def test_file_uris_for_model_input_and_output(bundle, model, tmp_path):
    src = make_dataset(tmp_path / "in")
    r = run("score", "--model", f"file://{bundle}", "-i", f"file://{src}", "-o", f"file://{tmp_path}/o.parquet", *NP)
    assert r.exit_code == 0, r.stderr
    np.testing.assert_allclose(pq.read_table(tmp_path / "o.parquet").column("score").to_numpy(),
                               expected(model, range(30)), atol=1e-6)
    r = run("score", "--model", bundle, "-i", f"file://{src}", "-o", f"file://{tmp_path}/out/", *NP)
    assert r.exit_code == 0 and sorted(read_outputs(tmp_path / "out")) == sorted(rel for rel, _ in PARTS), r.stderr


def test_unknown_uri_scheme_is_one_line(bundle, tmp_path):
    r = run("score", "--model", bundle, "-i", "nosuch://bucket/x.parquet", "-o", tmp_path / "o.parquet", *NP)
    assert r.exit_code == 2 and "cannot open 'nosuch://bucket/x.parquet'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_fsspec_memory_filesystem_through_the_api(model, tmp_path):
    fsspec = pytest.importorskip("fsspec")
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    mem = fsspec.filesystem("memory")
    fs = PyFileSystem(FSSpecHandler(mem))
    for rel, rows in PARTS:
        fs.create_dir(f"/in/{rel.rsplit('/', 1)[0]}", recursive=True)
        with fs.open_output_stream(f"/in/{rel}") as fh:
            pq.write_table(list_table([SEQS[i] for i in rows], ids=list(rows)), fh)
    with fs.open_output_stream("/in/_SUCCESS") as fh:
        fh.write(b"")
    opts = ScoreOptions(engine="numpy")
    s = score_dataset(model, "/in", "/out/", options=opts, filesystem=fs)
    assert s.files_written == 4 and any("skipped 1 file" in n for n in s.notes)
    for rel, rows in PARTS:
        with fs.open_input_file(f"/out/{rel}") as fh:
            t = pq.read_table(fh)
        np.testing.assert_allclose(t.column("score").to_numpy(), expected(model, rows), atol=1e-6)
    assert not [p for p in mem.find("/out") if "rnnjit-tmp" in p]
    s = score_dataset(model, "/in", "/out/", options=opts, filesystem=fs, resume=True)
    assert (s.files_written, s.files_done_before) == (0, 4)
    s = score_dataset(model, "/in", "/one.csv", options=opts, filesystem=fs)
    with fs.open_input_stream("/one.csv") as fh:
        assert len(fh.read().decode().splitlines()) == 31


def test_dataset_output_inside_the_input_directory_is_refused(bundle, tmp_path):
    src = make_dataset(tmp_path / "in")
    r = run("score", "--model", bundle, "-i", src, "-o", f"{src}/scores/", *NP)
    assert r.exit_code == 2 and "is inside the input directory" in r.stderr
    assert not (src / "scores").exists()


def test_a_file_named_on_its_own_is_never_skipped(bundle, tmp_path):
    src = write(list_table(SEQS[:2]), tmp_path / "_part.parquet")
    r = run("score", "--model", bundle, "-i", src, "-o", tmp_path / "o.parquet", *NP)
    assert r.exit_code == 0 and "skipped" not in r.stderr, r.stderr
    (tmp_path / "notes.txt").write_text("hello\n")
    r = run("score", "--model", bundle, "-i", tmp_path / "notes.txt", "-o", tmp_path / "p.parquet", *NP)
    assert r.exit_code == 2 and "cannot read Parquet input" in r.stderr and "notes.txt" in r.stderr


def test_hive_data_files_without_extension_are_read(bundle, model, tmp_path):
    (tmp_path / "in").mkdir()
    write(list_table(SEQS[:4], ids=list(range(4))), tmp_path / "in" / "000000_0")
    (tmp_path / "in" / "000001_0.log").write_text("not data\n")
    s = score_dataset(model, tmp_path / "in", tmp_path / "o.parquet", options=ScoreOptions(engine="numpy"))
    assert s.rows == 4 and any("skipped 1 file(s)" in n and "000001_0.log" in n for n in s.notes)
    np.testing.assert_allclose(pq.read_table(tmp_path / "o.parquet").column("score").to_numpy(),
                               expected(model, range(4)), atol=1e-6)
