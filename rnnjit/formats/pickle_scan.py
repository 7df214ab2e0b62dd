"""A cheap walk over a pickle's opcodes before the real unpickler sees it."""

from __future__ import annotations

import io
import pickletools

from rnnjit.errors import WeightFileError
from rnnjit.formats.guard import guarded

_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}


def check_opcodes(f: io.BufferedIOBase, source: str) -> None:
    """Walk one pickle's opcodes (to its STOP) without building anything, then rewind ``f``.

    `pickletools.genops` reads every counted argument, so a length that runs
    past the end of the data fails here, and a memo index larger than the
    number of opcodes (the C unpickler grows its memo table to the index and
    zero-fills it) is refused.
    """
    start = f.tell()

    def walk() -> None:
        for n, (op, arg, _) in enumerate(pickletools.genops(f)):
            if op.name in _MEMO_PUTS and arg > n:
                raise WeightFileError(
                    f"{source}: the pickle stores memo entry {arg} after {n} opcodes; "
                    "a pickler numbers them from 0 (corrupt file?)"
                )

    guarded("the pickled state_dict", source, walk)
    f.seek(start)
