"""Where numba cannot load, or cannot cache: each failure reproduced for real, in a subprocess.

- ``import numba`` raising OSError from a real dlopen of a corrupt libllvmlite.so;
- numba absent (an import hook in sitecustomize.py);
- a read-only install run with an unwritable HOME and no NUMBA_CACHE_DIR
  (``chmod -R a-w`` on a copy of the package; as root, the process runs with
  no capabilities so that the permission bits bind it as they bind a user);
- no writable cache directory anywhere, and a NUMBA_CACHE_DIR that cannot be written.

Each run must either score correctly or say in one line what to do.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from cli_helpers import list_table, make_bundle, random_sequences, write

import rnnjit

ROOT = Path(__file__).resolve().parent.parent
HIDE = ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH", "NUMBA_DISABLE_JIT")
needs_numba = pytest.mark.skipif(importlib.util.find_spec("numba") is None,
                                 reason="numba is not installed (the numba-free install)")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("port")
    bundle = make_bundle(d, cell="gru", input_size=3, hidden_size=4)
    seqs = random_sequences(7, 3, seed=11)
    src = write(list_table(seqs), d / "in.parquet")
    expected = rnnjit.load(bundle).predict(seqs, engine="numpy")[:, 0]
    return {"bundle": bundle, "in": src, "expected": expected}


def env_with(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in HIDE}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def rnnjit_cmd(*args, env, cwd, unprivileged=False, python_code=None):
    """Run ``python -m rnnjit ARGS`` (or ``python -c CODE``) from ``cwd`` with only ``env``."""
    cmd = [sys.executable, "-c", python_code] if python_code else [sys.executable, "-m", "rnnjit", *map(str, args)]
    if unprivileged and os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and setpriv is missing: cannot make permission bits bind")
        # root without capabilities: chmod a-w then holds for this process as for any user
        cmd = [setpriv, "--bounding-set=-all", "--inh-caps=-all", *cmd]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def stderr_lines(r):
    assert "Traceback" not in r.stderr, r.stderr
    return r.stderr.strip().splitlines()


def check_scores(path, expected, atol=1e-5):
    np.testing.assert_allclose(pq.read_table(path).column("score").to_numpy(), expected, atol=atol)


# ------------------------------------------------------------------ numba that cannot be imported
@pytest.fixture
def bad_dlopen(tmp_path):
    """A ``numba`` package earlier on the path whose import dlopens a corrupt libllvmlite.so (a real OSError)."""
    pkg = tmp_path / "hook" / "numba"
    pkg.mkdir(parents=True)
    (tmp_path / "hook" / "libllvmlite.so").write_bytes(b"\x7fELF this is not a shared object")
    (pkg / "__init__.py").write_text(
        "import ctypes, os\nctypes.CDLL(os.path.join(os.path.dirname(os.path.dirname(__file__)), 'libllvmlite.so'))\n"
    )
    return tmp_path / "hook"


@pytest.fixture
def no_numba(tmp_path):
    """A sitecustomize.py whose import hook makes numba absent."""
    hook = tmp_path / "nonumba"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import sys\n"
        "class _NoNumba:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('numba', 'llvmlite'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _NoNumba())\n"
    )
    return hook


def _pythonpath(*dirs):
    return os.pathsep.join(str(d) for d in (*dirs, ROOT))


def test_bad_dlopen_falls_back_with_one_warning(files, bad_dlopen, tmp_path):
    out = tmp_path / "s.parquet"
    env = env_with(PYTHONPATH=_pythonpath(bad_dlopen))
    r = rnnjit_cmd("score", "-m", files["bundle"], "-i", files["in"], "-o", out, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warning, summary = stderr_lines(r)
    assert warning.startswith("warning: the numba engine cannot be loaded: import numba failed (OSError: ")
    assert "libllvmlite.so" in warning and "using the numpy engine instead (exact, but slower)" in warning
    assert "pip install --force-reinstall numba llvmlite" in warning and "--engine numpy" in warning
    assert "engine numpy (1 thread)" in summary
    check_scores(out, files["expected"], atol=1e-6)


def test_bad_dlopen_engine_numba_is_an_error(files, bad_dlopen, tmp_path):
    out = tmp_path / "s.parquet"
    env = env_with(PYTHONPATH=_pythonpath(bad_dlopen))
    r = rnnjit_cmd("score", "-m", files["bundle"], "-i", files["in"], "-o", out, "--engine", "numba",
                   env=env, cwd=tmp_path)
    assert r.returncode == 2
    (line,) = stderr_lines(r)
    assert line.startswith("error: the numba engine cannot be loaded: import numba failed (OSError: ")
    assert "--engine numpy" in line
    assert not out.exists()
    r = rnnjit_cmd("verify", files["bundle"], "--engine", "numba", env=env, cwd=tmp_path)
    assert r.returncode == 2 and "--engine numpy" in r.stderr and len(stderr_lines(r)) == 1


def test_bad_dlopen_api_warns_once(files, bad_dlopen, tmp_path):
    code = f"""
