"""Shared CLI plumbing: one-line errors on stderr, exit codes."""

from __future__ import annotations

import sys
from enum import Enum

import typer

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


def err(message: str) -> None:
    """Print one line to stderr (newlines in ``message`` are folded)."""
    line = " ".join(str(message).split())
    typer.echo(line, err=True)


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``error: message`` and return the Exit to raise."""
    err(f"error: {message}")
    return typer.Exit(code)


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
