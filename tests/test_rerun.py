"""The re-run catalogue (issue #19): what a nightly job does to a dataset output directory a second time.

``RERUNS`` rows are ``(id, steps)``: ``steps(d, score)`` builds inputs under
``d``, runs ``score(*args) -> Result`` one or more times against ``d/out/``,
and returns the input folders whose rows the directory must now hold (or None
when the last run must have been refused: then the directory must be byte for
byte what it was before that run). After every row that ends in exit 0 the
directory reads back as exactly the current inputs' rows (ids and scores), with
``_SUCCESS``, no temporary file, and the manifest naming every output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from cli_helpers import list_table, make_bundle, random_sequences, run, write

import rnnjit
from rnnjit.io import killpoints
from rnnjit.io.manifest import MANIFEST

ROOT = Path(__file__).resolve().parent.parent
NP = ("--engine", "numpy")
SEQS = random_sequences(40, 3, seed=19, min_len=3, max_len=3)  # one length: a rewrite can keep the size


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("rerun-bundle"), feature_names=["a", "b", "c"])


@pytest.fixture(scope="module")
def model(bundle):
    return rnnjit.load(bundle)


def put(path: Path, ids) -> Path:
    """An input file of the rows ``ids`` (ids index SEQS, so the expected score is known)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write(list_table([SEQS[i] for i in ids], ids=list(ids)), path, compression="none", use_dictionary=False)


def input_ids(*roots: Path) -> list[int]:
    return sorted(i for r in roots for p in sorted(r.rglob("*.parquet"))
                  for i in pq.read_table(p, columns=["id"]).column("id").to_pylist())


def snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def assert_holds(out: Path, model, roots) -> None:
    """``out`` reads back as exactly the rows of the input folders ``roots``, scored right."""
    assert (out / "_SUCCESS").is_file()
    assert not [p for p in out.rglob("*") if "rnnjit-tmp" in p.name or p.name == "_rnnjit.lock"]
    back = ds.dataset(out, format="parquet", partitioning="hive", exclude_invalid_files=False,
                      ignore_prefixes=[".", "_"]).to_table().sort_by("id")
    ids = back.column("id").to_pylist()
    assert ids == input_ids(*roots)
    want = model.predict([SEQS[i] for i in ids], engine="numpy")[:, 0]
    np.testing.assert_allclose(back.column("score").to_numpy(), want, atol=1e-6)
    man = json.loads((out / MANIFEST).read_text())
    outputs = sorted(str(p.relative_to(out)) for p in out.rglob("*.parquet"))
    assert sorted(rec["output"] for rec in man["files"].values()) == outputs and man["remove"] == []


def day(d, name, ids):
    return put(d / "seq" / f"date={name}" / "part-0.parquet", ids)


# ------------------------------------------------------------------ the catalogue
def day2_into_day1_resume(d, score):
    day(d, "2026-12-01", range(0, 10))
    day(d, "2026-12-02", range(10, 20))
    assert score("-i", d / "seq/date=2026-12-01/").exit_code == 0
    return score("-i", d / "seq/date=2026-12-02/", "--resume"), None


def day2_into_day1_overwrite(d, score):
    day(d, "2026-12-01", range(0, 10))
    day(d, "2026-12-02", range(10, 20))
    assert score("-i", d / "seq/date=2026-12-01/").exit_code == 0
    return score("-i", d / "seq/date=2026-12-02/", "--overwrite"), [d / "seq/date=2026-12-02"]


def whole_root_grows_a_day(d, score):
    day(d, "2026-12-01", range(0, 10))
    assert score("-i", d / "seq/").exit_code == 0
    day(d, "2026-12-02", range(10, 20))
    r = score("-i", d / "seq/", "--resume")
    assert "1 already done" in r.stderr or r.exit_code
    return r, [d / "seq"]


def renamed_input(flag):
    def steps(d, score):
        put(d / "in/a.parquet", range(0, 8))
        put(d / "in/b.parquet", range(8, 16))
        assert score("-i", d / "in").exit_code == 0
        os.rename(d / "in/a.parquet", d / "in/c.parquet")  # compaction renames a file
        r = score("-i", d / "in", flag)
        assert "1 stale removed" in r.stderr or r.exit_code
        return r, [d / "in"]

    return steps


