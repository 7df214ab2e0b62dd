"""``Model.predict`` at float32 and bf16 beside torch bf16 autocast, OpenVINO's default and the int8 peers.

Opt-in (it is not part of bench/report.py's grid): ``RNNJIT_BENCH_PRECISION=1 python -m pytest
bench/test_bench_precision.py --benchmark-enable``. The interleaved figures of bench/REPORT.md's
precision section come from ``python -m bench.precision``, which builds the engines the same way.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from bench.precision import CLASS, SHAPES, engines
from bench.timing import rounds_for, warm_call_s

pytestmark = pytest.mark.skipif(
    not os.environ.get("RNNJIT_BENCH_PRECISION"), reason="opt-in: set RNNJIT_BENCH_PRECISION=1"
)


@pytest.fixture(scope="module")
def built(threads):
    """Per shape: (engines, torch float32's outputs), built when first asked for."""
    cache: dict = {}
    with tempfile.TemporaryDirectory() as tmp:

        def get(shape):
            if shape not in cache:
                cache.clear()  # one shape's sessions at a time
                cache[shape] = engines(shape, threads, Path(tmp))
            return cache[shape]

        yield get


@pytest.mark.parametrize("engine", list(CLASS))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"B{s.B}-T{s.T}-I{s.I}-H{s.H}")
def test_precision(benchmark, built, threads, shape, engine):
    calls, want = built(shape)
    fn = calls[engine]
    y = np.asarray(fn(), np.float64)  # warm-up: compilation (numba, OpenVINO), first-call setup
    benchmark.group = shape.name
    benchmark.extra_info.update(engine=engine, precision=CLASS[engine], threads=threads,
                                max_abs_diff_from_torch_float32=float(np.max(np.abs(y - want))))  # fmt: skip
    benchmark.pedantic(fn, rounds=rounds_for(warm_call_s(fn)), iterations=1, warmup_rounds=0)
