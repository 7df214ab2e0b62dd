"""The embedding + bidirectional LSTM text classifier: rnnjit's public API vs torch and onnxruntime, same run.

Each engine's warm-up call is also its parity check against the model's own
(packed) torch forward: ``max_abs_diff`` in extra_info; rnnjit fails the case
beyond the float32 budget (a fast wrong score is not a result).
"""

from __future__ import annotations

import pytest

from bench.cases import QUICK, TEXT_CASES
from bench.text_classifier import PARITY_ATOL, max_abs_diff, text_runner
from bench.timing import time_whole_model, warm_call_s

ENGINES = ("rnnjit", "torch", "torch_packed", "onnxruntime")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", TEXT_CASES, ids=lambda c: c.name)
def test_text_classifier(benchmark, text_benches, threads, case, engine):
    b = text_benches[case.name]
    fn = text_runner(b, engine, threads)
    if isinstance(fn, str):
        pytest.skip(fn)
    y = fn()  # warm-up: compilation (numba JIT, cached after the first process), first-call setup
    call_s = warm_call_s(fn)
    time_whole_model(
        benchmark, engine, fn, lambda: text_runner(b, "torch", threads), call_s, max_abs_diff(b, y), PARITY_ATOL,
        "torch's packed forward", case=case.name, threads=threads, sequences=case.B, steps=b.steps,
        shape=case.shape, gflop=case.flops(b.steps) / 1e9, quick=QUICK,
    )  # fmt: skip
