"""The thread pool that runs one nogil worker per thread (why not ``prange``: `rnnjit.kernels`)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def parallel(workers: int, fn, args: tuple) -> None:
    """Run ``fn(*args)`` (`run_worker` or `run_team`) in ``workers`` threads, this one included."""
    global _pool, _pool_size
    if workers == 1:
        fn(*args)
        return
    with _pool_lock:
        if _pool is None or _pool_size < workers - 1:
            _pool_size = workers - 1
            _pool = ThreadPoolExecutor(max_workers=_pool_size, thread_name_prefix="rnnjit")
        pool = _pool
    futures = [pool.submit(fn, *args) for _ in range(workers - 1)]
    fn(*args)
    # The work is shared out dynamically, so when this thread returns every
    # tile (or team chunk) has been taken: a pool thread that has not started
    # yet (on a busy machine a wake-up can take milliseconds) has nothing left
    # to do, and is not waited for.
    for f in futures:
        if not f.cancel():
            f.result()
