"""A test hook: signal this process at a named point of a run.

``RNNJIT_KILL_AT=stage:n`` makes the n-th arrival (1-based) at ``stage`` send
SIGKILL to the process itself (``stage:n:TERM`` sends SIGTERM instead, and
``stage:n:STOP`` stops it, to hold a run at a point while another starts), so
the kill tests hit every stage of a run without depending on timing:
``lock`` (the output directory's lock taken), ``start`` (its starting manifest
written), ``read``, ``score``, ``write``, ``commit`` before an output's
rename, ``renamed`` after it, ``manifest`` after the manifest is rewritten,
``removed`` after each stale output is deleted, ``success`` after ``_SUCCESS``.
Unset (always, outside the tests), `reach` is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

from rnnjit.errors import InputError

_ENV = "RNNJIT_KILL_AT"
_counts: dict[str, int] = {}
_target: tuple[str, int, int] | None = None
_parsed = False


def _parse(text: str) -> tuple[str, int, int] | None:
    if not text:
        return None
    parts = text.split(":")
    sig = getattr(signal, f"SIG{parts[2]}", None) if len(parts) == 3 else signal.SIGKILL
    if len(parts) not in (2, 3) or not parts[1].isdigit() or not isinstance(sig, signal.Signals):
        raise InputError(f"{_ENV}={text!r} is not stage:n or stage:n:SIGNAL (e.g. write:2:TERM); unset it")
    return parts[0], int(parts[1]), sig


def arm(text: str | None) -> None:
    """Set the target as ``RNNJIT_KILL_AT`` would (None: none) and reset the counts (for in-process tests)."""
    global _parsed, _target
    _counts.clear()
    _target, _parsed = _parse(text or ""), True


def reach(stage: str) -> None:
    """Count an arrival at ``stage``; signal this process if it is the one asked for."""
    if not _parsed:
        arm(os.environ.get(_ENV))
    if _target is None or _target[0] != stage:
        return
    _counts[stage] = _counts.get(stage, 0) + 1
    if _counts[stage] == _target[1]:
        os.kill(os.getpid(), _target[2])
