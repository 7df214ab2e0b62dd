"""This machine's sgemm peak (numpy's BLAS, all threads), measured in the same run as the engines."""

from __future__ import annotations

import numpy as np

from bench.cases import QUICK

N = 1024 if QUICK else 2048


def test_sgemm_peak(benchmark, threads):
    from threadpoolctl import threadpool_info, threadpool_limits

    a = np.random.default_rng(0).standard_normal((N, N), dtype=np.float32)
    b = a.T.copy()
    with threadpool_limits(threads, user_api="blas"):
        a @ b  # warm-up: BLAS thread start
        benchmark.group = "sgemm"
        blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        benchmark.extra_info.update(
            case="sgemm", engine="numpy", threads=threads, gflop=2 * N**3 / 1e9,
            blas=[{k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads")} for i in blas],
        )  # fmt: skip
        benchmark.pedantic(lambda: a @ b, rounds=5 if QUICK else 10, iterations=1)