def removed_input_resume(d, score):
    put(d / "in/label=0/a.parquet", range(0, 8))
    put(d / "in/label=1/b.parquet", range(8, 16))
    assert score("-i", d / "in").exit_code == 0
    os.unlink(d / "in/label=1/b.parquet")  # retention removes a partition
    os.rmdir(d / "in/label=1")
    r = score("-i", d / "in", "--resume")
    assert not (d / "out/label=1").exists()
    return r, [d / "in"]


def same_size_rewrite_with_mtime_restored(d, score):
    a = put(d / "in/a.parquet", range(0, 8))
    put(d / "in/b.parquet", range(8, 16))
    assert score("-i", d / "in").exit_code == 0
    st = os.stat(a)
    put(a, range(20, 28))  # other rows, same shapes: same size
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))  # cp -p, rsync -t
    assert os.stat(a).st_size == st.st_size and os.stat(a).st_mtime_ns == st.st_mtime_ns
    r = score("-i", d / "in", "--resume")
    assert "1 already done" in r.stderr or r.exit_code
    return r, [d / "in"]


def run_beside_a_live_lock(d, score):
    put(d / "in/a.parquet", range(0, 8))
    (d / "out").mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (d / "out/_rnnjit.lock").write_text(json.dumps({"host": _host(), "pid": live.pid}))
        r = score("-i", d / "in")
    finally:
        live.kill()
        live.wait()
    assert "is being written by another run" in r.stderr
    return r, None


def stale_lock_of_a_dead_run_is_taken_over(d, score):
    put(d / "in/a.parquet", range(0, 8))
    (d / "out").mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (d / "out/_rnnjit.lock").write_text(json.dumps({"host": _host(), "pid": dead.pid}))
    return score("-i", d / "in", "--resume"), [d / "in"]


def killed_run_then_a_different_run(d, score):
    day(d, "2026-12-01", range(0, 10))
    day(d, "2026-12-01", range(0, 10)).rename(d / "seq/date=2026-12-01/part-1.parquet")
    day(d, "2026-12-02", range(10, 20))
    args = ("-i", d / "seq/date=2026-12-01/")
    p = _cli(args, d, env={"RNNJIT_KILL_AT": "renamed:1"})
    assert p.returncode == -signal.SIGKILL and not (d / "out/_SUCCESS").exists()
    r = score("-i", d / "seq/date=2026-12-02/", "--resume")
    assert r.exit_code == 2
    return score("-i", d / "seq/date=2026-12-02/", "--overwrite"), [d / "seq/date=2026-12-02"]


def overwrite_after_a_rename_in_a_partition(d, score):
    put(d / "in/label=0/a.parquet", range(0, 8))
    put(d / "in/label=1/b.parquet", range(8, 16))
    assert score("-i", d / "in").exit_code == 0
    os.rename(d / "in/label=1", d / "in/label=2")
    r = score("-i", d / "in", "--overwrite")
    assert not (d / "out/label=1").exists()
    return r, [d / "in"]


def stray_file_in_the_directory_stops_resume(d, score):
    put(d / "in/a.parquet", range(0, 8))
    assert score("-i", d / "in").exit_code == 0
    put(d / "out/someone-elses.parquet", range(30, 32))
    return score("-i", d / "in", "--resume"), None


def two_inputs_in_another_order(d, score):
    put(d / "a/x.parquet", range(0, 4))
    put(d / "b/y.parquet", range(4, 8))
    assert score("-i", d / "a", "-i", d / "b").exit_code == 0
    r = score("-i", d / "b", "-i", d / "a", "--resume")
    assert "2 already done" in r.stderr or r.exit_code
    return r, [d / "a", d / "b"]


RERUNS = [
    ("day 2 into day 1's directory with --resume is refused", day2_into_day1_resume),
    ("day 2 into day 1's directory with --overwrite holds day 2 only", day2_into_day1_overwrite),
    ("the whole root with a new day: --resume scores the new day", whole_root_grows_a_day),
    ("a renamed input with --resume: the old output removed", renamed_input("--resume")),
    ("a renamed input with --overwrite: the old output removed", renamed_input("--overwrite")),
    ("a removed partition with --resume: its output removed", removed_input_resume),
    ("a same-size rewrite with its mtime restored is redone", same_size_rewrite_with_mtime_restored),
    ("a second run beside a live run's lock is refused", run_beside_a_live_lock),
    ("a dead run's lock is taken over", stale_lock_of_a_dead_run_is_taken_over),
    ("a killed run, then another input: --resume refused, --overwrite clean", killed_run_then_a_different_run),
    ("--overwrite after a partition was renamed", overwrite_after_a_rename_in_a_partition),
    ("a file the manifest does not know stops --resume", stray_file_in_the_directory_stops_resume),
    ("the same inputs given in another order resume", two_inputs_in_another_order),
]


