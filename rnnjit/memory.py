"""One memory budget per operation: what an input file may make rnnjit allocate.

A file's headers can claim any size, and compression, shared storages, memo
references and padding turn a few kilobytes into gigabytes. Every allocation
an input can cause (inflated zip members across all members of an archive,
storages rather than the views into them, the objects a pickle builds, the
text of dotted key names, the padded arrays of a Parquet batch) is charged to
one `MemoryBudget` *before* it is made; past the limit the operation stops
with one line that says how to raise it.

The limit, in order: the ``memory_limit=`` keyword of the API call (the CLI's
``--memory-limit``), a `limited` block around the call, the environment
variable ``RNNJIT_MEMORY_LIMIT``, else `DEFAULT_LIMIT` (1 GiB). Sizes are
bytes or a number with a unit: ``512M``, ``4G``, ``1.5GiB``. The bytes of the
input file itself are not charged: they are what the user chose to read.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from collections.abc import Iterator

from rnnjit.errors import BundleError, InputError, RnnjitError, WeightFileError

ENV = "RNNJIT_MEMORY_LIMIT"
DEFAULT_LIMIT = 1 << 30
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_current: contextvars.ContextVar[int | None] = contextvars.ContextVar("rnnjit_memory_limit", default=None)


class MemoryLimitError(RnnjitError):
    """An input would make rnnjit allocate more than the operation's memory limit."""


# One per kind of input, so code that catches the input's own error class catches these too.
class WeightFileMemoryError(MemoryLimitError, WeightFileError):
    """A weight file would need more memory than the limit."""


class BundleMemoryError(MemoryLimitError, BundleError):
    """A bundle would need more memory than the limit."""


class InputMemoryError(MemoryLimitError, InputError):
    """A batch of input rows would need more memory than the limit."""


def parse_size(text: str | int, what: str = "memory_limit") -> int:
    """``"4G"`` -> 4294967296; bytes as an int pass through. Binary units (K=1024)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
        if not m:
            raise MemoryLimitError(f"{what} is {str(text)[:40]!r}; expected a size such as 512M, 4G or 8589934592")
        value = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if value <= 0:
        raise MemoryLimitError(f"{what} is {text!r}; expected a positive size such as 4G")
    return value


def human(nbytes: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= size:
            return f"{nbytes / size:.4g} {unit}"
    return f"{nbytes} bytes"


def limit(explicit: int | str | None = None) -> int:
    """The limit in force: ``explicit``, else the `limited` block's, else ``$RNNJIT_MEMORY_LIMIT``, else 1 GiB."""
    if explicit is not None:
        return parse_size(explicit)
    if _current.get() is not None:
        return _current.get()
    env = os.environ.get(ENV)
    return parse_size(env, ENV) if env else DEFAULT_LIMIT


@contextlib.contextmanager
def limited(value: int | str | None) -> Iterator[None]:
    """Run a block under the memory limit ``value`` (None: leave the limit as it is)."""
    if value is None:
        yield
        return
    token = _current.set(parse_size(value))
    try:
        yield
    finally:
        _current.reset(token)


class MemoryBudget:
    """Bytes one operation may still allocate; `take` refuses (`MemoryLimitError`) before the allocation is made.

    ``source`` names the input in messages; ``error`` is the `MemoryLimitError`
    subclass raised (`WeightFileMemoryError` by default). Bytes given back
    (`give_back`) may be taken again, but all that is taken over the operation,
    freed or not, stays within twice the limit: what is freed was still
    inflated or copied, and a small file must not buy unbounded work either.
    """

    def __init__(
        self, source: str, limit_bytes: int | str | None = None, error: type[MemoryLimitError] | None = None
    ) -> None:
        self.limit = limit(limit_bytes)
        self.used = 0
        self.total = 0
        self.source = source
        self.error = error or WeightFileMemoryError

    def take(self, nbytes: int, what: str) -> None:
        nbytes = max(int(nbytes), 0)
        if self.used + nbytes > self.limit:
            self._refuse(what, self.used + nbytes, self.limit, "of memory in all, past the memory limit")
        if self.total + nbytes > 2 * self.limit:
            self._refuse(what, self.total + nbytes, 2 * self.limit,
                         "allocated over the whole read (freed or not), past twice the memory limit")
        self.used += nbytes
        self.total += nbytes

    def _refuse(self, what: str, need_bytes: int, cap: int, how: str) -> None:
        need, have = human(need_bytes), human(cap)
        if need == have:
            need, have = f"{need_bytes} bytes", f"{cap} bytes"
        suggest = _suggest(need_bytes if cap == self.limit else need_bytes // 2)
        raise self.error(
            f"{self.source}: {what} would need {need} {how} of {have}; refusing to allocate that (corrupt or "
            f"hostile file?); if the input is genuine, raise the limit with memory_limit='{suggest}' "
            f"(or {ENV}={suggest})"
        )

    def give_back(self, nbytes: int) -> None:
        """``nbytes`` charged before were freed (a storage whose tensors are all built)."""
        self.used = max(self.used - int(nbytes), 0)


def _suggest(nbytes: int) -> str:
    """A limit with room above ``nbytes`` (what is known so far; the rest of the input may need more)."""
    want = 2 * nbytes
    return f"{-(-want // (1 << 30))}G" if want > 1 << 30 else f"{-(-want // (1 << 20))}M"
