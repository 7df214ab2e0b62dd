"""Refuse paths that are not regular files before opening them.

Opening a FIFO for reading blocks until someone writes to it, and a device
such as ``/dev/zero`` reads without end: ``rnnjit convert /dev/zero`` would
exhaust memory, ``--input fifo`` would hang. `regular_file` looks with
``os.stat`` (which opens nothing) and raises one line naming what the path is.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from rnnjit.errors import RnnjitError

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def regular_file(path: str | os.PathLike, what: str, error: type[RnnjitError], *, directory_ok: bool = False) -> None:
    """Raise ``error`` unless ``path`` is a regular file (or, with ``directory_ok``, a directory).

    A missing path is left to the caller (its message knows what to suggest).
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise error(f"{path}: cannot look at the {what} ({exc.strerror or exc}); check the path and its permissions") from None
    if stat.S_ISREG(mode) or (directory_ok and stat.S_ISDIR(mode)):
        return
    expected = f"a regular file{' or a directory' if directory_ok else ''}"
    raise error(f"{Path(path)} is {kind(mode)}, not {expected}; give the path of the {what}")
