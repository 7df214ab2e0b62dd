"""Shared CLI plumbing: one-line errors on stderr, exit codes."""

from __future__ import annotations

import sys

import typer

EXIT_USAGE = 2  # bad input or a user mistake
EXIT_FAILED = 1  # the command ran but the check it performs failed (verify)
EXIT_INTERRUPTED = 130


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
