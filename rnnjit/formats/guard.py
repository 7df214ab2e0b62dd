"""Turn the exceptions of damaged input into one-line `WeightFileError`s."""

from __future__ import annotations

from typing import Any, Callable

from rnnjit.errors import RnnjitError, WeightFileError


def guarded(what: str, source: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; turn anything but an `RnnjitError` into a `WeightFileError`.

    Pickle and zipfile raise a zoo of exceptions on damaged input (EOFError,
    UnpicklingError, struct.error, ValueError, KeyError, RecursionError, ...).
    """
    try:
        return fn()
    except RnnjitError:
        raise
    except MemoryError:
        raise WeightFileError(f"{source}: {what} asks for more memory than is available (corrupt file?)") from None
    except Exception as exc:  # noqa: BLE001 - see docstring
        detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        raise WeightFileError(
            f"{source}: cannot read {what} ({detail}); the file is truncated or corrupt, save or copy it again"
        ) from None


def printable(text: str, limit: int = 120) -> str:
    """``text`` as it may appear in a one-line message: control characters escaped, length capped.

    Names inside a file (zip members, pickle globals) are chosen by whoever
    wrote it and may hold newlines.
    """
    text = str(text)
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."