def _host():
    from rnnjit.io.fs import _HOST

    return _HOST


def _cli(args, d, env=None, bundle_path=None):
    bundle_path = bundle_path or _cli.bundle
    cmd = [sys.executable, "-m", "rnnjit.cli", "score", "--model", bundle_path, "-o", f"{d}/out/", *args, *NP]
    return subprocess.run(list(map(str, cmd)), cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


@pytest.mark.parametrize("case", RERUNS, ids=[c[0] for c in RERUNS])
def test_rerun(bundle, model, tmp_path, case):
    _cli.bundle = bundle

    def score(*args):
        return run("score", "--model", bundle, "-o", f"{tmp_path}/out/", *args, *NP)

    _, steps = case
    before = {}

    def watched(*args):
        before.clear()
        before.update(snapshot(tmp_path / "out") if (tmp_path / "out").exists() else {})
        return score(*args)

    r, roots = steps(tmp_path, watched)
    if roots is None:
        assert r.exit_code == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
        assert snapshot(tmp_path / "out") == before, "a refused run touched the directory"
    else:
        assert r.exit_code == 0, r.stderr
        assert_holds(tmp_path / "out", model, roots)


# ------------------------------------------------------------------ refused before anything is written
def test_input_inside_the_output_directory_is_refused(bundle, tmp_path):
    put(tmp_path / "out/x.parquet", range(0, 4))
    before = snapshot(tmp_path / "out")
    for extra in (("--overwrite",), ("--resume",)):
        for given in (tmp_path / "out/x.parquet", f"{tmp_path}/out/*.parquet"):
            r = run("score", "--model", bundle, "-i", given, "-o", f"{tmp_path}/out/", *extra, *NP)
            assert r.exit_code == 2 and "is inside the output directory" in r.stderr, r.stderr
            assert snapshot(tmp_path / "out") == before


@pytest.mark.parametrize("names", [("part", "part.parquet", "part.pq"), ("x.parquet", "X.PARQUET")],
                         ids=lambda n: f"names={n}")
def test_inputs_whose_output_names_collide_are_refused(bundle, tmp_path, names):
    for k, n in enumerate(names):
        put(tmp_path / "in" / n, range(4 * k, 4 * k + 4))
    if len(os.listdir(tmp_path / "in")) < len(names):
        pytest.skip("a case-insensitive file system keeps one of these names")
    r = run("score", "--model", bundle, "-i", tmp_path / "in", "-o", f"{tmp_path}/out/", *NP)
    assert r.exit_code == 2 and "would both be written to" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_same_file_name_from_two_inputs_is_refused(bundle, tmp_path):
    put(tmp_path / "a/part.parquet", range(0, 4))
    put(tmp_path / "b/part.parquet", range(4, 8))
    r = run("score", "--model", bundle, "-i", tmp_path / "a", "-i", tmp_path / "b", "-o", f"{tmp_path}/out/", *NP)
    assert r.exit_code == 2 and "would both be written to" in r.stderr, r.stderr


def test_success_marker_only_after_a_complete_run(bundle, model, tmp_path):
    put(tmp_path / "in/a.parquet", range(0, 8))
    write(list_table([SEQS[0]], ids=[99]).drop(["features"]), tmp_path / "in/b.parquet")  # no sequence column
    put(tmp_path / "in/c.parquet", range(8, 12))
    r = run("score", "--model", bundle, "-i", tmp_path / "in", "-o", f"{tmp_path}/out/", *NP)
    assert r.exit_code == 2 and not (tmp_path / "out/_SUCCESS").exists()
    (tmp_path / "in/b.parquet").unlink()
    r = run("score", "--model", bundle, "-i", tmp_path / "in", "-o", f"{tmp_path}/out/", "--resume", *NP)
    assert r.exit_code == 0, r.stderr
    assert_holds(tmp_path / "out", model, [tmp_path / "in"])


def test_two_real_runs_at_once(bundle, model, tmp_path):
    """Run A stops itself after taking the lock; run B is refused; A, continued, completes."""
    _cli.bundle = bundle
    put(tmp_path / "in/a.parquet", range(0, 8))
    cmd = [sys.executable, "-m", "rnnjit.cli", "score", "--model", bundle, "-i", tmp_path / "in",
           "-o", f"{tmp_path}/out/", *NP]
    a = subprocess.Popen(list(map(str, cmd)), cwd=ROOT, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "RNNJIT_KILL_AT": "start:1:STOP"})
    try:
        for _ in range(600):  # wait until A has stopped itself (its lock is there)
            if _stopped(a.pid):
                break
            assert a.poll() is None
            import time

            time.sleep(0.1)
        b = _cli(("-i", tmp_path / "in", "--resume"), tmp_path)
        assert b.returncode == 2 and "is being written by another run" in b.stderr, b.stderr
    finally:
        os.kill(a.pid, signal.SIGCONT)
        _, err = a.communicate(timeout=300)
    assert a.returncode == 0, err
    assert_holds(tmp_path / "out", model, [tmp_path / "in"])