import warnings, numpy as np, rnnjit
from rnnjit.engines import NumbaUnavailableWarning
m = rnnjit.load({str(files['bundle'])!r})
x = np.zeros((2, 3, 3), np.float32)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    a = m.predict(x)
    b = m.predict(x)
ours = [w for w in caught if issubclass(w.category, NumbaUnavailableWarning)]
assert len(ours) == 1 and len(caught) == 1, [str(w.message) for w in caught]
assert ours[0].filename == "<string>", ours[0].filename  # points at the caller's predict()
np.testing.assert_array_equal(a, m.predict(x, engine="numpy"))
try:
    m.predict(x, engine="numba")
except rnnjit.InputError as exc:
    print("error:", exc)
print("warning:", ours[0].message)
"""
    r = rnnjit_cmd(env=env_with(PYTHONPATH=_pythonpath(bad_dlopen)), cwd=tmp_path, python_code=code)
    assert r.returncode == 0, r.stderr
    err, warn = r.stdout.strip().splitlines()
    assert "OSError" in err and "engine='numpy'" in err
    assert "OSError" in warn and "exact, but slower" in warn


def test_numba_absent(files, no_numba, tmp_path):
    env = env_with(PYTHONPATH=_pythonpath(no_numba))
    out = tmp_path / "s.parquet"
    r = rnnjit_cmd("score", "-m", files["bundle"], "-i", files["in"], "-o", out, "--threads", "2",
                   env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warning, threads, summary = stderr_lines(r)
    assert warning.startswith("warning: the numba engine cannot be loaded: numba is not installed; ")
    assert "pip install numba" in warning
    assert threads == "warning: --threads 2 is not used: the numpy engine runs in one thread"
    assert "engine numpy (1 thread)" in summary
    check_scores(out, files["expected"], atol=1e-6)

    r = rnnjit_cmd("bench", "--rounds", "1", env=env, cwd=tmp_path)
    assert r.returncode == 2
    (line,) = stderr_lines(r)
    assert line.startswith("error: rnnjit bench times the numba engine, which cannot be loaded here: numba is not")

    r = rnnjit_cmd("verify", files["bundle"], env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (warning,) = stderr_lines(r)
    assert warning.startswith("warning: the numba engine cannot be loaded: numba is not installed; ")
    assert r.stdout.startswith("reference: ok") and "engine numpy" in r.stdout

    out2 = tmp_path / "s2.parquet"  # asking for numpy: no warning at all
    r = rnnjit_cmd("score", "-m", files["bundle"], "-i", files["in"], "-o", out2, "--engine", "numpy", "-q",
                   env=env, cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_numba_that_refuses_this_numpy(files, tmp_path):
    """numba checks numpy's version on import (ImportError); the fix is a matching pair, not a reinstall."""
    pkg = tmp_path / "hook" / "numba"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('raise ImportError("Numba needs NumPy 2.3 or less. Got NumPy 2.4.")\n')
    r = rnnjit_cmd("score", "-m", files["bundle"], "-i", files["in"], "-o", tmp_path / "s.parquet",
                   env=env_with(PYTHONPATH=_pythonpath(tmp_path / "hook")), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warning, _ = stderr_lines(r)
    assert "import numba failed (ImportError: Numba needs NumPy 2.3 or less. Got NumPy 2.4.)" in warning
    assert "install a numba that supports this numpy (`pip install -U numba`)" in warning
    check_scores(tmp_path / "s.parquet", files["expected"], atol=1e-6)


def test_python_dash_m_rnnjit(tmp_path):
    r = rnnjit_cmd("--version", env=env_with(PYTHONPATH=ROOT), cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == f"rnnjit {rnnjit.__version__}"


# ------------------------------------------------------------------ a read-only install
@pytest.fixture
def readonly_site(tmp_path):
    """The package laid out as installed, read-only, and an unwritable HOME."""
    site = tmp_path / "site"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "rnnjit", site / "rnnjit", ignore=skip)
    home = tmp_path / "home"
    home.mkdir()
    for d in (site, home):
        for p in [d, *d.rglob("*")]:
            p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    work = tmp_path / "work"
    work.mkdir()
    yield site, home, work
    for d in (site, home):
        for p in [d, *d.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


@needs_numba
def test_readonly_install_caches_in_a_private_temp_dir(files, readonly_site, tmp_path):
    site, home, work = readonly_site
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = env_with(PYTHONPATH=site, HOME=home, TMPDIR=tmp)
    for run in ("cold", "warm"):
        out = work / f"{run}.parquet"
        r = rnnjit_cmd("score", "-m", files["bundle"], "-i", files["in"], "-o", out, env=env, cwd=work,
                       unprivileged=True)
        assert r.returncode == 0, r.stderr
        (summary,) = stderr_lines(r)
        assert "engine numba" in summary
        check_scores(out, files["expected"])
        cache = tmp / f"rnnjit-numba-{os.getuid()}"
        assert sorted(p.suffix for p in cache.rglob("*.nbi")), "no numba index written in the temp cache"
        assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert not list(site.rglob("*.nbi")), "the read-only install was written to"


@needs_numba
def test_readonly_install_without_any_writable_dir_compiles_uncached(files, readonly_site, tmp_path):
    site, home, work = readonly_site
    tmp = tmp_path / "rotmp"
    tmp.mkdir()
    tmp.chmod(0o555)
    env = env_with(PYTHONPATH=site, HOME=home, TMPDIR=tmp)
    code = (  # tempfile.tempdir stands for a machine where no temporary directory is writable either
        f"import tempfile; tempfile.tempdir = {str(tmp)!r}; "
        "from rnnjit.engines import cache_plan; import sys; plan = cache_plan(); print(plan.source); "
        "from rnnjit.cli.app import main; sys.argv[1:] = " + repr(
            ["score", "-m", str(files["bundle"]), "-i", str(files["in"]), "-o", str(work / "s.parquet")]
        ) + "; main()"
    )
    r = rnnjit_cmd(env=env, cwd=work, unprivileged=True, python_code=code)
    tmp.chmod(0o755)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "none"
    (summary,) = stderr_lines(r)
    assert "engine numba" in summary
    check_scores(work / "s.parquet", files["expected"])


@needs_numba
@pytest.mark.parametrize("cache_dir", ["/dev/null/cache", "/proc/rnnjit-cache"])
def test_unwritable_numba_cache_dir_falls_back_and_names_it(files, readonly_site, tmp_path, cache_dir):
    """An unwritable NUMBA_CACHE_DIR is skipped for the next place: one warning line, still the numba engine."""
    site, home, work = readonly_site
    env = env_with(PYTHONPATH=site, HOME=home, TMPDIR=work, NUMBA_CACHE_DIR=cache_dir)
    out = work / "s.parquet"
    r = rnnjit_cmd("score", "-m", files["bundle"], "-i", files["in"], "-o", out, env=env, cwd=work, unprivileged=True)
    assert r.returncode == 0, r.stderr
    warning, summary = stderr_lines(r)
    assert warning.startswith(f"warning: numba cache directory not used: NUMBA_CACHE_DIR={cache_dir!r} cannot be written")
    assert "(temporary) instead" in warning  # the read-only HOME has no user cache
    assert "engine numba" in summary
    check_scores(out, files["expected"])


# ------------------------------------------------------------------ the order of cache places
def test_cache_order(tmp_path, monkeypatch):
    from rnnjit.numba_loader import choose_cache

    blocked = tmp_path / "a-file"
    blocked.write_text("")  # nothing can be created under a file, whoever runs the test
    kernels = tmp_path / "kernels"
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))

    mine = tmp_path / "mine"
    plan = choose_cache({"NUMBA_CACHE_DIR": str(mine)}, kernels_dir=blocked / "k")
    assert (plan.source, plan.path, plan.refused) == ("NUMBA_CACHE_DIR", str(mine), ())
    assert stat.S_IMODE(mine.stat().st_mode) == 0o700  # created private
    plan = choose_cache({"XDG_CACHE_HOME": str(tmp_path / "xdg")}, kernels_dir=kernels)
    assert (plan.source, plan.path) == ("next to the sources", str(kernels / "__pycache__"))
    plan = choose_cache({"XDG_CACHE_HOME": str(tmp_path / "xdg")}, kernels_dir=blocked / "k")
    assert (plan.source, plan.path) == ("user cache", str(tmp_path / "xdg" / "rnnjit" / "numba"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    plan = choose_cache({}, kernels_dir=blocked / "k")
    assert (plan.source, plan.path) == ("user cache", str(tmp_path / "home" / ".cache" / "rnnjit" / "numba"))
    plan = choose_cache({"XDG_CACHE_HOME": str(blocked)}, kernels_dir=blocked / "k")
    private = tmp_path / "tmp" / f"rnnjit-numba-{os.getuid()}"
    assert (plan.source, plan.path) == ("temporary", str(private))
    assert stat.S_IMODE(private.stat().st_mode) == 0o700


def test_temp_cache_that_others_can_write_is_refused(tmp_path, monkeypatch):
    """numba loads machine code from its cache: a temp dir someone else could plant files in is not used."""
    from rnnjit.numba_loader import choose_cache

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    planted = tmp_path / f"rnnjit-numba-{os.getuid()}"
    planted.mkdir()
    planted.chmod(0o777)
    plan = choose_cache({"XDG_CACHE_HOME": str(blocked)}, kernels_dir=blocked / "k")
    assert (plan.source, plan.path) == ("none", None)
    assert any("can be written by group and others (mode 0777)" in r for r in plan.refused)


def test_numba_cache_dir_others_can_write_is_not_used(tmp_path, monkeypatch):
    """NUMBA_CACHE_DIR (or XDG_CACHE_HOME) pointing at a directory others can write: skipped, and said why."""
    from rnnjit.numba_loader import choose_cache

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    plan = choose_cache({"NUMBA_CACHE_DIR": str(shared)}, kernels_dir=kernels)
    assert (plan.source, plan.path) == ("next to the sources", str(kernels / "__pycache__"))
    assert plan.refused == (f"NUMBA_CACHE_DIR={str(shared)!r} can be written by group and others (mode 0777)",)
    (tmp_path / "xdg" / "rnnjit" / "numba").mkdir(parents=True, mode=0o775)
    (tmp_path / "xdg" / "rnnjit" / "numba").chmod(0o775)
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    plan = choose_cache({"XDG_CACHE_HOME": str(tmp_path / "xdg")}, kernels_dir=blocked / "k")
    assert plan.source == "temporary" and "can be written by its group (mode 0775)" in plan.refused[0]


@pytest.mark.skipif(os.getuid() != 0, reason="giving a directory to another user needs root")
def test_numba_cache_dir_owned_by_another_user_is_not_used(tmp_path):
    from rnnjit.numba_loader import choose_cache

    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    plan = choose_cache({"NUMBA_CACHE_DIR": str(theirs)}, kernels_dir=kernels)
    assert plan.source == "next to the sources" and "is owned by another user (uid 65534)" in plan.refused[0]


# ------------------------------------------------------------------ the numba-free distribution
def test_slim_distribution_is_rnnjit_without_numba():
    """.ci/slim/pyproject.toml (rnnjit-slim): pyproject.toml's floors minus numba, and the same packages."""
    tomllib = pytest.importorskip("tomllib")
    main = tomllib.loads((ROOT / "pyproject.toml").read_text())
    slim = tomllib.loads((ROOT / ".ci" / "slim" / "pyproject.toml").read_text())
    deps = [d for d in main["project"]["dependencies"] if not re.match(r"numba\b", d)]
    assert slim["project"]["dependencies"] == deps
    numba_dep = [d for d in main["project"]["dependencies"] if re.match(r"numba\b", d)]
    assert slim["project"]["optional-dependencies"]["numba"] == numba_dep
    for key in ("packages", "package-dir"):
        assert slim["tool"]["setuptools"].get(key) == main["tool"]["setuptools"].get(key)
    assert slim["project"]["scripts"] == main["project"]["scripts"]
    for link in ("rnnjit",):
        assert (ROOT / ".ci" / "slim" / link).resolve() == (ROOT / link).resolve()
