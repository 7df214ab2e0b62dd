"""Throughput of rnnjit, torch CPU and onnxruntime on the same data, same threads, same run."""

from __future__ import annotations

import time

import pytest

from bench.cases import CASES, ENGINES, QUICK
from bench.conftest import runner


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_engine(benchmark, benches, threads, case, engine):
    b = benches[case.name]
    fn = runner(b, engine, threads)
    if isinstance(fn, str):
        if engine == ENGINES[-1]:
            benches.pop(case.name, None)
        pytest.skip(fn)
    t0 = time.perf_counter()
    fn()  # warm-up: compilation (numba JIT, cached after the first process), ORT/torch first-call setup
    first = time.perf_counter() - t0
    benchmark.group = case.name
    benchmark.extra_info.update(
        case=case.name, engine=engine, threads=threads, sequences=case.B, steps=b.steps, shape=case.shape,
        gflop=case.flops(b.steps) / 1e9, quick=QUICK,
    )  # fmt: skip
    # best of 5 for calls under a second, else 3: the machine is shared, the minimum is the signal
    rounds = 5 if first < 1.0 else 3
    benchmark.pedantic(fn, rounds=1 if QUICK else rounds, iterations=1, warmup_rounds=0)
    if engine == ENGINES[-1]:  # the case's last engine: free its arrays and the onnxruntime session
        benches.pop(case.name, None)
