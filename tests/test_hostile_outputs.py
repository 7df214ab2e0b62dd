"""The hostile-output catalogue (issue #20 items 5, 6 and 10): planted links, tampered manifests, file modes.

Someone who can write into an output directory (a shared ``/data/scores/``)
plants links and edits files before another user's run. Each case asserts that
the run writes, deletes and follows nothing outside its output, and that a
refusal is one ``error:`` line, exit 2, no traceback.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cli_helpers import list_table, make_bundle, random_sequences, run, write

from rnnjit.io.fs import _HOST
from rnnjit.io.manifest import MANIFEST

NP = ("--engine", "numpy", "-q")
SEQS = random_sequences(8, 3, seed=20)
VICTIM = b"precious, not Parquet\n"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("hostile-out-bundle"))


def _inputs(d: Path) -> Path:
    for k in range(2):
        p = d / "in" / f"label={k}" / "part.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        write(list_table(SEQS[4 * k: 4 * k + 4], ids=list(range(4 * k, 4 * k + 4))), p)
    return d / "in"


def _victim(d: Path) -> Path:
    v = d / "elsewhere" / "victim.parquet"
    v.parent.mkdir(parents=True, exist_ok=True)
    v.write_bytes(VICTIM)
    return v


def _one_error_line(r) -> str:
    assert r.exit_code == 2, (r.exit_code, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    return lines[0]


# ------------------------------------------------------------------ item 5: temporary names
def test_links_planted_under_future_temporary_names_are_not_followed(bundle, tmp_path):
    """Links named as this run's temporary file (every pid near ours) point at a victim: it stays intact."""
    src = _inputs(tmp_path)
    victim = _victim(tmp_path)
    out = tmp_path / "shared"
    out.mkdir()
    pid = os.getpid()
    for p in range(max(pid - 50, 2), pid + 50):
        for name in ("y.parquet", MANIFEST):
            os.symlink(victim, out / f".{name}.rnnjit-tmp-{p}-{_HOST}")
            os.symlink(victim, out / f".{name}.rnnjit-tmp-{p}")
    r = run("score", "--model", bundle, "-i", src / "label=0/part.parquet", "-o", out / "y.parquet", *NP)
    assert r.exit_code == 0, r.stderr
    assert victim.read_bytes() == VICTIM
    assert not (out / "y.parquet").is_symlink() and pq.read_table(out / "y.parquet").num_rows == 4


def test_stale_temp_clean_up_removes_only_its_own_files(bundle, tmp_path):
    """A dead pid's temporary-looking link, or another user's file, is left alone; a real leftover goes."""
    src = _inputs(tmp_path)
    victim = _victim(tmp_path)
    out = tmp_path / "shared"
    out.mkdir()
    dead = _dead_pid()
    link = out / f".y.parquet.rnnjit-tmp-{dead}-{_HOST}-abcdefgh"
    os.symlink(victim, link)
    ours = out / f".y.parquet.rnnjit-tmp-{dead}-{_HOST}-ijklmnop"
    ours.write_bytes(b"a dead run's leftover")
    theirs = out / f".z.parquet.rnnjit-tmp-{dead}-{_HOST}-qrstuvwx"
    theirs.write_bytes(b"another user's file")
    if os.getuid() == 0:
        os.chown(theirs, 65534, 65534)
    r = run("score", "--model", bundle, "-i", src / "label=0/part.parquet", "-o", out / "y.parquet", *NP)
    assert r.exit_code == 0, r.stderr
    assert link.is_symlink() and victim.read_bytes() == VICTIM
    assert not ours.exists()
    assert theirs.exists() == (os.getuid() == 0)  # as root the file is another user's; else it was ours


def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ------------------------------------------------------------------ item 6: links inside the output directory
@pytest.mark.parametrize("where", ["partition folder", "output file", "deeper folder"])
def test_a_link_inside_the_output_directory_is_refused(bundle, tmp_path, where):
    src = _inputs(tmp_path)
    victim = _victim(tmp_path)
    out = tmp_path / "out"
    stale = victim.parent / f".part.parquet.rnnjit-tmp-{_dead_pid()}-{_HOST}-abcdefgh"
    stale.write_bytes(VICTIM)  # a temp-looking file outside: the clean-up must not reach it
    out.mkdir()
    if where == "partition folder":
        os.symlink(victim.parent, out / "label=0")
    elif where == "output file":
        (out / "label=0").mkdir()
        os.symlink(victim, out / "label=0" / "part.parquet")
    else:
        (out / "label=1").mkdir()
        os.symlink(victim.parent, out / "label=1" / "sub")
    for extra in ((), ("--overwrite",), ("--resume",)):
        r = run("score", "--model", bundle, "-i", src, "-o", f"{out}/", *extra, *NP)
        assert "holds a symbolic link" in _one_error_line(r)
        assert victim.read_bytes() == VICTIM and stale.read_bytes() == VICTIM
        assert sorted(p.name for p in victim.parent.iterdir()) == sorted([victim.name, stale.name])