def _stopped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


# ------------------------------------------------------------------ SIGTERM at every stage
STAGES = ["lock", "start", "read", "score", "write", "commit", "renamed", "manifest", "removed", "success"]


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: f"stage={s}")
def test_sigterm_at_every_stage(bundle, model, tmp_path, stage):
    """SIGTERM at each stage of a --resume run that also removes a stale output: 143, no litter, resumable."""
    put(tmp_path / "in/a.parquet", range(0, 8))
    put(tmp_path / "in/b.parquet", range(8, 16))
    put(tmp_path / "in/c.parquet", range(16, 24))
    args = ("score", "--model", bundle, "-i", tmp_path / "in", "-o", f"{tmp_path}/out/", "--batch-rows", "3", *NP)
    assert run(*args).exit_code == 0
    os.rename(tmp_path / "in/a.parquet", tmp_path / "in/d.parquet")
    put(tmp_path / "in/b.parquet", range(24, 32))  # changed: redone
    out = tmp_path / "out"
    before = snapshot(out)
    killpoints.arm(f"{stage}:1:TERM")
    try:
        r = run(*args, "--resume")
    finally:
        killpoints.arm(None)
    assert r.exit_code == 143, (r.exit_code, r.stderr)
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "terminated (SIGTERM)" in r.stderr
    if stage == "lock":  # before its checks end a run has not started: the directory is as it was
        assert snapshot(out) == before
    else:
        assert not (out / "_SUCCESS").exists()
    assert not (out / "_rnnjit.lock").exists()
    assert not [p.name for p in out.rglob("*") if "rnnjit-tmp" in p.name]
    for p in out.rglob("*.parquet"):
        pq.read_table(p)  # every file there reads whole
    r = run(*args, "--resume")
    assert r.exit_code == 0, r.stderr
    assert_holds(out, model, [tmp_path / "in"])


def test_sigterm_during_model_loading_is_exit_143(bundle, tmp_path, monkeypatch):
    """Before any output is opened: exit 143 and nothing written."""
    put(tmp_path / "in/a.parquet", range(0, 4))
    real = rnnjit.load

    def load_then_term(*a, **kw):
        m = real(*a, **kw)
        os.kill(os.getpid(), signal.SIGTERM)
        return m

    monkeypatch.setattr(rnnjit, "load", load_then_term)
    r = run("score", "--model", bundle, "-i", tmp_path / "in", "-o", f"{tmp_path}/out/", *NP)
    assert r.exit_code == 143 and not (tmp_path / "out").exists(), r.stderr


def test_overwrite_refuses_a_directory_rnnjit_did_not_write(bundle, tmp_path):
    """--overwrite removes what is not this run's output: only in a directory with rnnjit's manifest."""
    put(tmp_path / "in/a.parquet", range(0, 4))
    (tmp_path / "home").mkdir()
    (tmp_path / "home/thesis.tex").write_text("years of work\n")
    before = snapshot(tmp_path / "home")
    r = run("score", "--model", bundle, "-i", tmp_path / "in", "-o", f"{tmp_path}/home/", "--overwrite", *NP)
    assert r.exit_code == 2 and "that no rnnjit run wrote" in r.stderr, r.stderr
    assert snapshot(tmp_path / "home") == before
