"""A dataset output: one output file per input file, under the same relative path.

``in/label=0/part-3.parquet`` is scored to ``out/label=0/part-3.parquet``
(``.csv``/``.jsonl`` for those formats), so outputs line up with inputs and
hive partition folders are kept. The directory's contract (what a nightly job
relies on):

- its manifest (`rnnjit.io.manifest`) records the input root(s) and, per
  output, its input's relative path and content fingerprint;
- after a run that exits 0 it holds exactly one output per current input file
  and ``_SUCCESS``: outputs whose inputs are gone are removed (the manifest
  that lists them for removal is written first, so a crash in between leaves a
  directory ``--resume`` can finish);
- ``resume`` against a directory holding another input's output (another root,
  files the manifest does not know) refuses and touches nothing;
  ``overwrite`` means "this run's output and nothing else";
- one run at a time holds it (`_Lock`); ``_SUCCESS`` is removed when a run
  starts and written last;
- checks before anything is written: no input file inside the directory, no
  two inputs with the same output name, no symbolic link inside it (a run
  writes and deletes only inside its directory).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from contextlib import contextmanager
from dataclasses import asdict

import pyarrow as pa
import pyarrow.fs as pafs

from rnnjit.errors import InputError
from rnnjit.io import killpoints
from rnnjit.io.dataset import PARQUET_EXTENSIONS, footer_hash, is_hidden
from rnnjit.io.fs import _HOST, Location, _pid_alive, is_uri, remove_stale_temps, resolve, split_query, store_hint
from rnnjit.io.manifest import MANIFEST, VERSION, Manifest, safe_rel
from rnnjit.io.signals import held
from rnnjit.io.targets import FORMAT_EXT, OutputExistsError

LOCK = "_rnnjit.lock"
SUCCESS = "_SUCCESS"
_OURS = (MANIFEST, LOCK, SUCCESS)


def output_rel(rel: str, fmt: str) -> str:
    """The output's path for an input file's relative path: same folders, the format's extension."""
    low = rel.lower()
    for ext in PARQUET_EXTENSIONS:
        if low.endswith(ext):
            return rel[: -len(ext)] + FORMAT_EXT[fmt]
    return rel + FORMAT_EXT[fmt]


def fingerprint(model, plan, fmt: str, extra: dict) -> dict:
    """What must not change between a run and its ``--resume``: model weights, options, format.

    The engine and thread count are left out: they do not change the scores
    beyond float rounding.
    """
    h = hashlib.sha256()
    for k in sorted(getattr(model, "weights", {}) or {}):
        h.update(k.encode())
        h.update(model.weights[k].tobytes())
    h.update(repr(model).encode())
    opts = {k: v for k, v in asdict(plan.options).items() if k not in ("engine", "threads")}
    return {
        "model": h.hexdigest()[:32],
        "options": json.loads(json.dumps(opts, default=str)),
        "columns": list(plan.columns),
        "format": fmt,
        **extra,
    }


def input_root(text, filesystem=None) -> str:
    """An input as the manifest records it: a local path absolute with links resolved, a URI without its query."""
    text = os.fspath(text) if not isinstance(text, str) else text
    if filesystem is not None:
        return text.rstrip("/") or "/"
    if is_uri(text):
        return split_query(text)[0].rstrip("/")
    return os.path.realpath(text)


def _inside(path: str, root: str) -> bool:
    root = root.rstrip("/")
    return path == root or path.startswith(root + "/")