# ------------------------------------------------------------------ item 10: manifests and modes
def _scored(bundle, tmp_path) -> tuple[Path, Path]:
    src = _inputs(tmp_path)
    out = tmp_path / "out"
    assert run("score", "--model", bundle, "-i", src, "-o", f"{out}/", *NP).exit_code == 0
    return src, out


def _edit(out: Path, change) -> None:
    doc = json.loads((out / MANIFEST).read_text())
    change(doc)
    (out / MANIFEST).write_text(json.dumps(doc))


TAMPERED = [
    ("output leaves the directory", lambda doc: doc["files"]["label=0/part.parquet"].update(output="../../etc/passwd")),
    ("output names another file", lambda doc: doc["files"]["label=0/part.parquet"].update(
        output="label=1/part.parquet")),
    ("absolute output", lambda doc: doc["files"]["label=0/part.parquet"].update(output="/etc/passwd")),
    ("remove list leaves the directory", lambda doc: doc.update(remove=["../elsewhere/victim.parquet"])),
    ("files is a list", lambda doc: doc.update(files=[])),
    ("size is text", lambda doc: doc["files"]["label=0/part.parquet"].update(size="12")),
]


@pytest.mark.parametrize("case", TAMPERED, ids=[c[0] for c in TAMPERED])
def test_a_tampered_manifest_is_refused_by_resume(bundle, tmp_path, case):
    src, out = _scored(bundle, tmp_path)
    victim = _victim(tmp_path)
    (out / "label=0/part.parquet").unlink()  # its output is gone: --resume must redo it, not trust the entry
    _edit(out, case[1])
    r = run("score", "--model", bundle, "-i", src, "-o", f"{out}/", "--resume", *NP)
    assert "manifest" in _one_error_line(r)
    assert victim.read_bytes() == VICTIM
    r = run("score", "--model", bundle, "-i", src, "-o", f"{out}/", "--overwrite", *NP)
    assert r.exit_code == 0 and (out / "label=0/part.parquet").is_file() and victim.read_bytes() == VICTIM


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe", b'{"version": 2}'],
                         ids=lambda c: f"content={c!r}")
def test_a_malformed_manifest_is_one_line(bundle, tmp_path, content):
    src, out = _scored(bundle, tmp_path)
    (out / MANIFEST).write_bytes(content)
    for extra in ((), ("--resume",)):
        _one_error_line(run("score", "--model", bundle, "-i", src, "-o", f"{out}/", *extra, *NP))


def test_overwrite_keeps_the_mode_of_the_file_it_replaces(bundle, tmp_path):
    src = _inputs(tmp_path)
    one = tmp_path / "one.parquet"
    args = ("score", "--model", bundle, "-i", src / "label=0/part.parquet", *NP)
    assert run(*args, "-o", one).exit_code == 0
    os.chmod(one, 0o600)
    assert run(*args, "-o", one, "--overwrite").exit_code == 0
    assert stat.S_IMODE(os.stat(one).st_mode) == 0o600
    out = tmp_path / "out"
    assert run("score", "--model", bundle, "-i", src, "-o", f"{out}/", *NP).exit_code == 0
    os.chmod(out / "label=1/part.parquet", 0o640)
    assert run("score", "--model", bundle, "-i", src, "-o", f"{out}/", "--overwrite", *NP).exit_code == 0
    assert stat.S_IMODE(os.stat(out / "label=1/part.parquet").st_mode) == 0o640


def test_a_new_output_gets_the_umasks_mode(bundle, tmp_path):
    src = _inputs(tmp_path)
    from rnnjit.io import fs

    old = os.umask(0o027)
    fs._UMASK.clear()
    try:
        assert run("score", "--model", bundle, "-i", src, "-o", f"{tmp_path}/out/", *NP).exit_code == 0
        assert run("score", "--model", bundle, "-i", src / "label=0/part.parquet", "-o",
                   tmp_path / "one.csv", *NP).exit_code == 0
    finally:
        os.umask(old)
        fs._UMASK.clear()
    for p in [tmp_path / "out/label=0/part.parquet", tmp_path / "out" / MANIFEST, tmp_path / "one.csv"]:
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o640, p


def test_a_malformed_kill_point_is_one_line(bundle, tmp_path, monkeypatch):
    from rnnjit.io import killpoints

    src = _inputs(tmp_path)
    monkeypatch.setenv("RNNJIT_KILL_AT", "read:1:FOO")
    killpoints._parsed = False
    try:
        r = run("score", "--model", bundle, "-i", src, "-o", tmp_path / "o.parquet", *NP)
    finally:
        monkeypatch.delenv("RNNJIT_KILL_AT")
        killpoints.arm(None)
    assert "RNNJIT_KILL_AT" in _one_error_line(r)
    assert not (tmp_path / "o.parquet").exists()
