"""Shared CLI plumbing: one-line errors on stderr, exit codes."""

from __future__ import annotations

import sys
import warnings
from enum import Enum

import typer

from rnnjit import engines
from rnnjit.engines import ENGINES
from rnnjit.spec import OUTPUT_MODES

EXIT_USAGE = 2  # bad input or a user mistake
EXIT_FAILED = 1  # the command ran but the check it performs failed (verify)
EXIT_INTERRUPTED = 130


def choices(name: str, values) -> type[Enum]:
    """A typer choice type whose members are the library's own tuple of allowed values."""
    return Enum(name, {v: v for v in values}, type=str)


Engine = choices("Engine", ENGINES)
OutputMode = choices("OutputMode", OUTPUT_MODES)

# One wording per option in every command, with what each choice does.
OUTPUT_MODE_HELP = (
    "last: the output at each sequence's last valid step; final: the last layer's final hidden "
    "states (hn, directions concatenated); all: every valid step's output (a list per row)."
)
ENGINE_HELP = (
    "numba: the compiled kernels (the default when numba loads); numpy: the exact numpy reference "
    "engine, slower, needs only numpy."
)


def metavar(values) -> str:
    """The metavar of a choice option: ``last|final|all`` (the same style in every command)."""
    return "|".join(values)


def err(message: str) -> None:
    """Print one line to stderr (newlines in ``message`` are folded)."""
    line = " ".join(str(message).split())
    typer.echo(line, err=True)


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``error: message`` and return the Exit to raise."""
    err(f"error: {message}")
    return typer.Exit(code)


def pick_engine(engine: Enum | None, threads: int | None = None) -> str:
    """Resolve ``--engine`` on this machine before any work, saying so when it is not the compiled one.

    numba that cannot load: with ``--engine numba`` an error (exit 2) naming
    ``--engine numpy``; by default one ``warning:`` line (what failed, how to
    fix it) and the numpy engine. ``--threads`` with the numpy engine: one line
    saying it is not used.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", engines.NumbaUnavailableWarning)
        name = engines.resolve(engine.value if engine is not None else None)
    for w in caught:
        if issubclass(w.category, engines.NumbaUnavailableWarning):
            err(f"warning: {w.message}")
        else:  # not ours: hand it back to the warnings machinery
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if name == "numpy" and threads is not None and threads > 1:  # one thread is what it does anyway
        err(f"warning: --threads {threads} is not used: the numpy engine runs in one thread")
    return name


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
