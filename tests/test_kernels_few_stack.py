"""A one-directional stack at a batch of 2-16: two or more FEW-sequence tiles run as one team per layer, layer after
layer (`rnnjit.kernels.team_policy.FEW_STACK_TILES`; one tile too over `FEW_TEAM_EVEN_BYTES`), and a bidirectional
layer whose FEW teams are over `FEW_TEAM_EVEN_BYTES` runs its directions in turn as teams, not one per thread; each
row keeps the bits of one thread and of a wide batch.

Small shapes: 128 hidden units make two chunks per step; the policy's byte minimums are 0.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_kernels import build
from test_kernels_few_team import _as_in_wide, _forced, _same

from rnnjit import kernels
from rnnjit.kernels import team_policy
from rnnjit.kernels._simd import FEW


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("select", ["all", "final"])
def test_a_stack_of_few_sequence_teams_has_the_bits_of_one_thread_and_of_a_wide_batch(cell, select, dtype,
                                                                                        monkeypatch):  # fmt: skip
    _, spec, weights = build(cell, 6, 128, 3, False, True, dtype, seed=41)
    prepared = kernels.prepare(spec, weights)
    rng = np.random.default_rng(42)
    x = rng.standard_normal((40, 21, 6)).astype(dtype)
    lengths = np.array([21, 4, 17, 1, 9, 21, 2, 13, 8, 20, 3, 16, 21] + [int(v) for v in rng.integers(1, 22, 27)])
    teams = _forced(monkeypatch)
    monkeypatch.setattr(team_policy, "WAVEFRONT_WORK", float("inf"))  # a single tile: layer after layer, no team
    wide = kernels.run(prepared, x, lengths, None, None, select, 2)  # lane tiles
    assert teams == []
    wbytes = max(pk.w.nbytes for pk in prepared.layers)
    for B in (6, 9, 13):  # two tiles (the second padded), three, four (the last of one sequence)
        if kernels.tile_width(B, 2, prepared.dtype, wbytes, kernels._layout(prepared).small) > FEW:
            continue  # the cost model put this batch in a lane tile
        n = len(teams)
        team = kernels.run(prepared, x[:B], lengths[:B], None, None, select, 2)
        assert teams == [FEW] * (n + 3)  # each of the three layers a team
        one = kernels.run(prepared, x[:B], lengths[:B], None, None, select, 1)
        assert len(teams) == n + 3
        _same(one, team)
        _as_in_wide(wide, team, slice(0, B))
    assert len(teams) >= 3  # at least one batch in FEW tiles
    # one FEW tile of a stack runs no team (a wavefront where the work is large enough) up to the even bytes
    n = len(teams)
    monkeypatch.setattr(team_policy, "FEW_TEAM_EVEN_BYTES", wbytes)
    kernels.run(prepared, x[:3], lengths[:3], None, None, select, 2)
    assert len(teams) == n
    # over them, one team per layer; two sequences too, as one FEW tile, not a one-sequence tile per thread
    monkeypatch.setattr(team_policy, "FEW_TEAM_EVEN_BYTES", wbytes - 1)
    for B in (3, 2):
        team = kernels.run(prepared, x[:B], lengths[:B], None, None, select, 2)
        assert teams == [FEW] * (n + 3)
        n = len(teams)
        _same(kernels.run(prepared, x[:B], lengths[:B], None, None, select, 1), team)
        _as_in_wide(wide, team, slice(0, B))


def test_a_stack_runs_few_sequence_teams_from_two_tiles():
    _, spec, _ = build("lstm", 5, 128, 2, False, True, np.float32)
    even = team_policy.FEW_TEAM_EVEN_BYTES
    assert team_policy.team_chunks(spec, FEW, 2, even, 1) is None  # one tile: a wavefront instead
    assert team_policy.team_chunks(spec, FEW, 2, even + 1, 1) == (8, 2)  # over the even bytes: a team
    assert team_policy.team_chunks(spec, FEW, 2, team_policy.FEW_TEAM_BYTES + 1, 2) == (8, 2)
    assert team_policy.team_chunks(spec, FEW, 2, 1 << 30, team_policy.FEW_STACK_TILES) == (8, 2)
    assert team_policy.team_chunks(spec, FEW, 2, team_policy.L2_BYTES, 3) is None  # in L2
    assert team_policy.team_chunks(spec, FEW, 1, 1 << 30, 3) is None  # one thread


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_bidirectional_layer_over_the_even_bytes_runs_its_directions_as_few_sequence_teams(cell, monkeypatch):
    _, spec, weights = build(cell, 6, 128, 2, True, True, np.float32, seed=43)
    prepared = kernels.prepare(spec, weights)
    rng = np.random.default_rng(44)
    x = rng.standard_normal((40, 19, 6)).astype(np.float32)
    lengths = np.array([19, 3, 11, 1, 19, 7, 14, 2, 9] + [int(v) for v in rng.integers(1, 20, 31)])
    teams = _forced(monkeypatch)
    monkeypatch.setattr(kernels, "SPLIT_WORK", 0)  # any call long enough to split its directions over the threads
    wide = kernels.run(prepared, x, lengths, None, None, "all", 2)
    assert teams == []
    for B in (8, 9):  # two FEW tiles (one per thread), three
        # weights at the even bytes: the directions split over the threads, each a tile per thread, no team
        monkeypatch.setattr(team_policy, "FEW_TEAM_EVEN_BYTES", max(pk.w.nbytes for pk in prepared.layers))
        split = kernels.run(prepared, x[:B], lengths[:B], None, None, "all", 2)
        assert teams == []
        # over them: each direction of each layer a team, in turn
        monkeypatch.setattr(team_policy, "FEW_TEAM_EVEN_BYTES", 0)
        team = kernels.run(prepared, x[:B], lengths[:B], None, None, "all", 2)
        assert teams == [FEW] * 4
        teams.clear()
        one = kernels.run(prepared, x[:B], lengths[:B], None, None, "all", 1)
        _same(one, team)
        _same(one, split)
        _as_in_wide(wide, team, slice(0, B))
