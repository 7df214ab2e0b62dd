"""A FEW-sequence tile run as a team (`rnnjit.kernels.team_policy.FEW_TEAM_BYTES`) gives each row the bits of one thread
and of the same row in a batch of lane tiles.

Small shapes: 128 hidden units make two chunks per step (P_ROWS unit blocks each); the policy's byte minimums are 0.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from test_kernels import build

from rnnjit import kernels
from rnnjit.kernels import team_policy
from rnnjit.kernels._simd import FEW


def _forced(monkeypatch):
    """FEW tiles that run as teams whatever their size, never paused by a busy machine; the teams run are listed."""
    monkeypatch.setattr(team_policy, "FEW_TEAM_BYTES", 0)
    monkeypatch.setattr(team_policy, "FEW_TEAM_EVEN_BYTES", 0)
    monkeypatch.setattr(team_policy, "note_spins", lambda spins, steps: None)
    monkeypatch.setattr(team_policy, "note_alone", lambda alone: None)
    monkeypatch.setattr(team_policy, "_team_paused_until", 0.0)
    monkeypatch.setattr(kernels, "ONE_THREAD_WORK", 0)
    monkeypatch.setattr(kernels, "team_width", lambda *a: False)  # wide batches in tiles (test_kernels_part_teams)
    teams = []
    real = kernels._run_team
    monkeypatch.setattr(kernels, "_run_team", lambda values, workers, chunks: teams.append(values["bt"])
                        or real(values, workers, chunks))  # fmt: skip
    return teams


def _as_in_wide(wide, b, rows):
    """`_same` against the rows of a batch of lane tiles; not under NUMBA_DISABLE_JIT, where the micro-kernels'
    pure-Python twins sum with numpy in each tile's own order."""
    if not numba.config.DISABLE_JIT:
        _same(wide, b, rows)


def _same(a, b, rows=slice(None)):
    """``run``'s outputs (y, h_n, c_n): ``a``'s ``rows`` against all of ``b`` (y's first axis, the states' second)."""
    for i, (u, v) in enumerate(zip(a, b)):
        if u is None:
            assert v is None
        else:
            np.testing.assert_array_equal(u[rows] if i == 0 else u[:, rows], v)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("select", ["all", "last"])
def test_a_few_sequence_team_has_the_bits_of_one_thread_and_of_a_wide_batch(cell, select, dtype, monkeypatch):
    _, spec, weights = build(cell, 7, 128, 1, False, True, dtype, seed=31)
    prepared = kernels.prepare(spec, weights)
    rng = np.random.default_rng(32)
    x = rng.standard_normal((40, 23, 7)).astype(dtype)
    lengths = np.array([23, 5, 17, 1, 9, 23, 2] + [int(v) for v in rng.integers(1, 24, 33)])  # ragged
    teams = _forced(monkeypatch)
    wide = kernels.run(prepared, x, lengths, None, None, select, 2)  # lane tiles
    assert teams == []
    assert kernels.tile_width(3, 2, prepared.dtype, prepared.layers[0].w.nbytes) == FEW
    team = kernels.run(prepared, x[:3], lengths[:3], None, None, select, 2)
    assert teams == [FEW]
    one = kernels.run(prepared, x[:3], lengths[:3], None, None, select, 1)
    assert teams == [FEW]
    _same(one, team)
    _as_in_wide(wide, team, slice(0, 3))
    # two sequences: one FEW tile as a team, not a one-sequence tile per thread; with teams paused, the latter
    team = kernels.run(prepared, x[:2], lengths[:2], None, None, select, 2)
    assert teams == [FEW, FEW]
    monkeypatch.setattr(team_policy, "_team_paused_until", float("inf"))
    paused = kernels.run(prepared, x[:2], lengths[:2], None, None, select, 2)
    assert teams == [FEW, FEW]
    _as_in_wide(wide, team, slice(0, 2))
    _as_in_wide(wide, paused, slice(0, 2))
    # FEW tiles side by side in one team: 7 sequences (a padded second tile), 13 (four tiles, the last of one)
    monkeypatch.setattr(team_policy, "_team_paused_until", 0.0)
    for B in (7, 13):
        assert B <= team_policy.FEW_TEAM_TILES * FEW
        few = kernels.tile_width(B, 2, prepared.dtype, prepared.layers[0].w.nbytes) <= FEW  # not a lane tile
        n = len(teams)
        team = kernels.run(prepared, x[:B], lengths[:B], None, None, select, 2)
        assert teams == [FEW] * (n + few)
        _as_in_wide(wide, team, slice(0, B))
    assert dtype != np.float32 or len(teams) == 4  # float32: both batches as teams
    # five or eight sequences, two FEW tiles, one per thread: a team only over FEW_TEAM_EVEN_BYTES
    monkeypatch.setattr(team_policy, "FEW_TEAM_EVEN_BYTES", prepared.layers[0].w.nbytes)
    n = len(teams)
    for B in (5, 8):
        even = kernels.run(prepared, x[:B], lengths[:B], None, None, select, 2)
        _as_in_wide(wide, even, slice(0, B))
    assert teams == [FEW] * n


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_bidirectional_stack_of_few_sequence_teams_keeps_its_bits(cell, monkeypatch):
    # directions not split over the threads (as for a short call): each direction runs as a team, in turn
    _, spec, weights = build(cell, 5, 128, 2, True, True, np.float32, seed=33)
    prepared = kernels.prepare(spec, weights)
    x = np.random.default_rng(34).standard_normal((3, 19, 5)).astype(np.float32)
    lengths = np.array([19, 3, 11])
    teams = _forced(monkeypatch)
    monkeypatch.setattr(kernels, "SPLIT_WORK", float("inf"))
    team = kernels.run(prepared, x, lengths, None, None, "all", 2)
    assert teams == [FEW] * 4  # two layers, two directions
    more = kernels.run(prepared, np.tile(x[:, :6], (3, 1, 1)), np.array([6, 1, 4] * 3), None, None, "last", 2)
    assert teams == [FEW] * 8  # nine sequences: three FEW tiles in each team
    alone = kernels.run(prepared, x[:, :6], np.array([6, 1, 4]), None, None, "last", 1)
    for k in range(3):
        _same(more, alone, slice(3 * k, 3 * k + 3))
    one = kernels.run(prepared, x, lengths, None, None, "all", 1)
    _same(one, team)


def test_a_one_directional_stack_or_a_tile_in_l2_runs_no_few_sequence_team():
    _, spec, _ = build("lstm", 5, 128, 2, False, True, np.float32)
    assert team_policy.team_chunks(spec, FEW, 2, team_policy.FEW_TEAM_EVEN_BYTES) is None  # a stack: a wavefront
    _, spec, _ = build("lstm", 5, 128, 1, False, True, np.float32)
    assert team_policy.team_chunks(spec, FEW, 2, team_policy.L2_BYTES) is None  # in L2
    assert team_policy.team_chunks(spec, FEW, 1, 1 << 30) is None  # one thread
    assert team_policy.team_chunks(spec, FEW, 2, 1 << 30) == (8, 2)
