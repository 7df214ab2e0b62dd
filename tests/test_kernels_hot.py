"""A team run with the hot helper thread (`rnnjit.kernels.hot`) has the bits of one thread and of the pool's team.

Small shapes: 64 hidden units (one row group per gate, eight unit blocks) make a team of one chunk per step,
so the tests use 128 (two chunks) where the team splits a step; the policy's byte minimum is set to 0.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_kernels import build

from rnnjit import kernels
from rnnjit.kernels import hot, team_policy
from rnnjit.kernels.layer import STEP_BLOCK


def _runs(prepared, x, lengths, select, monkeypatch):
    """(one thread, hot team, pool team) results of one call."""
    monkeypatch.setattr(team_policy, "TEAM_MIN_BYTES", 0)
    monkeypatch.setattr(team_policy, "b1_team", lambda weight_bytes: True)  # the team, not the faster way measured
    monkeypatch.setattr(team_policy, "note_spins", lambda spins, steps: None)  # never paused by a busy machine
    monkeypatch.setattr(team_policy, "note_alone", lambda alone: None)
    monkeypatch.setattr(team_policy, "_team_paused_until", 0.0)
    monkeypatch.setattr(kernels, "ONE_THREAD_WORK", 0)
    ran = []
    real = kernels.run_team_hot
    monkeypatch.setattr(kernels, "run_team_hot", lambda values: ran.append(1) or real(values))
    one = kernels.run(prepared, x, lengths, None, None, select, 1)
    hot_team = kernels.run(prepared, x, lengths, None, None, select, 2)
    monkeypatch.setattr(kernels, "hot_available", lambda dtype: False)
    pool_team = kernels.run(prepared, x, lengths, None, None, select, 2)
    return one, hot_team, pool_team, ran


def _same(a, b):
    for u, v in zip(a, b):
        if u is None:
            assert v is None
        else:
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("select", ["all", "last"])
def test_a_hot_team_has_the_bits_of_one_thread(cell, select, dtype, monkeypatch):
    _, spec, weights = build(cell, 9, 128, 1, False, True, dtype, seed=21)
    prepared = kernels.prepare(spec, weights)
    T = STEP_BLOCK + 7  # two blocks of projected steps
    x = np.random.default_rng(22).standard_normal((1, T, 9)).astype(dtype)
    one, hot_team, pool_team, ran = _runs(prepared, x, np.array([T]), select, monkeypatch)
    assert ran == ([1] if hot.hot_available(dtype) else [])  # none under NUMBA_DISABLE_JIT
    _same(one, hot_team)
    _same(one, pool_team)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_bidirectional_stack_and_a_projected_lstm_keep_their_bits_with_hot_teams_on(cell, monkeypatch):
    # a bidirectional stack on two threads: its directions at once or each a team, whichever the plan picks
    _, spec, weights = build(cell, 6, 128, 2, True, True, np.float32, seed=23)
    prepared = kernels.prepare(spec, weights)
    T = 20
    x = np.random.default_rng(24).standard_normal((1, T, 6)).astype(np.float32)
    one, hot_team, pool_team, _ = _runs(prepared, x, np.array([T]), "all", monkeypatch)
    _same(one, hot_team)
    _same(one, pool_team)
    _, spec, weights = build("lstmp", 6, 128, 2, False, True, np.float32, seed=25)
    assert spec.proj_size and team_policy.team_chunks(spec, 1, 2, 1 << 30) is None  # a projection: no team
    prepared = kernels.prepare(spec, weights)
    one, two, _, ran = _runs(prepared, x, np.array([T]), "all", monkeypatch)
    assert ran == []
    _same(one, two)


@pytest.mark.skipif(not hot.hot_available(np.float32), reason="no helper thread under NUMBA_DISABLE_JIT")
def test_a_sleeping_helper_is_woken_and_a_busy_one_leaves_the_team_to_the_pool(monkeypatch):
    _, spec, weights = build("lstm", 5, 128, 1, False, True, np.float32, seed=26)
    prepared = kernels.prepare(spec, weights)
    T = 40
    x = np.random.default_rng(27).standard_normal((1, T, 5)).astype(np.float32)
    one, *_ = _runs(prepared, x, np.array([T]), "all", monkeypatch)
    monkeypatch.setattr(kernels, "hot_available", hot.hot_available)
    monkeypatch.setattr(hot, "SERVE_SPIN", 0)  # the helper sleeps as soon as it has nothing to do
    for _ in range(3):
        _same(one, kernels.run(prepared, x, np.array([T]), None, None, "all", 2))
    helper = hot._helper
    assert helper is not None and helper.thread.is_alive()
    pooled = []
    monkeypatch.setattr(kernels, "parallel", lambda n, fn, args: (pooled.append(n), fn(*args)))
    with helper.busy:  # another Python thread's team holds the helper: this one goes through the pool
        _same(one, kernels.run(prepared, x, np.array([T]), None, None, "all", 2))
    assert 2 in pooled
