"""bench/variant_sweep.py's variants score as their torch modules do (tiny batches, no timing), and its turns run."""

from __future__ import annotations

from dataclasses import replace

import pytest

pytest.importorskip("torch")


def _small(v):
    """The variant at T <= 12 (the sweep's T of 1000 only costs time here)."""
    return replace(v, T=min(v.T, 12))


@pytest.mark.parametrize("name", ["speaker H=128 L=3", "beat H=150 L=2 cell=gru", "ocr H=256 blocks=1",
                                  "tagger V=1000 H=32 heads=876", "onset H=16 cell=rnn", "onset H=25 cell=gru",
                                  "lstm I=64 H=256", "lstm I=64 H=256 cell=gru", "lstm I=64 H=256 cell=rnn",
                                  "lstm I=64 H=256 L=2"])  # fmt: skip
def test_variant_scores_as_torch(name):
    import torch

    from bench.real_models import PARITY_ATOL, max_abs_diff
    from bench.variant_sweep import VariantBench, _variants, build, convert

    v = _small(next(v for v in _variants() if v.name == name))
    net, chain, output, width = build(v, torch)
    model = convert(net, chain, output, torch)
    for B in (1, 5):
        b = VariantBench(v, B, torch, net, chain, output, width, model)
        y = model.predict(b.x, lengths=b.lengths, engine="numba", threads=2)
        assert max_abs_diff(b, y) <= PARITY_ATOL


def test_settled_call_times_the_second_call():
    from bench.timing import settled_call

    calls = []
    t = settled_call(lambda: calls.append(len(calls)), settle_s=0.0)
    assert calls == [0, 1] and t >= 0.0


def test_time_interleaved_takes_each_engines_best():
    from bench.variant_sweep import time_interleaved

    ticks = iter(range(1000))
    clock = lambda: next(ticks)  # noqa: E731 - each clock read one tick later: every timed call lasts 1 tick
    fns = {"rnnjit": lambda: None, "torch": lambda: None}
    best = time_interleaved(fns, ["rnnjit", "torch"], rounds=3, budget_s=0.0, settle_s=0.0, clock=clock)
    assert best == {"rnnjit": 1, "torch": 1}

