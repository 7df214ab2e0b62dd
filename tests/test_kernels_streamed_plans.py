"""Mid-size batches of layers whose weights do not fit in a core's L2: lane tiles, not FEW-sequence tiles.

Over L2 every tile reads all the weights from L3 each step, so a FEW tile
(4 sequences) pays that read for fewer sequences than a 16-lane tile;
`rnnjit.kernels.tiling.STREAMED_FEW_COST` and `STREAMED_TILE_COST` count it
(measured on whole steps of stacked LSTMs, bench/report_notes.md, "Mid-size
batches of wide stacked layers"). A batch of 33-47 on two threads then runs
two 16-lane tiles and its remainder, where it ran 9-12 FEW tiles, and the
rows keep their bits.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_kernels import build

from rnnjit import kernels
from rnnjit.kernels import tiling
from rnnjit.kernels._simd import FEW
from rnnjit.kernels.team_policy import L2_BYTES

F32 = np.dtype(np.float32)
OVER_L2 = 4 * L2_BYTES + 1  # a layer of LSTM 384 -> 384: 4.5 MB packed


def _parts(B, threads, wbytes):
    bt = tiling.tile_width(B, threads, F32, wbytes)
    rest = tiling.remainder_width(B, threads, F32, wbytes, bt)
    return tuple(w for w, _ in tiling.split_tiles(np.arange(B, 0, -1), bt, rest, 16)[1])


@pytest.mark.parametrize(
    "B, threads, parts",
    [(37, 2, (16, FEW)), (33, 2, (16, 1)), (30, 2, (16,)), (45, 2, (16, FEW)), (26, 2, (16, FEW)), (48, 2, (32,)),
     (14, 1, (16,)), (21, 1, (16, FEW))],
)  # fmt: skip
def test_weights_over_l2_put_mid_size_batches_in_lane_tiles(B, threads, parts):
    # two threads, LSTM 40->384 x3, B=37, T=160, `chrt -f 1`: 12% less wall time than ten FEW tiles
    assert _parts(B, threads, OVER_L2) == parts  # before: FEW tiles for all of them (FEW and FEW + 1)


def test_a_streamed_few_tile_costs_more_than_one_in_l2():
    assert tiling.STREAMED_FEW_COST > tiling.FEW_TILE_COST
    # per sequence a FEW tile still costs more than a 16-lane tile: a whole vector of lanes goes to lane tiles
    assert tiling.STREAMED_FEW_COST / FEW > tiling.STREAMED_TILE_COST


@pytest.mark.parametrize("threads", [1, 2])
def test_a_stack_over_l2_keeps_each_rows_bits_in_its_new_plan(threads, monkeypatch):
    # LSTM 40 -> 256 x2: 1.16 MB per layer packed, over L2; B=37 runs two 16-lane tiles and two FEW tiles
    _, spec, weights = build("lstm", 40, 256, 2, False, True, np.float32, seed=31)
    prepared = kernels.prepare(spec, weights)
    assert max(pk.w.nbytes for pk in prepared.layers) > L2_BYTES
    rng = np.random.default_rng(32)
    B, T = 37, 6
    x = rng.standard_normal((B, T, 40)).astype(np.float32)
    lengths = rng.integers(1, T + 1, B).astype(np.int64)
    seen = []
    split = tiling.split_tiles
    monkeypatch.setattr(kernels, "ONE_THREAD_WORK", 0)  # a call this small would run on one thread
    monkeypatch.setattr(kernels, "split_tiles", lambda *a: seen.append(a[1:3]) or split(*a))
    monkeypatch.setattr(kernels, "team_width", lambda *a: False)  # tiles, not teams (test_kernels_part_teams.py)
    got = kernels.run(prepared, x, lengths, None, None, "all", threads)
    assert seen[-1][0] == 16 if threads == 2 else seen[-1][0] > FEW  # lane tiles, not FEW tiles
    monkeypatch.setattr(kernels, "tile_width", lambda *a: FEW)  # the plan before: FEW tiles only
    monkeypatch.setattr(kernels, "remainder_width", lambda *a: 0)
    few = kernels.run(prepared, x, lengths, None, None, "all", threads)
    assert seen[-1] == (FEW, 0)
    for a, b in zip(got, few):
        if b is not None:
            np.testing.assert_array_equal(a, b)
    for b in (0, B - 1):  # and what a row gets scored alone
        one = kernels.run(prepared, x[b : b + 1], lengths[b : b + 1], None, None, "all", 1)
        np.testing.assert_array_equal(one[0][0], got[0][b])
