"""The generated C (`rnnjit export-c`, -O2 and -O3 -march=native) against the numba engine (`Model.predict`).

Models and builds are `bench.c_export`'s; ``python -m bench.c_export`` prints
the same comparison interleaved, as bench/REPORT.md quotes it.
"""

from __future__ import annotations

import pytest

from bench.c_export import BATCHES, MODELS, build, callers
from bench.timing import rounds_for, warm_call_s


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    from rnnjit.export.c_check import find_cc

    if find_cc() is None:
        pytest.skip("no C compiler on this machine (looked at $CC, cc, gcc, clang)")
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = build(name, tmp_path_factory.mktemp(name))
        return cache[name]

    return get


ENGINES = ("c -O2", "c -O3 -march=native", "numba 1 thread", "numba 2 threads")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("B", BATCHES, ids=lambda b: f"B={b}")
@pytest.mark.parametrize("name", list(MODELS))
def test_generated_c_vs_numba(benchmark, built, name, B, engine):
    fn = callers(built(name), B)[engine]
    fn()  # warm-up: numba compilation (cached after the first process), first ctypes call
    benchmark.group = f"export-c {name} B={B}"
    benchmark.extra_info.update(model=name, sequences=B, engine=engine)
    benchmark.pedantic(fn, rounds=rounds_for(warm_call_s(fn)), iterations=1, warmup_rounds=0)
