"""The thread pool that runs one nogil worker per thread (why not ``prange``: `rnnjit.kernels`)."""

from __future__ import annotations

import threading
import time
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


def run_jobs(jobs: list) -> None:
    """Run ``fn(*args)`` for every ``(fn, args)`` of ``jobs`` at once: the last in this thread, the others in the pool.

    Jobs of different kinds (the two directions of a layer, each sharing out
    its own tiles) do not cover each other's work, so a job the pool has not
    started when this thread is done is taken back and run here, not dropped.
    """
    global _pool, _pool_size
    if len(jobs) == 1:
        jobs[0][0](*jobs[0][1])
        return
    with _pool_lock:
        if _pool is None or _pool_size < len(jobs) - 1:
            _pool_size = len(jobs) - 1
            _pool = ThreadPoolExecutor(max_workers=_pool_size, thread_name_prefix="rnnjit")
        pool = _pool
    futures = [(pool.submit(fn, *args), fn, args) for fn, args in jobs[:-1]]
    jobs[-1][0](*jobs[-1][1])
    for f, fn, args in futures:
        if f.cancel():
            fn(*args)
        else:
            f.result()


def run_in_order(workers: int, jobs: list) -> tuple[float, float]:
    """Run every ``(fn, args)`` of ``jobs`` on ``workers`` threads (this one included), each thread taking the next job.

    Jobs are taken in list order and each runs to its end on the thread that
    took it, so a job that waits for an earlier one (a layer of a wavefront,
    `rnnjit.kernels.wavefront`) waits only for a job that is running or done.
    Returns (seconds this thread ran jobs, seconds it then waited for the others).
    """
    global _pool, _pool_size
    taken = iter(range(len(jobs)))  # one shared iterator: next() on it is atomic under the GIL

    def take_jobs():
        for i in taken:
            fn, args = jobs[i]
            fn(*args)

    workers = max(1, min(workers, len(jobs)))
    t0 = time.perf_counter()
    if workers == 1:
        take_jobs()
        return time.perf_counter() - t0, 0.0
    with _pool_lock:
        if _pool is None or _pool_size < workers - 1:
            _pool_size = workers - 1
            _pool = ThreadPoolExecutor(max_workers=_pool_size, thread_name_prefix="rnnjit")
        pool = _pool
    futures = [pool.submit(take_jobs) for _ in range(workers - 1)]
    take_jobs()
    t1 = time.perf_counter()
    for f in futures:  # every job has been taken: one not started has nothing left to do
        if not f.cancel():
            f.result()
    return t1 - t0, time.perf_counter() - t1
