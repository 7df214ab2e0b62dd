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
     (17, 2, (FEW, 1)), (49, 2, (32, 1)), (64, 2, (32,)), (256, 2, (32,)), (12, 2, (FEW,)), (1, 1, (1,))],
)  # fmt: skip
def test_the_plan_puts_whole_vectors_in_lane_tiles_and_the_rest_in_small_tiles(B, threads, parts):
    # 49 on two threads: 32 + 16 lanes and a one-sequence tile finish with 2 x 32 lanes, with a sixth less work
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


def test_small_tiles_cost_more_on_layers_of_few_gate_rows():
    # bench/tile_costs.py --grid: a FEW tile of an RNN of H=16 (16 gate rows, run as a group of 64) cost 2.4-2.9
    # FEW_TILE_COST against a 48-lane tile, an LSTM of H=64 (256 rows) 1.0
    assert tiling.small_tile_scale(4, 64) == tiling.small_tile_scale(3, 512) == 1.0
    assert tiling.small_tile_scale(1, 16) == pytest.approx(16**tiling.SMALL_ROWS_EXP)
    assert tiling.small_tile_scale(1, 25) == tiling.small_tile_scale(1, 32)  # H padded to MR: 32 rows
    assert 1.0 < tiling.small_tile_scale(4, 32) < tiling.small_tile_scale(3, 25) < tiling.small_tile_scale(1, 64)


@pytest.mark.parametrize(
    "B, threads, gates, H, parts",
    [(13, 1, 1, 16, (16,)), (13, 1, 1, 25, (16,)), (13, 1, 3, 25, (16,)), (8, 1, 1, 16, (16,)), (13, 2, 1, 16, (16,)),
     (22, 1, 1, 25, (32,)), (13, 1, 4, 128, (FEW, 1)), (8, 1, 4, 128, (FEW,)), (8, 1, 3, 25, (FEW,)),
     (4, 1, 1, 16, (FEW,)), (1, 1, 1, 16, (1,))],
)  # fmt: skip
def test_the_plan_of_a_small_hidden_layer_is_a_lane_tile_where_measured_faster(B, threads, gates, H, parts):
    # one thread, CPU time (bench/tile_costs.py --plans): the onset detector's BiRNN of H=16 at B=13 in one
    # 16-lane tile 3.2x faster than in three FEW tiles and a one-sequence tile, H=25 2.2x, a GRU of H=25 1.5x;
    # an LSTM of H=128 keeps the plan the constants were measured for, and B=8 of the GRU its two FEW tiles
    # (as fast as a 16-lane tile, measured)
    small = tiling.small_tile_scale(gates, H)
    bt = tiling.tile_width(B, threads, F32, 1 << 18, small)
    rest = tiling.remainder_width(B, threads, F32, 1 << 18, bt, small)
    assert tuple(w for w, _ in tiling.split_tiles(np.arange(B, 0, -1), bt, rest, 16)[1]) == parts


def test_the_kernels_plan_a_layer_with_its_own_gate_rows(monkeypatch):
    seen = []
    split = tiling.split_tiles
    monkeypatch.setattr(kernels, "split_tiles", lambda *a: seen.append(a[1:3]) or split(*a))
    for cell, H, want in (("rnn_tanh", 16, (16, 0)), ("lstm", 64, (FEW, 1))):
        _, spec, w = build(cell, 8, H, 1, False, True, np.float32)
        x = np.random.default_rng(0).standard_normal((13, 5, 8)).astype(np.float32)
        kernels.run(kernels.prepare(spec, w), x, np.full(13, 5, np.int64), None, None, "all", 1)
        assert seen[-1] == want


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
        m.setattr(kernels, "remainder_width", lambda B, th, dt, wb, bt, *_: rest if bt >= FEW and B > 16 else 0)
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


@pytest.mark.parametrize("precision", ["bf16", "int8"], ids=lambda p: f"{p=}")
@pytest.mark.parametrize("cell", ["lstm", "lstmp", "gru"])
@pytest.mark.parametrize("rest", [1, FEW], ids=lambda r: f"rest={r}")
def test_a_mixed_plan_keeps_the_bits_at_reduced_precision(cell, rest, precision, monkeypatch):
    # bf16 pairs and int8 per-lane scales are packed per tile kind: a row must not see its neighbours' values
    _, spec, weights = build(cell, 9, 21, 2, False, True, np.float32, seed=23)
    prepared = kernels.prepare(spec, weights, precision)
    rng = np.random.default_rng(24)
    B, T = 35, 9
    x = rng.standard_normal((B, T, 9)).astype(np.float32)
    lengths = rng.integers(1, T + 1, B).astype(np.int64)
    for select in ("all", "final"):
        mixed, seen = _runs(prepared, x, lengths, None, None, select, 2, monkeypatch, rest)
        assert any(len(p) == 2 for p in seen), seen
        alone, _ = _runs(prepared, x, lengths, None, None, select, 2, monkeypatch, 0)
        for got, want in zip(mixed, alone):
            if want is not None:
                np.testing.assert_array_equal(got, want)
