"""A team's set-up kept with its call plan (`rnnjit.kernels._TeamPlan`): repeat calls with the same lengths reuse
the lane tables and first rows, and must still read each call's own inputs, tokens and initial states.

A kept plan with stale first rows would give a repeat call the first call's first step; these tests vary
everything but the lengths between calls and compare each team call with one thread.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_kernels import build
from test_kernels_hot import _same

from rnnjit import kernels
from rnnjit.kernels import team_policy
from rnnjit.kernels.layer import STEP_BLOCK


@pytest.fixture
def teams(monkeypatch):
    """Every batch of one as a team (hot helper or pool), never paused; the team runs are recorded."""
    monkeypatch.setattr(team_policy, "TEAM_MIN_BYTES", 0)
    monkeypatch.setattr(team_policy, "L2_BYTES", 0)  # a stack's layers as teams, not a wavefront
    monkeypatch.setattr(team_policy, "b1_team", lambda weight_bytes: True)
    monkeypatch.setattr(team_policy, "note_spins", lambda spins, steps: None)
    monkeypatch.setattr(team_policy, "note_alone", lambda alone: None)
    monkeypatch.setattr(team_policy, "_team_paused_until", 0.0)
    monkeypatch.setattr(kernels, "ONE_THREAD_WORK", 0)
    ran = []
    real = kernels._run_team
    monkeypatch.setattr(kernels, "_run_team", lambda values, n, chunks: (ran.append(n), real(values, n, chunks)))
    return ran


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bidir", [False, True], ids=["forward", "bidirectional"])
def test_repeat_team_calls_with_the_same_lengths_read_their_own_inputs_and_states(cell, bidir, teams):
    _, spec, weights = build(cell, 9, 128, 2, bidir, True, np.float32, seed=31)  # 128 units: two chunks a step
    prepared = kernels.prepare(spec, weights)
    T = STEP_BLOCK + 5
    rng = np.random.default_rng(32)
    LD = 2 * (2 if bidir else 1)
    for call in range(3):  # the same lengths each time: the kept call plan (and its team plan) is reused
        x = rng.standard_normal((1, T, 9)).astype(np.float32)
        h0 = rng.standard_normal((LD, 1, 128)).astype(np.float32)
        c0 = rng.standard_normal((LD, 1, 128)).astype(np.float32) if cell == "lstm" else None
        lengths = np.array([T - 3])
        one = kernels.run(prepared, x, lengths, h0, c0, "all", 1)
        team = kernels.run(prepared, x, lengths, h0, c0, "all", 2)
        _same(one, team)
    assert len(prepared.cache["calls"]) == 2  # one kept plan per thread count, whatever the call
    assert teams and all(n == 2 for n in teams)


@pytest.mark.parametrize("bidir", [False, True], ids=["forward", "bidirectional"])
def test_repeat_few_team_calls_on_token_ids_look_up_each_calls_first_rows(bidir, teams, monkeypatch):
    # a batch of 3 in one FEW tile run as a team: its z buffer takes each sequence's first row (a one-sequence
    # team projects its inputs first and reads none), and a reverse direction starts at each sequence's last step
    monkeypatch.setattr(team_policy, "FEW_TEAM_BYTES", 0)
    monkeypatch.setattr(team_policy, "FEW_TEAM_EVEN_BYTES", 0)
    monkeypatch.setattr(kernels, "SPLIT_WORK", float("inf"))  # both directions as teams, in turn
    _, spec, weights = build("lstm", 7, 128, 1, bidir, True, np.float32, seed=33)
    prepared = kernels.prepare(spec, weights)
    table = np.random.default_rng(34).standard_normal((50, 7)).astype(np.float32)
    rng = np.random.default_rng(35)
    T = 20
    lengths = np.array([20, 7, 13])
    firsts = set()
    for call in range(3):  # the same lengths: the kept plan; other tokens each call
        ids = rng.integers(0, 50, (3, T)).astype(np.int64)
        firsts.add(tuple(ids[:, 0]))
        one = kernels.run(prepared, ids, lengths, None, None, "all", 1, table=table)
        team = kernels.run(prepared, ids, lengths, None, None, "all", 2, table=table)
        _same(one, team)
    assert len(firsts) == 3 and len(teams) == 3 * (2 if bidir else 1)  # each call's directions as FEW teams
