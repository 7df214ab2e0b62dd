"""SIGTERM handled like Ctrl-C, and held back while a temporary file is being created.

`sigterm_as_interrupt` makes SIGTERM (``timeout``, schedulers, Kubernetes)
raise `Terminated` (a `KeyboardInterrupt`) in the main thread, so the clean-up
of every run (``except BaseException: sink.abort()``) removes what it created.
A signal can arrive between any two bytecodes, including between creating a
temporary file and storing its name where the clean-up finds it: code that
creates one runs inside `held`, and a SIGTERM that arrives there is raised when
it ends. Nothing is ignored: the signal is only delayed past those few lines.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: handled like Ctrl-C (the CLI exits 143)."""


_depth = 0
_pending = False


@contextmanager
def held():
    """Delay a SIGTERM that arrives inside this block to its end (main thread; nests)."""
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _pending:
            _pending = False
            raise Terminated()


@contextmanager
def sigterm_as_interrupt():
    """Raise `Terminated` in the main thread on SIGTERM (outside `held` blocks; at their end inside)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum, frame):
        global _pending
        if fired:  # a second SIGTERM must not interrupt the clean-up of the first
            return
        fired.append(signum)
        if _depth:
            _pending = True
            return
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
