"""Throughput of rnnjit, torch CPU and onnxruntime on the same data, same threads, same run."""

from __future__ import annotations

import pytest

from bench.cases import CASES, ENGINES, QUICK
from bench.conftest import runner
from bench.timing import fresh_back_off, paired_ratio, rounds_for, warm_call_s


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_engine(benchmark, benches, threads, case, engine):
    b = benches[case.name]
    fn = runner(b, engine, threads)
    if isinstance(fn, str):
        if engine == ENGINES[-1]:
            benches.pop(case.name, None)
        pytest.skip(fn)
    fn()  # warm-up: compilation (numba JIT, cached after the first process), ORT/torch first-call setup
    call_s = warm_call_s(fn)
    benchmark.group = case.name
    benchmark.extra_info.update(
        case=case.name, engine=engine, threads=threads, sequences=case.B, steps=b.steps, shape=case.shape,
        gflop=case.flops(b.steps) / 1e9, quick=QUICK,
    )  # fmt: skip
    # the machine is shared: the minimum over a time budget of calls is the signal (bench/timing.py); rnnjit
    # alone first, from a clear back-off state (`fresh_back_off`), then its calls alternated with torch's
    if engine == "rnnjit":
        fresh_back_off()
    benchmark.pedantic(fn, rounds=rounds_for(call_s), iterations=1, warmup_rounds=0)
    if engine == "rnnjit":  # the ratio CI compares with the recorded runs: calls alternated with torch's
        torch_fn = runner(b, "torch", threads)
        torch_fn()  # warm-up: torch's first-call setup
        benchmark.extra_info["paired_torch_ratio"] = paired_ratio(fn, torch_fn, call_s + warm_call_s(torch_fn))
    if engine == ENGINES[-1]:  # the case's last engine: free its arrays and the onnxruntime session
        benches.pop(case.name, None)
