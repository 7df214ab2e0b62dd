"""Load the numba engine (`rnnjit.kernels`) with its on-disk cache in a writable place.

The kernels are compiled with ``cache=True`` (`rnnjit.kernels.config`), and
numba picks the cache directory when a function is *decorated*, that is when
`rnnjit.kernels` is imported. Left alone, numba tries ``NUMBA_CACHE_DIR``, then
``__pycache__`` next to the sources, then ``~/.cache/numba``, and raises
``RuntimeError: cannot cache function ...: no locator available`` when none is
writable: a root-owned install run by a user whose HOME is read-only (a
hardened batch container) could not score at all. So before importing the
kernels this module chooses, in order:

1. ``NUMBA_CACHE_DIR`` when set (numba applies it itself; the user's word wins);
2. ``__pycache__`` next to the kernel sources when writable (a normal install);
3. the user's cache directory, ``$XDG_CACHE_HOME/rnnjit/numba`` or
   ``~/.cache/rnnjit/numba``;
4. a private temporary directory, ``<tmp>/rnnjit-numba-<uid>`` (mode 0700 and
   owned by this user: numba loads machine code from it, so a directory that
   another user could write to is never used);
5. no cache: the kernels compile in every process (a few seconds).

numba unpickles the cache's index and loads the machine code it points to, so
a cache directory another user can write to lets that user run code in this
process. Every place is used only when it is a directory owned by this user,
not writable by group or others, and writable (`trust_problem`); the
directory next to the sources may instead share the sources' owner and
permissions (a cache there is no easier to plant than the code itself). A
place that fails is skipped for the next one; when the environment named it
(``NUMBA_CACHE_DIR``, ``XDG_CACHE_HOME``) or someone else owns it, one
`NumbaCacheWarning` per process says so. ``rnnjit bench`` reports the place
really used.

Only rnnjit's own kernels see choices 3-5 (numba's setting is restored after
the import); other numba code in the process keeps numba's defaults.

Any failure on the way (numba missing, ``import numba`` failing with
``OSError`` from loading libllvmlite on an old glibc, a cache error) raises
`NumbaLoadError`, which says what failed and how to fix it; `rnnjit.engines`
turns it into a fallback to the numpy engine or an error.
"""

from __future__ import annotations

import importlib
import os
import stat
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

KERNELS = "rnnjit.kernels"
KERNELS_DIR = Path(__file__).resolve().parent / "kernels"


class NumbaLoadError(Exception):
    """The numba engine cannot be loaded: ``reason`` says what failed, ``fix`` what to do."""

    def __init__(self, reason: str, fix: str):
        super().__init__(f"{reason}; {fix}")
        self.reason = reason
        self.fix = fix


class NumbaCacheWarning(RuntimeWarning):
    """A cache directory was not used (not trusted or not writable); the kernels use the next place."""


@dataclass(frozen=True)
class CachePlan:
    """Where the kernels' compiled code is cached: ``source`` names the rule, ``path`` the directory.

    ``refused`` holds one line per place that was skipped with a reason worth a warning.
    """

    source: str  # "NUMBA_CACHE_DIR" | "next to the sources" | "user cache" | "temporary" | "none"
    path: str | None
    refused: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"{self.path} ({self.source})" if self.path else "none (the kernels compile in every process)"


def trust_problem(path: Path, like: Path | None = None) -> str | None:
    """None when ``path`` is a cache directory safe to use, else why not (created 0700 when missing).

    Safe: a directory owned by this user that group and others cannot write,
    and that this user can write. With ``like`` (the kernel sources' folder),
    the owner and write bits of ``like`` are accepted instead.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.stat(path)
        if not stat.S_ISDIR(st.st_mode):
            return "is not a directory"
        mode = stat.S_IMODE(st.st_mode)
        ref = os.stat(like) if like is not None else None
        owner_ok = st.st_uid == os.getuid() or (ref is not None and st.st_uid == ref.st_uid)
        if not owner_ok:
            return f"is owned by another user (uid {st.st_uid})"
        extra = mode & 0o022 & ~(stat.S_IMODE(ref.st_mode) if ref is not None else 0)
        if extra:
            return f"can be written by {'group and others' if extra == 0o022 else 'others' if extra & 0o002 else 'its group'} (mode {mode:04o})"
        tempfile.TemporaryFile(dir=path).close()
    except OSError as exc:
        return f"cannot be written ({exc.strerror or exc})"
    return None


def user_cache_dir(environ=None) -> Path:
    """``$XDG_CACHE_HOME/rnnjit/numba``, else ``~/.cache/rnnjit/numba``."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rnnjit" / "numba"


