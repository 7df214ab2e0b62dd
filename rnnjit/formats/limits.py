"""Size limits: what a weight file may make rnnjit allocate, checked before allocating.

A header (safetensors JSON, ``.npy`` header, pickle, zip directory) can claim
any size. Every reader compares what it is told against the bytes the file
really holds before it allocates, so a 1 kB file that claims 10**12 elements
is refused in microseconds instead of exhausting memory. What a file can
legitimately make rnnjit allocate (inflated members, storages, tensors, key
text) is charged to the operation's `rnnjit.memory.MemoryBudget`.
"""

from __future__ import annotations

import zipfile

from rnnjit.errors import WeightFileError
from rnnjit.formats.guard import printable
from rnnjit.memory import MemoryBudget

MiB = 1 << 20
# Bytes a file may make us allocate beyond its own size: expanded tensors
# (stride 0) and views that share one storage read more than they store.
SLACK_BYTES = 256 * MiB
# A single expanded tensor above this is refused (a real one is a broadcast bias).
MAX_EXPANDED_BYTES = 64 * MiB
# Weights deflate 1.1:1, an all-zero tensor about 1000:1: past this ratio and
# past SLACK_BYTES a compressed zip member is a decompression bomb.
MAX_INFLATE_RATIO = 100


def check_zip_member(
    info: zipfile.ZipInfo, nbytes: int, file_size: int, source: str, what: str, budget: MemoryBudget
) -> None:
    """Refuse to read ``nbytes`` from a member that cannot hold them or would inflate absurdly; charge them."""
    if info.file_size < nbytes:
        raise WeightFileError(
            f"{source}: {what} ({printable(info.filename, 80)}) holds {info.file_size} bytes "
            f"but {nbytes} are needed; "
            "the file is truncated or corrupt, save it again"
        )
    stored = min(info.compress_size, file_size)
    if info.compress_type == zipfile.ZIP_STORED:
        if nbytes > file_size:
            raise WeightFileError(
                f"{source}: {what} ({printable(info.filename, 80)}) claims {nbytes} bytes "
                f"in a {file_size}-byte file (corrupt file?)"
            )
    elif nbytes > SLACK_BYTES and nbytes > MAX_INFLATE_RATIO * stored:
        raise WeightFileError(
            f"{source}: {what} ({printable(info.filename, 80)}) would inflate {stored} compressed bytes "
            f"to {nbytes}; "
            "refusing a decompression bomb"
        )
    budget.take(nbytes, f"{what} ({printable(info.filename, 80)})")