# --------------------------------------------------------------------------- the lock
class _Lock:
    """``_rnnjit.lock``: created exclusively, holding this run's host and pid.

    A lock left by a dead process of this host is taken over; any other is
    refused. On a local disk creation is atomic (``O_CREAT|O_EXCL``); on an
    object store it is a check then a write, which narrows the window for two
    runs but cannot close it (see the README's "Reliability").
    """

    def __init__(self, directory: Location):
        self.loc = directory.join(LOCK)
        self.body = json.dumps({"host": _HOST, "pid": os.getpid(), "started": time.time()}).encode()
        self.mine = False

    def _create(self) -> bool:
        if self.loc.local:
            try:
                fd = os.open(self.loc.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as fh:
                fh.write(self.body)
            return True
        if self.loc.info().type != pafs.FileType.NotFound:
            return False
        with self.loc.fs.open_output_stream(self.loc.path) as fh:
            fh.write(self.body)
        return True

    def _holder(self) -> dict | None:
        try:
            if self.loc.local and stat.S_ISLNK(os.lstat(self.loc.path).st_mode):
                return None
            with self.loc.fs.open_input_stream(self.loc.path) as fh:
                doc = json.loads(fh.read(4096).decode("utf-8"))
            return doc if isinstance(doc, dict) and isinstance(doc.get("pid"), int) else None
        except FileNotFoundError:
            return {}
        except (pa.ArrowException, OSError, ValueError):
            return None

    def acquire(self) -> None:
        for _ in range(3):
            with held():
                self.mine = self._create()
            if self.mine:
                return
            holder = self._holder()
            if holder == {}:  # released between the two calls
                continue
            if holder is None:
                raise InputError(
                    f"output directory {self.loc.parent().uri!r} has a lock file {LOCK!r} rnnjit cannot read; "
                    "if no run is writing there, remove it and run again"
                )
            pid, host = holder["pid"], holder.get("host")
            if host == _HOST and not _pid_alive(pid):
                self._take_over(holder)
                continue
            raise InputError(
                f"output directory {self.loc.parent().uri!r} is being written by another run (pid {pid} on "
                f"{host}); wait for it to finish, or if it is gone remove {self.loc.uri!r}"
            )
        raise InputError(f"cannot take the lock {self.loc.uri!r}: other runs keep taking it; try again")

    def _take_over(self, stale: dict) -> None:
        """Remove a dead run's lock, unless another run replaced it meanwhile."""
        if self._holder() != stale:
            return
        try:
            self.loc.fs.delete_file(self.loc.path)
        except (FileNotFoundError, OSError, pa.ArrowException):
            pass

    def release(self) -> None:
        if self.mine:
            self.mine = False
            try:
                self.loc.fs.delete_file(self.loc.path)
            except (FileNotFoundError, OSError, pa.ArrowException):
                pass


# --------------------------------------------------------------------------- the directory
class OutputDir:
    """A dataset output directory being written by this run (see the module docstring).

    Use as ``with OutputDir(...).opened(files, overwrite=..., resume=...) as out``:
    then ``out.todo`` lists ``(input file, output rel, footer)`` to score,
    ``out.commit_file`` records each, and ``out.finish()`` removes what this run
    replaces and writes ``_SUCCESS``.
    """

    def __init__(self, output, filesystem, fmt: str, fp: dict, roots: list[str]):
        text = os.fspath(output) if not isinstance(output, str) else output
        path, query = split_query(text) if is_uri(text) else (text, "")
        self.loc = resolve((path.rstrip("/") or "/") + query, filesystem)
        self.fmt = fmt
        self.manifest = Manifest(self.loc, fp, roots)
        self.lock = _Lock(self.loc)
        self.todo: list[tuple] = []
        self.done_rows = 0
        self.done_before = 0
        self.removed = 0

    @property
    def uri(self) -> str:
        return self.loc.uri.rstrip("/") + "/"

    # ------------------------------------------------------------------ checks before anything is written
    def _check_inputs(self, files) -> dict[str, str]:
        """Output rel per input rel; refuses inputs inside the directory and colliding output names."""
        root = os.path.realpath(self.loc.path) if self.loc.local else self.loc.path
        by_name: dict[str, object] = {}
        out: dict[str, str] = {}
        for f in files:
            if type(f.loc.fs) is type(self.loc.fs):
                path = os.path.realpath(f.loc.path) if f.loc.local else f.loc.path
                if _inside(path, root):
                    raise InputError(
                        f"input file {f.uri!r} is inside the output directory {self.uri!r}; the run would replace "
                        "it with its own scores; write the output to another directory"
                    )
            rel = output_rel(f.rel, self.fmt)
            other = by_name.get(rel.casefold())
            if other is not None:
                raise InputError(
                    f"input files {other.uri!r} and {f.uri!r} would both be written to {self.loc.join(rel).uri!r} "
                    "(one output per input file, same relative path); rename one of them, or score them into "
                    "separate directories"
                )
            by_name[rel.casefold()] = f
            out[f.rel] = rel
        return out

    def _listing(self) -> list[str]:
        """Relative paths of the files in the directory; a symbolic link inside it is refused."""
        if not self.loc.local:
            infos = self.loc.fs.get_file_info(pafs.FileSelector(self.loc.path, recursive=True))
            base = self.loc.path.rstrip("/")
            return [i.path[len(base):].lstrip("/") for i in infos if i.type == pafs.FileType.File]
        rels = []
        for dirpath, dirnames, filenames in os.walk(self.loc.path, followlinks=False):
            for n in dirnames + filenames:
                p = os.path.join(dirpath, n)
                if os.path.islink(p):
                    raise InputError(
                        f"output directory {self.uri!r} holds a symbolic link {os.path.relpath(p, self.loc.path)!r} "
                        f"(to {os.readlink(p)!r}); rnnjit writes and deletes only inside its output directory; "
                        "remove the link, or write to another directory"
                    )
            rels += [os.path.relpath(os.path.join(dirpath, n), self.loc.path).replace(os.sep, "/") for n in filenames]
        return rels

    def _plan(self, files, overwrite: bool, resume: bool) -> None:
        expected = self._check_inputs(files)
        wanted = {rel.casefold() for rel in expected.values()}
        data = [r for r in self._listing() if not is_hidden(r) and r not in _OURS]
        man = self.manifest
        doc = man.read() if resume or not overwrite else None
        if overwrite:  # this run's output and nothing else
            if data and not self.loc.join(MANIFEST).info().type == pafs.FileType.File:
                raise InputError(
                    f"output directory {self.uri!r} holds {len(data)} file(s) that no rnnjit run wrote (it has no "
                    f"{MANIFEST}), e.g. {data[0]!r}; overwrite=True replaces only a directory rnnjit wrote; empty it "
                    "first, or choose another directory"
                )
            man.remove = [r for r in data if r.casefold() not in wanted]
        elif not resume:
            if data or doc is not None:
                hint, of = "", ""
                if doc is not None and doc.get("version") == VERSION and sorted(doc["inputs"]) == sorted(man.inputs):
                    hint, of = "pass resume=True to finish it, ", " of this input"
                raise OutputExistsError(
                    f"output directory {self.uri!r} already holds {len(data)} output file(s){of}; {hint}pass overwrite=True "
                    "to make it hold this run's output only, or choose another directory"
                )
        elif doc is None:
            if data:
                raise InputError(
                    f"output directory {self.uri!r} holds {len(data)} file(s) but no rnnjit manifest, so resume=True "
                    "cannot tell what they are; pass overwrite=True to replace them, or choose another directory"
                )
        else:
            self._resume_from(doc, expected, data)
        if resume:
            for f in files:
                footer = footer_hash(f)
                if man.done(f, footer) and self.loc.join(expected[f.rel]).info().type == pafs.FileType.File:
                    self.done_before += 1
                    self.done_rows += man.files[f.rel]["rows"]
                else:
                    man.files.pop(f.rel, None)
                    self.todo.append((f, expected[f.rel], footer))
        else:
            self.todo = [(f, expected[f.rel], None) for f in files]

    def _resume_from(self, doc: dict, expected: dict[str, str], data: list[str]) -> None:
        man = self.manifest
        if doc.get("version") != VERSION:
            raise InputError(
                f"output directory {self.uri!r} was written by another rnnjit version (manifest version "
                f"{doc.get('version')!r}, this one writes {VERSION}); pass overwrite=True to score it again"
            )
        if doc["fingerprint"] != man.fingerprint:
            old, new = doc["fingerprint"], man.fingerprint
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise InputError(
                f"the output directory was written by a run with another {', '.join(diff)}; resume=True would mix "
                "two runs' scores; rerun with the same model and options, or pass overwrite=True to start over"
            )
        if sorted(doc["inputs"]) != sorted(man.inputs):  # the order they were given in does not matter
            raise InputError(
                f"output directory {self.uri!r} holds the scores of {', '.join(doc['inputs']) or 'nothing'}; this "
                f"run reads {', '.join(man.inputs)}; resume=True would mix the two; write to a new directory, or pass "
                "overwrite=True to make it hold this run's output only"
            )
        for rel, rec in doc["files"].items():
            if rec["output"] != output_rel(rel, self.fmt):
                raise man._bad(f"entry {rel!r} names output {rec['output']!r}, expected {output_rel(rel, self.fmt)!r}")
        known = {r.casefold() for r in expected.values()} | {r.casefold() for r in doc.get("remove", [])}
        known |= {rec["output"].casefold() for rec in doc["files"].values()}
        stray = [r for r in data if r.casefold() not in known]
        if stray:
            raise InputError(
                f"output directory {self.uri!r} holds {stray[0]!r}, which its manifest does not know; resume=True "
                "touches only files it wrote; move it away, or pass overwrite=True to make the directory hold this "
                "run's output only"
            )
        wanted = {r.casefold() for r in expected.values()}
        man.files = {rel: rec for rel, rec in doc["files"].items() if rel in expected}
        gone = [rec["output"] for rel, rec in doc["files"].items() if rel not in expected]
        man.remove = sorted({r for r in [*doc.get("remove", []), *gone] if r.casefold() not in wanted})

    # ------------------------------------------------------------------ the run
    @contextmanager
    def opened(self, files, *, overwrite: bool, resume: bool):
        """Lock, check, clear ``_SUCCESS`` and write the starting manifest; release the lock at the end."""
        try:
            info = self.loc.info()
        except (pa.ArrowException, OSError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"cannot open output directory {self.uri!r}: {msg}; "
                             f"{store_hint(exc) or 'check the path and its permissions'}") from exc
        if info.type == pafs.FileType.File:
            raise InputError(
                f"output {self.loc.uri!r} is a file but a dataset output is a directory; give a directory name "
                "(ending in /), or drop output_layout='dataset'"
            )
        if self.loc.local and os.path.islink(self.loc.path.rstrip("/")) and not os.path.isdir(self.loc.path):
            raise InputError(f"output {self.loc.uri!r} is a symbolic link to nothing; remove it or give a directory")
        self._check_inputs(files)  # before the directory is created
        if info.type == pafs.FileType.NotFound:
            self.loc.fs.create_dir(self.loc.path, recursive=True)
        self.lock.acquire()
        started = False
        try:
            killpoints.reach("lock")
            self._plan(files, overwrite, resume)  # a refusal touches nothing
            started = True
            self._delete(SUCCESS)
            self.manifest.save()
            remove_stale_temps(self.loc, recursive=True)
            killpoints.reach("start")
            yield self
        except BaseException:
            if started:
                self._delete(SUCCESS)  # a run interrupted after it wrote _SUCCESS did not complete
            raise
        finally:
            self.lock.release()

    def target(self, rel: str) -> Location:
        """Where an output goes; its folders are created here, inside the directory."""
        loc = self.loc.join(rel)
        loc.fs.create_dir(loc.parent().path, recursive=True)
        if loc.local and not _inside(os.path.realpath(loc.parent().path), os.path.realpath(self.loc.path)):
            raise InputError(f"output folder {loc.parent().uri!r} leads outside {self.uri!r} (a symbolic link); "
                             "remove the link")
        return loc

    def commit_file(self, f, footer: str, rel: str, rows: int) -> None:
        """Record ``f``'s committed output (``footer``: its footer hash, taken before it was read)."""
        self.manifest.record(f, footer, rel, rows)

    def finish(self) -> None:
        """Remove what this run replaces, rewrite the manifest, then write ``_SUCCESS``."""
        for rel in self.manifest.remove:
            if self._delete(rel):
                self.removed += 1
            killpoints.reach("removed")
        self.manifest.remove = []
        self.manifest.save()
        loc = self.loc.join(SUCCESS)
        if loc.local:
            os.close(os.open(loc.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666))
        else:
            with loc.fs.open_output_stream(loc.path):
                pass
        killpoints.reach("success")

    def _delete(self, rel: str) -> bool:
        """Delete one file inside the directory (never through a link); empty folders it leaves go too."""
        if not safe_rel(rel):
            return False
        loc = self.loc.join(rel)
        try:
            if loc.local:
                if not stat.S_ISREG(os.lstat(loc.path).st_mode):
                    return False
                os.unlink(loc.path)
                parent = os.path.dirname(loc.path)
                while _inside(parent, self.loc.path) and parent.rstrip("/") != self.loc.path.rstrip("/"):
                    os.rmdir(parent)  # raises when not empty
                    parent = os.path.dirname(parent)
                return True
            loc.fs.delete_file(loc.path)
            return True
        except FileNotFoundError:
            return False
        except OSError:
            return not os.path.lexists(loc.path) if loc.local else False
        except pa.ArrowException:
            return False
