"""Batches that are not a multiple of the lane width: lane tiles for the whole vectors, small tiles for the rest.

`rnnjit.kernels.tiling.remainder_width` decides, `split_tiles` cuts the
plan into parts, and `rnnjit.kernels._run_layers` runs each thread through
the parts in turn. A sequence must keep its bits whichever part it lands in:
the same as in a plan of lane tiles alone and as scored alone.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_kernels import build

from rnnjit import kernels
from rnnjit.kernels import tiling
from rnnjit.kernels._simd import FEW

F32 = np.dtype(np.float32)


@pytest.mark.parametrize(
    "B, threads, parts",
    [(33, 2, (16, 1)), (35, 2, (16, FEW)), (65, 2, (32, 1)), (257, 2, (32, 1)), (17, 1, (16, 1)), (33, 1, (32, 1)),
     (17, 2, (FEW, 1)), (64, 2, (32,)), (256, 2, (32,)), (12, 2, (FEW,)), (1, 1, (1,))],
)  # fmt: skip
def test_the_plan_puts_whole_vectors_in_lane_tiles_and_the_rest_in_small_tiles(B, threads, parts):
    bt = tiling.tile_width(B, threads, F32, 1 << 18)
    rest = tiling.remainder_width(B, threads, F32, 1 << 18, bt)
    _, got = tiling.split_tiles(np.arange(B, 0, -1), bt, rest, 16)  # lengths B..1
    assert tuple(w for w, _ in got) == parts
    assert got[0][1][0] == 0 and got[-1][1][-1] == B  # every sequence in exactly one tile, in order
    for (_, a), (_, b) in zip(got, got[1:]):
        assert a[-1] == b[0]
    for w, ptr in got:
        assert (np.diff(ptr) > 0).all() and (np.diff(ptr) <= w).all()


def test_lane_tiles_alone_when_the_remainder_would_not_pay():
    # one thread, B=16k+r with r >= 13: a padded vector costs less than four FEW tiles
    assert tiling.remainder_width(31, 1, F32, 1 << 18, 32) == 0
    assert tiling.remainder_width(30, 2, F32, 1 << 18, FEW) == 0  # two one-sequence tiles cost more than a FEW tile
    assert tiling.remainder_width(30, 2, F32, 1 << 18, 3) == 0  # not a lane tile


def _runs(prepared, x, lengths, h0, c0, select, threads, monkeypatch, rest, split=False, few=False):
    """``kernels.run`` with the remainder part forced on (``rest``) or off (0), on two threads even for this small
    call (``few``: after FEW tiles); and the parts of each plan it made."""
    seen = []
    split = tiling.split_tiles

    def spy(lengths, bt, r, lv):
        order, parts = split(lengths, bt, r, lv)
        seen.append(tuple(w for w, _ in parts))
        return order, parts

    with monkeypatch.context() as m:
        m.setattr(kernels, "split_tiles", spy)
        m.setattr(kernels, "remainder_width", lambda B, th, dt, wb, bt: rest if bt >= FEW and B > 16 else 0)
        if few:
            m.setattr(kernels, "tile_width", lambda *a: FEW)
        m.setattr(kernels, "ONE_THREAD_WORK", 0)
        if split:
            m.setattr(kernels, "SPLIT_WORK", 0)  # a bidirectional layer's directions at once, each its own plan
        return kernels.run(prepared, x, lengths, h0, c0, select, threads), seen


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("cell", ["lstm", "lstmp", "gru", "rnn_tanh"])
@pytest.mark.parametrize("bidir", [False, True, "split"], ids=lambda b: f"{b=}")
@pytest.mark.parametrize("few, rest", [(False, 1), (False, FEW), (True, 1)], ids=["lanes+1", "lanes+FEW", "FEW+1"])
def test_a_mixed_plan_gives_every_sequence_the_bits_of_its_tiles_alone(cell, bidir, few, rest, dtype, monkeypatch):
    _, spec, weights = build(cell, 7, 19, 2, bool(bidir), True, dtype, seed=21)  # 19 units: a part-filled panel
    prepared = kernels.prepare(spec, weights)
    lv = 16 if dtype == np.float32 else 8
    rng = np.random.default_rng(22)
    B, T = 2 * lv + 3, 11  # two whole vectors and three sequences left over
    x = rng.standard_normal((B, T, 7)).astype(dtype)
    lengths = rng.integers(1, T + 1, B).astype(np.int64)  # ragged: the remainder gets the shortest
    LD = 2 * (2 if bidir else 1)
    h0 = (rng.standard_normal((LD, B, spec.h_out)) * 0.5).astype(dtype)
    c0 = (rng.standard_normal((LD, B, 19)) * 0.5).astype(dtype) if spec.has_cell_state else None
    for threads in (1, 2):
        for select in ("all", "last", "final", "max"):
            split = bidir == "split"
            mixed, seen = _runs(prepared, x, lengths, h0, c0, select, threads, monkeypatch, rest, split, few)
            assert any(len(p) == 2 and p[1] == rest for p in seen), seen  # the remainder ran in its own tiles
            alone, seen = _runs(prepared, x, lengths, h0, c0, select, threads, monkeypatch, 0, split, few)
            assert all(len(p) == 1 for p in seen)
            for got, want in zip(mixed, alone):
                if want is not None:
                    np.testing.assert_array_equal(got, want)
            if select == "all":
                y_all = mixed[0]
    for b in np.argsort(lengths, kind="stable")[:2]:  # in the remainder's tiles: the bits it has scored alone
        one = kernels.run(prepared, x[b : b + 1], lengths[b : b + 1], h0[:, b : b + 1],
                          None if c0 is None else c0[:, b : b + 1], "all", 1)  # fmt: skip
        np.testing.assert_array_equal(one[0][0], y_all[b])
