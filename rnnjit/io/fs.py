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
import stat
from contextlib import contextmanager
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs

from rnnjit.errors import InputError

TMP_MARK = ".rnnjit-tmp-"
# pid, then host (older versions: pid only, or pid-host), then mkstemp's random characters
_TMP_RE = re.compile(r"\.rnnjit-tmp-(\d+)(?:-(.+?))?(?:-[a-z0-9_]{8})?$")


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


URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(text: str) -> bool:
    return bool(URI_RE.match(str(text)))


def split_query(uri: str) -> tuple[str, str]:
    """``(uri without its query, "?query" or "")``: ``s3://b/out/?endpoint_override=h`` is the folder ``out/``."""
    head, sep, query = str(uri).partition("?")
    return head, sep + query


def ends_in_slash(text: str) -> bool:
    """True for a name that says "directory": a trailing ``/``, before any URI query string."""
    text = str(text)
    if is_uri(text):
        text = split_query(text)[0]
    return text.endswith("/") or text.endswith(os.sep)


_SECRET_PARAMS = re.compile(r"((?:access_key|secret_key|session_token|sas_token|account_key)=)[^&]*", re.I)


def shown(uri: str) -> str:
    """A URI as messages show it: secrets in its query replaced by ``***``."""
    return _SECRET_PARAMS.sub(r"\1***", str(uri))


_CREDENTIALS = ("ACCESS_DENIED", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                "Forbidden", "HTTP status 403", "HTTP status 401", "No credentials", "credentials")
_CONNECTION = ("NETWORK_CONNECTION", "Could not connect", "Couldn't connect", "Connection refused",
               "Could not resolve host", "Couldn't resolve host", "curlCode", "timed out", "Timeout")


def store_hint(exc: BaseException) -> str | None:
    """The hint for a failure of the store itself (credentials, permissions, the endpoint), else None."""
    text = str(exc)
    if any(k in text for k in _CREDENTIALS):
        return "check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile) and the permissions"
    if "Permission denied" in text:
        return "check its permissions (and that this user may read it)"
    if any(k in text for k in _CONNECTION):
        return ("check the endpoint (AWS_ENDPOINT_URL, or ?endpoint_override=HOST:PORT&scheme=http in the URI) "
                "and that it is reachable")
    return None


def _from_uri(text: str) -> tuple[pafs.FileSystem, str]:
    """`pyarrow.fs.FileSystem.from_uri`, with glob characters allowed in the path (its parser refuses ``[``)."""
    head, query = split_query(text)
    scheme, rest = head.split("://", 1)
    cut = min((rest.find(c) for c in "*?[" if c in rest), default=-1)
    if cut < 0:
        return pafs.FileSystem.from_uri(text)
    slash = rest.rfind("/", 0, cut)
    if slash < 0:
        raise ValueError("a glob in the bucket or host name")
    fs, base = pafs.FileSystem.from_uri(f"{scheme}://{rest[:slash]}{query}")
    return fs, base.rstrip("/") + rest[slash:]


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
            fs, path = _from_uri(text)
        except (pa.ArrowException, OSError, ValueError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            hint = store_hint(exc) or (
                "rnnjit reads what pyarrow.fs reads (file://, s3://, gs://, hdfs://, abfs:// when this pyarrow was "
                "built with them); check the URI and credentials")
            raise InputError(f"cannot open {shown(text)!r}: {shown(msg)}; {hint}") from exc
        return Location(fs, path, split_query(text)[0])  # messages never show the query (it may hold keys)
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
_RAND = 8  # random characters that end a temporary name (mkstemp's count)


def temp_prefix(name: str) -> str:
    """The start of a temporary name for ``name``: hidden, then this process's pid and host.

    The pid and host let a later run tell a dead run's leftovers from a live
    one's; the name ends in random characters (`open_temp`), so it cannot be
    guessed and planted in advance.
    """
    return f".{name}{TMP_MARK}{os.getpid()}-{_HOST}-"


def open_temp(target: "Location"):
    """Create a temporary file beside ``target``; returns ``(location, binary file object)``.

    On a local disk the file is created by `tempfile.mkstemp` in the target's
    directory: an unpredictable name, created exclusively (``O_CREAT|O_EXCL``
    never follows a link planted under that name), mode 0600 until `finish_mode`,
    written through `rnnjit.io.streaming.StreamingFile`.
    Elsewhere (object stores: no links) the name carries a random token.
    """
    directory = target.parent()
    prefix = temp_prefix(target.name)
    if target.local:
        import tempfile

        from rnnjit.io.streaming import StreamingFile

        fd, path = tempfile.mkstemp(prefix=prefix, dir=directory.path)
        try:
            fh = StreamingFile(fd, path)  # a buffered file that gives its written pages back (rnnjit.io.streaming)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        return Location(target.fs, path, directory.join(os.path.basename(path)).uri), fh
    import secrets

    loc = directory.join(prefix + secrets.token_hex(_RAND // 2))
    return loc, loc.fs.open_output_stream(loc.path)


_UMASK: list[int] = []


def _umask() -> int:
    if not _UMASK:
        try:  # Linux: read it without changing it (os.umask would, for every thread)
            with open("/proc/self/status") as fh:
                _UMASK.append(next(int(ln.split()[1], 8) for ln in fh if ln.startswith("Umask:")))
        except (OSError, StopIteration, ValueError):
            old = os.umask(0o022)
            os.umask(old)
            _UMASK.append(old)
    return _UMASK[0]


def finish_mode(tmp: "Location", target: "Location") -> None:
    """Give a local temporary file the mode its rename will publish.

    The mode of the file it replaces (``--overwrite`` keeps a 0600 output
    0600), else the umask's for a new file, as ``open()`` would have made it.
    """
    if not tmp.local:
        return
    try:
        st = os.lstat(target.path)
        mode = stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None
    except FileNotFoundError:
        mode = None
    os.chmod(tmp.path, mode if mode is not None else 0o666 & ~_umask())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _own_dead_temp(info: pafs.FileInfo, local: bool) -> bool:
    """True for a temporary file that a dead run of this host, as this user, created."""
    m = _TMP_RE.search(info.base_name)
    if not m or not info.base_name.startswith("."):
        return False
    pid, host = int(m.group(1)), m.group(2)
    if (host or _HOST) != _HOST or pid == os.getpid() or _pid_alive(pid):
        return False
    if local:  # a regular file of ours, not a link someone planted under a temporary-looking name
        try:
            st = os.lstat(info.path)
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid()
    return True


def _walk_local(root: str, recursive: bool):
    """``FileInfo`` of the files under ``root`` without following symbolic links."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for n in filenames:
            yield pafs.FileInfo(os.path.join(dirpath, n), pafs.FileType.File)
        if not recursive:
            return


def remove_stale_temps(directory: Location, recursive: bool = False) -> int:
    """Remove temporary files of dead runs of this host in ``directory``; returns how many.

    A temporary name carries the writer's pid and host: only files of this host
    whose pid is no longer alive are removed (another machine's run, or one
    still going, is left alone). On a local disk only regular files owned by
    this user are removed, and no symbolic link is followed or removed: the
    clean-up touches only what an rnnjit run of this user created.
    """
    try:
        if directory.local:
            infos = list(_walk_local(directory.path, recursive))
        else:
            infos = directory.fs.get_file_info(pafs.FileSelector(directory.path, recursive=recursive))
    except (FileNotFoundError, pa.ArrowException, OSError):
        return 0
    removed = 0
    for info in infos:
        if info.type != pafs.FileType.File or not _own_dead_temp(info, directory.local):
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
