"""Throughput of rnnjit, torch CPU and onnxruntime on the same data, same threads, same run."""

from __future__ import annotations

import pytest

from bench.cases import CASES, ENGINES, QUICK
from bench.conftest import runner


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_engine(benchmark, benches, threads, case, engine):
    b = benches[case.name]
    fn = runner(b, engine, threads)
    if isinstance(fn, str):
        pytest.skip(fn)
    fn()  # warm-up: compilation (numba JIT, cached after the first process), ORT/torch first-call setup
    benchmark.group = case.name
    benchmark.extra_info.update(
        case=case.name, engine=engine, threads=threads, sequences=case.B, steps=b.steps, shape=case.shape,
        gflop=case.flops(b.steps) / 1e9, quick=QUICK,
    )  # fmt: skip
    rounds = 3 if case.B * case.T * case.H >= 4096 * 100 * 128 else 5
    benchmark.pedantic(fn, rounds=1 if QUICK else rounds, iterations=1, warmup_rounds=0)
