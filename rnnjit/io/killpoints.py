"""A test hook: kill this process with SIGKILL at a named point of a run.

``RNNJIT_KILL_AT=stage:n`` makes the n-th arrival (1-based) at ``stage`` send
SIGKILL to the process itself (``stage:n:TERM`` sends SIGTERM instead), so the kill tests hit every stage of a run
(``read``, ``score``, ``write``, ``commit`` before the rename, ``renamed``
after it, ``manifest`` after the manifest is updated) without depending on
timing. Unset (always, outside the tests), `reach` is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

from rnnjit.errors import InputError
from rnnjit.formats.guard import printable

_ENV = "RNNJIT_KILL_AT"
_counts: dict[str, int] = {}
_target: tuple[str, int, int] | None = None
_parsed = False


_SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "INT": signal.SIGINT}


def _parse() -> tuple[str, int, int] | None:
    parts = os.environ.get(_ENV, "").split(":")
    if len(parts) not in (2, 3) or not parts[1].isdigit():
        return None
    if len(parts) == 3 and parts[2] not in _SIGNALS:
        raise InputError(
            f"{_ENV}={printable(os.environ[_ENV], 60)} names signal {printable(parts[2], 20)!r}; expected "
            f"stage:n or stage:n:{'|'.join(_SIGNALS)} (a test hook: unset it for real runs)"
        )
    return parts[0], int(parts[1]), _SIGNALS[parts[2]] if len(parts) == 3 else signal.SIGKILL


def reach(stage: str) -> None:
    """Count an arrival at ``stage``; SIGKILL this process if it is the one asked for."""
    global _parsed, _target
    if not _parsed:
        _target, _parsed = _parse(), True
    if _target is None or _target[0] != stage:
        return
    _counts[stage] = _counts.get(stage, 0) + 1
    if _counts[stage] == _target[1]:
        os.kill(os.getpid(), _target[2])