def choose_cache(environ=None, kernels_dir: Path = KERNELS_DIR) -> CachePlan:
    """The first trusted, writable place of the order in the module docstring."""
    environ = os.environ if environ is None else environ
    refused: list[str] = []
    if environ.get("NUMBA_CACHE_DIR"):
        why = trust_problem(Path(environ["NUMBA_CACHE_DIR"]))
        if why is None:
            return CachePlan("NUMBA_CACHE_DIR", environ["NUMBA_CACHE_DIR"])
        refused.append(f"NUMBA_CACHE_DIR={environ['NUMBA_CACHE_DIR']!r} {why}")
    in_tree = kernels_dir / "__pycache__"
    if trust_problem(in_tree, like=kernels_dir) is None:  # a read-only install: silently the next place
        return CachePlan("next to the sources", str(in_tree), tuple(refused))
    user = user_cache_dir(environ)
    why = trust_problem(user)
    if why is None:
        return CachePlan("user cache", str(user), tuple(refused))
    if environ.get("XDG_CACHE_HOME") or "owned by" in why or "written by" in why:
        refused.append(f"the user cache {str(user)!r} {why}")
    tmp = Path(tempfile.gettempdir()) / f"rnnjit-numba-{os.getuid()}"
    why = trust_problem(tmp)
    if why is None:
        return CachePlan("temporary", str(tmp), tuple(refused))
    if "owned by" in why or "written by" in why:
        refused.append(f"the temporary cache {str(tmp)!r} {why}")
    return CachePlan("none", None, tuple(refused))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no message"
    if len(text) > 240:
        text = text[:237] + "..."
    return f"{type(exc).__name__}: {text}"


def _import_numba():
    try:
        import numba  # noqa: F401
        from numba.core import config
        from numba.core.dispatcher import Dispatcher
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("numba", "llvmlite"):
            raise NumbaLoadError(
                f"{exc.name.split('.')[0]} is not installed",
                "install it with `pip install numba`",
            ) from exc
        raise NumbaLoadError(f"import numba failed ({_one_line(exc)})", _REINSTALL) from exc
    except Exception as exc:  # OSError from dlopen of libllvmlite, numba's numpy-version ImportError, ...
        fix = _REINSTALL
        if isinstance(exc, ImportError) and "NumPy" in str(exc):  # "Numba needs NumPy 2.3 or less, got 2.4"
            fix = "install a numba that supports this numpy (`pip install -U numba`), or a numpy this numba supports"
        raise NumbaLoadError(f"import numba failed ({_one_line(exc)})", fix) from exc
    return config, Dispatcher


_REINSTALL = (
    "reinstall numba and llvmlite for this machine with `pip install --force-reinstall numba llvmlite` "
    "(on glibc older than 2.28 pip picks their manylinux2014 wheels)"
)


def load_kernels() -> tuple[ModuleType, CachePlan]:
    """Import numba and `rnnjit.kernels` with the cache placed by `choose_cache`.

    Returns the kernels module and the cache plan used. Raises `NumbaLoadError`.
    Call it once and keep the result (`rnnjit.engines` does, under a lock).
    """
    config, Dispatcher = _import_numba()
    plan = choose_cache()
    if plan.refused:
        used = plan.describe() if plan.path else "no cache (the kernels compile in every process)"
        warnings.warn(
            NumbaCacheWarning(
                f"numba cache directory not used: {'; '.join(plan.refused)}; numba would load machine code from it, "
                f"so rnnjit's kernels use {used} instead; point NUMBA_CACHE_DIR to a directory only you can write"
            ),
            stacklevel=2,
        )
    saved_dir, saved_enable = config.CACHE_DIR, Dispatcher.enable_caching
    try:
        if plan.source in ("user cache", "temporary"):
            config.CACHE_DIR = plan.path
        elif plan.source == "next to the sources":
            config.CACHE_DIR = ""  # numba's own first place (a refused NUMBA_CACHE_DIR is not used)
        elif plan.source == "none":
            config.CACHE_DIR = ""  # not a NUMBA_CACHE_DIR that was refused
            Dispatcher.enable_caching = lambda self: None  # decorate without a cache
        return importlib.import_module(KERNELS), plan
    except RuntimeError as exc:
        if "cannot cache function" not in str(exc):
            raise NumbaLoadError(f"the numba kernels failed to load ({_one_line(exc)})", _REINSTALL) from exc
        where = os.environ.get("NUMBA_CACHE_DIR")
        raise NumbaLoadError(
            f"numba found no writable cache directory ({_one_line(exc)})",
            f"NUMBA_CACHE_DIR={where!r} is not writable: point it to a writable directory or unset it"
            if where else "set NUMBA_CACHE_DIR to a writable directory",
        ) from exc
    except Exception as exc:  # an llvmlite that loads but cannot build, an OSError while reading the cache, ...
        raise NumbaLoadError(f"the numba kernels failed to load ({_one_line(exc)})", _REINSTALL) from exc
    finally:
        config.CACHE_DIR = saved_dir
        Dispatcher.enable_caching = saved_enable
