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
import tempfile
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


@dataclass(frozen=True)
class CachePlan:
    """Where the kernels' compiled code is cached: ``source`` names the rule, ``path`` the directory."""

    source: str  # "NUMBA_CACHE_DIR" | "next to the sources" | "user cache" | "temporary" | "none"
    path: str | None

    def describe(self) -> str:
        return f"{self.path} ({self.source})" if self.path else "none (the kernels compile in every process)"


def _writable(path: Path, private: bool = False) -> bool:
    """True when ``path`` exists or can be created and a file can be written in it (what numba checks)."""
    try:
        path.mkdir(mode=0o700 if private else 0o777, parents=True, exist_ok=True)
        if private:
            st = path.stat()
            # A directory someone else owns or can write to could hold planted machine code.
            if st.st_uid != os.getuid() or st.st_mode & 0o022:
                return False
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def user_cache_dir(environ=None) -> Path:
    """``$XDG_CACHE_HOME/rnnjit/numba``, else ``~/.cache/rnnjit/numba``."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rnnjit" / "numba"


def choose_cache(environ=None, kernels_dir: Path = KERNELS_DIR) -> CachePlan:
    """The first writable place of the order in the module docstring."""
    environ = os.environ if environ is None else environ
    if environ.get("NUMBA_CACHE_DIR"):
        return CachePlan("NUMBA_CACHE_DIR", environ["NUMBA_CACHE_DIR"])
    in_tree = kernels_dir / "__pycache__"
    if _writable(in_tree):
        return CachePlan("next to the sources", str(in_tree))
    user = user_cache_dir(environ)
    if _writable(user):
        return CachePlan("user cache", str(user))
    tmp = Path(tempfile.gettempdir()) / f"rnnjit-numba-{os.getuid()}"
    if _writable(tmp, private=True):
        return CachePlan("temporary", str(tmp))
    return CachePlan("none", None)


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
    saved_dir, saved_enable = config.CACHE_DIR, Dispatcher.enable_caching
    try:
        if plan.source in ("user cache", "temporary"):
            config.CACHE_DIR = plan.path
        elif plan.source == "none":
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
