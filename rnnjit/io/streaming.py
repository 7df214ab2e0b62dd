"""A local output file that hands its written pages back to the kernel as it goes.

A scoring run's output can be far larger than its input (the polyphone
tagger's 876 scores per token: 172 MB per 2048 rows, 1.3 GB per 16,384). A
plain buffered write leaves all of it in the page cache as dirty pages; each
new page is a fresh page of memory the kernel must find, clear of other uses
and account for, and on the shared 2-core machine of bench/STREAMING.md
("Wide per-step scores") that cost varied from run to run by 20x: writing
640 MB in 8 MB `write()` calls took 0.13-3.0 s (system time 0.13-2.7 s),
while the same writes with the pages already written back dropped as the
file grows took 0.21-0.60 s every time (system time 0.19-0.24 s): the
kernel reuses the pages it just got back instead of finding new ones.

So every `CHUNK` bytes the file asks the kernel to start writing the new bytes
to disk (``sync_file_range(SYNC_FILE_RANGE_WRITE)``, which does not wait), and
the bytes more than `KEEP` behind the end are waited for and dropped from the
page cache (``posix_fadvise(POSIX_FADV_DONTNEED)``). A file smaller than
`KEEP` stays in the page cache as before (only its write-back starts sooner). A write-back error found on the way is
raised as `OSError` (a plain write would only report it on ``fsync``, which
nobody calls). Where the calls do not exist (not Linux) or the file system
refuses them, the file is a plain buffered file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import io
import os

CHUNK = 8 << 20
"""Bytes written between two requests to start write-back."""
KEEP = 64 << 20
"""Bytes behind the end of the file left in the page cache (the ones not yet on disk, mostly)."""

_WRITE, _WAIT_BEFORE, _WAIT_AFTER = 2, 1, 4  # SYNC_FILE_RANGE_* (linux/fs.h)
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.ESPIPE, errno.EOPNOTSUPP}


def _sync_file_range():
    if not hasattr(os, "posix_fadvise"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_SYNC = _sync_file_range()


class StreamingFile(io.BufferedWriter):
    """`os.fdopen(fd, "wb")` that starts write-back every `CHUNK` bytes and drops pages `KEEP` bytes behind."""

    def __init__(self, fd: int, name: str | None = None):
        super().__init__(io.FileIO(fd, "wb"))
        self._name = name  # for messages
        self._on = _SYNC is not None
        self._end = 0  # bytes handed to write()
        self._started = 0  # write-back requested up to here
        self._dropped = 0  # dropped from the page cache up to here

    def write(self, b) -> int:
        n = super().write(b)
        self._end += n
        if self._on and self._end - self._started >= CHUNK:
            self._advance()
        return n

    def _call(self, start: int, length: int, flags: int) -> bool:
        if _SYNC(self.raw.fileno(), start, length, flags) == 0:
            return True
        err = ctypes.get_errno()
        if err in _UNSUPPORTED:
            self._on = False
            return False
        raise OSError(err, os.strerror(err), self._name)

    def _advance(self) -> None:
        self.flush()  # what write() holds back is in the file before its range is asked for
        if not self._call(self._started, self._end - self._started, _WRITE):
            return
        self._started = self._end
        page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        upto = (self._end - KEEP) // page * page
        if upto - self._dropped < CHUNK:
            return
        if not self._call(self._dropped, upto - self._dropped, _WAIT_BEFORE | _WRITE | _WAIT_AFTER):
            return
        os.posix_fadvise(self.raw.fileno(), self._dropped, upto - self._dropped, os.POSIX_FADV_DONTNEED)
        self._dropped = upto
