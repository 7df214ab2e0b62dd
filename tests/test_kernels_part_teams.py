"""A mid-size batch over a core's L2 run as teams part after part (`rnnjit.kernels.tiling.team_width`): its whole
SIMD vectors in one lane tile, the rest in FEW tiles side by side, each part's step's gate rows shared by two
threads. Every row keeps the bits it has alone, in tiles handed out to the threads, and on one thread.

Small shapes: 128 hidden units make a few chunks per step; the weight limits are lowered so they count as over L2.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_kernels import build
from test_kernels_few_team import _same

from rnnjit import kernels
from rnnjit.kernels import team_policy, tiling
from rnnjit.kernels._simd import FEW
from rnnjit.kernels.team_policy import L2_BYTES

F32 = np.dtype(np.float32)


def _forced(monkeypatch):
    """Part teams for any batch the plan allows, never paused by a busy machine; the teams run are listed."""
    monkeypatch.setattr(team_policy, "FEW_TEAM_BYTES", 0)
    monkeypatch.setattr(team_policy, "note_spins", lambda spins, steps: None)
    monkeypatch.setattr(team_policy, "note_alone", lambda alone: None)
    monkeypatch.setattr(team_policy, "_team_paused_until", 0.0)
    monkeypatch.setattr(kernels, "ONE_THREAD_WORK", 0)
    monkeypatch.setattr(kernels, "PART_TEAM_WORK", 0)
    monkeypatch.setattr(kernels, "team_width", lambda B, threads, *a: threads == 2 and B > 16)
    teams = []
    real = kernels._run_team
    monkeypatch.setattr(kernels, "_run_team", lambda values, workers, chunks: teams.append(
        (values["bt"], int(values["tile_ptr"][0]), int(values["tile_ptr"][-1]))) or real(values, workers, chunks))
    return teams


@pytest.mark.parametrize(
    "cell, layers, select, dtype",
    [("lstm", 2, "all", np.float32), ("lstm", 1, "final", np.float32), ("gru", 2, "last", np.float32),
     ("rnn_tanh", 1, "all", np.float32), ("lstm", 2, "all", np.float64)],
)  # fmt: skip
def test_part_teams_keep_each_rows_bits(cell, layers, select, dtype, monkeypatch):
    _, spec, weights = build(cell, 9, 128, layers, False, True, dtype, seed=41)
    prepared = kernels.prepare(spec, weights)
    rng = np.random.default_rng(42)
    B, T = 37, 11  # float32: 2 vectors of 16 and 5 left; float64: 4 vectors of 8 and 5 left
    x = rng.standard_normal((B, T, 9)).astype(dtype)
    lengths = rng.integers(1, T + 1, B).astype(np.int64)  # ragged: lanes end at different steps
    teams = _forced(monkeypatch)
    got = kernels.run(prepared, x, lengths, None, None, select, 2)
    # 32 lanes, then 5 sequences in two FEW tiles side by side, per layer
    assert teams == [(32, 0, 32), (FEW, 32, 37)] * layers
    tiles = kernels.run(prepared, x, lengths, None, None, select, 1)
    _same(got, tiles)
    for b in (0, 20, B - 1):  # a row alone
        one = kernels.run(prepared, x[b : b + 1], lengths[b : b + 1], None, None, select, 1)
        _same(got, one, slice(b, b + 1))
    # a whole number of vectors: one lane team; teams paused: tiles handed out, the same bits
    n = len(teams)
    whole = kernels.run(prepared, x[:32], lengths[:32], None, None, select, 2)
    assert teams[n:] == [(32, 0, 32)] * layers
    monkeypatch.setattr(team_policy, "_team_paused_until", float("inf"))
    paused = kernels.run(prepared, x, lengths, None, None, select, 2)
    assert len(teams) == n + layers
    _same(paused, got)
    _same(whole, kernels.run(prepared, x[:32], lengths[:32], None, None, select, 1))


@pytest.mark.parametrize("B", [33, 37, 41, 48, 49])
def test_mid_size_batches_over_l2_run_as_part_teams_on_two_threads(B):
    wbytes = 4 * L2_BYTES + 1  # a layer of LSTM 384 -> 384
    bt = tiling.tile_width(B, 2, F32, wbytes)
    rest = tiling.remainder_width(B, 2, F32, wbytes, bt)
    assert tiling.team_width(B, 2, F32, wbytes, bt, rest)
    assert not tiling.team_width(B, 1, F32, wbytes, bt, rest)  # one thread: no team
    assert not tiling.team_width(B, 2, F32, L2_BYTES // 2, bt, rest)  # in L2: tiles per thread


@pytest.mark.parametrize("B", [64, 77, 100, 128, 256])
def test_batches_whose_tiles_share_out_evenly_keep_their_tiles(B):
    wbytes = 4 * L2_BYTES + 1
    bt = tiling.tile_width(B, 2, F32, wbytes)
    rest = tiling.remainder_width(B, 2, F32, wbytes, bt)
    assert not tiling.team_width(B, 2, F32, wbytes, bt, rest)


def test_a_short_call_keeps_its_tiles(monkeypatch):
    # the second thread of a team often joins a short call late (`kernels.PART_TEAM_WORK`)
    _, spec, weights = build("lstm", 9, 128, 1, False, True, np.float32, seed=43)
    prepared = kernels.prepare(spec, weights)
    x = np.random.default_rng(44).standard_normal((37, 5, 9)).astype(np.float32)
    lengths = np.full(37, 5, np.int64)
    teams = _forced(monkeypatch)
    monkeypatch.setattr(kernels, "PART_TEAM_WORK", 5 * prepared.layers[0].w.nbytes + 1)
    short = kernels.run(prepared, x, lengths, None, None, "last", 2)
    assert teams == []
    monkeypatch.setattr(kernels, "PART_TEAM_WORK", 5 * prepared.layers[0].w.nbytes)
    _same(kernels.run(prepared, x, lengths, None, None, "last", 2), short)
    assert teams == [(32, 0, 32), (FEW, 32, 37)]
