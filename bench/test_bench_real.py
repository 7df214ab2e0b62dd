"""Five real architectures (bench/real_models.py): Model.predict vs each model's own torch forward, onnxruntime, OpenVINO f32.

Each engine's warm-up call is also its parity check against torch
(``max_abs_diff`` in extra_info); rnnjit fails the case beyond the budget.
"""

from __future__ import annotations

import pytest

from bench.cases import QUICK
from bench.real_models import PARITY_ATOL, REAL_CASES, RealBench, max_abs_diff, real_runner
from bench.timing import time_whole_model, warm_call_s

ENGINES = ("rnnjit", "torch", "onnxruntime", "openvino")


@pytest.fixture(scope="session")
def real_benches(torch_mod):
    class RealBenches(dict):
        def __missing__(self, name):
            self[name] = b = RealBench(next(c for c in REAL_CASES if c.name == name), torch_mod)
            return b

    return RealBenches()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", REAL_CASES, ids=lambda c: c.name)
def test_real_model(benchmark, real_benches, threads, case, engine):
    b = real_benches[case.name]
    fn = real_runner(b, engine, threads)
    if isinstance(fn, str):
        if engine == ENGINES[-1]:
            real_benches.pop(case.name, None)
        pytest.skip(fn)
    y = fn()  # warm-up: compilation (numba JIT, cached after the first process), first-call setup
    call_s = warm_call_s(fn)
    time_whole_model(
        benchmark, engine, fn, lambda: real_runner(b, "torch", threads), call_s, max_abs_diff(b, y), PARITY_ATOL,
        "the torch model", case=case.name, threads=threads, sequences=case.B, steps=b.steps, shape=case.shape,
        gflop=0.0, quick=QUICK, real=True,
    )  # fmt: skip
    if engine == ENGINES[-1]:  # the case's last engine: free its arrays and sessions
        real_benches.pop(case.name, None)
