"""Where files live: local paths and the URIs `pyarrow.fs` understands.

``--input``, ``--output`` and ``--model`` accept a local path or a URI
(``file://``, ``s3://``, ``gs://``, ``hdfs://``, ``abfs://``, as far as the
installed pyarrow was built with them), or a path on a filesystem object given
through the library API (any `pyarrow.fs.FileSystem`, e.g. an fsspec one wrapped
in ``pyarrow.fs.PyFileSystem(FSSpecHandler(...))``).

Commit by rename: on a local disk and HDFS ``move`` is an atomic rename. On
object stores (S3, GCS, Azure) pyarrow's ``move`` is a server-side copy, then a
delete: the final object still appears whole or not at all (an object store
never shows a half-written object), but a crash between the copy and the delete
leaves the temporary object behind; the next run in that directory removes it
(`remove_stale_temps`).
"""

from __future__ import annotations

import os
import re
import socket
from contextlib import contextmanager
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs

from rnnjit.errors import InputError

TMP_MARK = ".rnnjit-tmp-"
_TMP_RE = re.compile(r"\.rnnjit-tmp-(\d+)(?:-(.+))?$")


@dataclass(frozen=True)
class Location:
    """A path on a filesystem; ``uri`` is what the user wrote (for messages)."""

    fs: pafs.FileSystem
    path: str
    uri: str

    @property
    def local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def join(self, *parts: str) -> "Location":
        path = "/".join([self.path.rstrip("/"), *[p.strip("/") for p in parts if p]])
        uri = "/".join([self.uri.rstrip("/"), *[p.strip("/") for p in parts if p]])
        return Location(self.fs, path, uri)

    def info(self) -> pafs.FileInfo:
        return self.fs.get_file_info(self.path)

    def parent(self) -> "Location":
        head = self.path.rstrip("/").rsplit("/", 1)[0] if "/" in self.path.rstrip("/") else ""
        uhead = self.uri.rstrip("/").rsplit("/", 1)[0] if "/" in self.uri.rstrip("/") else "."
        return Location(self.fs, head or "/", uhead)

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]


def is_uri(text: str) -> bool:
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", str(text)))


def resolve(location, filesystem: pafs.FileSystem | None = None) -> Location:
    """A `Location` for a local path, a URI, or a path on ``filesystem``.

    Raises `InputError` for a URI whose scheme this pyarrow cannot open.
    """
    if isinstance(location, Location):
        return location
    text = os.fspath(location) if not isinstance(location, str) else location
    if filesystem is not None:
        return Location(filesystem, text, text)
    if is_uri(text):
        try:
            fs, path = pafs.FileSystem.from_uri(text)
        except (pa.ArrowException, OSError, ValueError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(
                f"cannot open {text!r}: {msg}; rnnjit reads what pyarrow.fs reads (file://, s3://, gs://, "
                "hdfs://, abfs:// when this pyarrow was built with them); check the URI and credentials"
            ) from exc
        return Location(fs, path, text)
    return Location(pafs.LocalFileSystem(), os.path.abspath(text), text)


def local_path(location) -> str | None:
    """The local filesystem path of ``location``, or None when it is elsewhere."""
    loc = resolve(location)
    return loc.path if loc.local else None


def exists(loc: Location) -> bool:
    return loc.info().type != pafs.FileType.NotFound


def is_dir(loc: Location) -> bool:
    return loc.info().type == pafs.FileType.Directory


# --------------------------------------------------------------------------- temporary names
_HOST = socket.gethostname().replace("/", "_")


def temp_name(name: str) -> str:
    """Hidden temporary name for ``name``, carrying this process's pid and host."""
    return f".{name}{TMP_MARK}{os.getpid()}-{_HOST}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(directory: Location, recursive: bool = False) -> int:
    """Remove temporary files of dead runs of this host in ``directory``; returns how many.

    A temporary name carries the writer's pid and host: only files of this host
    whose pid is no longer alive are removed (another machine's run, or one
    still going, is left alone). Names from older versions (pid only) count as
    this host's.
    """
    try:
        infos = directory.fs.get_file_info(pafs.FileSelector(directory.path, recursive=recursive))
    except (FileNotFoundError, pa.ArrowException, OSError):
        return 0
    removed = 0
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        m = _TMP_RE.search(info.base_name)
        if not m or not info.base_name.startswith("."):
            continue
        pid, host = int(m.group(1)), m.group(2)
        if (host or _HOST) != _HOST or pid == os.getpid() or _pid_alive(pid):
            continue
        try:
            directory.fs.delete_file(info.path)
            removed += 1
        except (FileNotFoundError, OSError, pa.ArrowException):
            pass
    return removed


@contextmanager
def local_copy(location, filesystem: pafs.FileSystem | None = None):
    """A local path for ``location``: itself when local, else a temporary copy (removed after).

    For readers that need a real file (the bundle loader opens a path).
    """
    loc = resolve(location, filesystem)
    if loc.local:
        yield loc.path
        return
    import shutil
    import tempfile

    suffix = os.path.splitext(loc.path)[1]
    fd, tmp = tempfile.mkstemp(prefix="rnnjit-", suffix=suffix)
    try:
        try:
            with os.fdopen(fd, "wb") as out, loc.fs.open_input_stream(loc.path) as src:
                shutil.copyfileobj(src, out, 1 << 20)
        except FileNotFoundError as exc:
            raise InputError(f"{loc.uri!r} does not exist") from exc
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"cannot read {loc.uri!r}: {exc}") from exc
        yield tmp
    finally:
        os.unlink(tmp)
