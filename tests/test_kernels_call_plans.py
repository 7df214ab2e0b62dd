"""Small calls run from a kept plan (`rnnjit.kernels._CallPlan`): the same bits as a fresh plan, on any thread.

A small batch's tiles and worker arguments are worked out once per lengths
(and per choice of team, direction split and wavefront) and kept on the
`Prepared`. A repeat call (and calls on several threads at once, sharing the
plan) must give exactly what a call with a fresh plan gives, and what torch
gives. Most tests here restore `ONE_THREAD_WORK` (tests/conftest.py sets 0),
so small calls also take the one-thread plans they take for users.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from test_kernels import SELECTS, TOL, build, max_err, torch_run
from test_kernels_hot import _same  # kernels.run's results, the same bits

from rnnjit import kernels

ONE_THREAD_WORK = kernels.ONE_THREAD_WORK  # the library's value (tests/conftest.py sets 0 for every test)


def _inputs(B, T, I, seed, dtype, tokens=None):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, T + 1, B).astype(np.int64)
    lengths[-1] = T
    if tokens:
        return rng.integers(0, tokens, (B, T)), lengths
    return rng.standard_normal((B, T, I)).astype(dtype), lengths


def _general(monkeypatch, fn):
    """``fn()`` with a fresh plan (none kept or used)."""
    with monkeypatch.context() as m:
        m.setattr(kernels, "SMALL_LENGTHS", 0)
        return fn()


def _on_threads(n_cases, check, threads=4, repeats=10):
    """``check(j, i)`` for every case i, ``repeats`` times in a random order per thread, on ``threads`` threads
    started together; the first failure is raised here."""
    errors, start = [], threading.Barrier(threads)

    def work(seed):
        order = np.random.default_rng(seed).permutation(n_cases * repeats) % n_cases
        start.wait()
        try:
            for j, i in enumerate(order):
                check(j, i)
        except AssertionError as exc:
            errors.append(exc)

    running = [threading.Thread(target=work, args=(s,)) for s in range(threads)]
    for t in running:
        t.start()
    for t in running:
        t.join()
    assert not errors, errors[0]


@pytest.mark.parametrize("cell", ["lstm", "lstmp", "gru", "rnn_tanh"])
@pytest.mark.parametrize("layers,bidir", [(1, False), (2, False), (1, True), (2, True)],
                         ids=lambda v: f"{v}")  # fmt: skip
@pytest.mark.parametrize("B", [1, 3, 17], ids=lambda b: f"{b=}")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_a_kept_plan_gives_the_general_paths_bits(monkeypatch, cell, layers, bidir, B, dtype):
    monkeypatch.setattr(kernels, "ONE_THREAD_WORK", ONE_THREAD_WORK)
    I, H, T = 5, 16 if B < 17 else 8, 7
    mod, spec, weights = build(cell, I, H, layers, bidir, True, dtype, seed=B)
    prepared = kernels.prepare(spec, weights)
    x, lengths = _inputs(B, T, I, B, dtype)
    h0 = np.random.default_rng(1).standard_normal(spec.state_shapes(B)[0]).astype(dtype)
    for select in SELECTS:
        want = _general(monkeypatch, lambda: kernels.run(prepared, x, lengths, None, None, select, 2))
        first = kernels.run(prepared, x, lengths, None, None, select, 2)  # builds the plan
        again = kernels.run(prepared, x, lengths, None, None, select, 2)  # runs from it
        _same(first, want)
        _same(again, want)
        with_h0 = kernels.run(prepared, x, lengths, h0, None, select, 1)
        _same(with_h0, _general(monkeypatch, lambda: kernels.run(prepared, x, lengths, h0, None, select, 1)))
    assert prepared.cache.get("calls"), "no plan was kept: the test did not exercise the planned path"
    y, hn, cn = kernels.run(prepared, x, lengths, None, None, "all", 2)
    ty, th, tc = torch_run(mod, x, lengths, None, None)
    assert max_err(y, ty) <= TOL[dtype] and max_err(hn, th) <= TOL[dtype] and max_err(cn, tc) <= TOL[dtype]


def test_token_ids_and_other_lengths_get_their_own_plans(monkeypatch):
    monkeypatch.setattr(kernels, "ONE_THREAD_WORK", ONE_THREAD_WORK)
    mod, spec, weights = build("lstm", 6, 12, 1, True, True, np.float32, seed=3)
    prepared = kernels.prepare(spec, weights)
    table = np.random.default_rng(0).standard_normal((30, 6)).astype(np.float32)
    for T in (1, 4, 9):
        for seed in range(3):
            ids, lengths = _inputs(2, T, 6, seed, np.float32, tokens=30)
            want = _general(monkeypatch, lambda: kernels.run(prepared, ids, lengths, None, None, "all", 1, table=table))
            for _ in range(2):
                _same(kernels.run(prepared, ids, lengths, None, None, "all", 1, table=table), want)
    assert len(prepared.cache["calls"]) >= 3


def test_plans_are_bounded(monkeypatch):
    monkeypatch.setattr(kernels, "ONE_THREAD_WORK", ONE_THREAD_WORK)
    monkeypatch.setattr(kernels, "CALL_PLANS", 4)
    _, spec, weights = build("gru", 3, 8, 1, False, True, np.float32)
    prepared = kernels.prepare(spec, weights)
    for T in range(1, 12):
        x, lengths = _inputs(1, T, 3, T, np.float32)
        kernels.run(prepared, x, lengths, None, None, "last", 1)
        assert len(prepared.cache["calls"]) <= 4


@pytest.mark.parametrize("cell,layers,bidir", [("lstm", 2, True), ("gru", 2, False)])
def test_calls_on_several_threads_share_plans_and_keep_their_bits(monkeypatch, cell, layers, bidir):
    monkeypatch.setattr(kernels, "ONE_THREAD_WORK", ONE_THREAD_WORK)
    _, spec, weights = build(cell, 4, 16, layers, bidir, True, np.float32, seed=7)
    prepared = kernels.prepare(spec, weights)
    # a few distinct lengths, each called from every thread: the threads build and share the same plans
    cases = [_inputs(B, T, 4, 10 * B + T, np.float32) for B in (1, 2, 5) for T in (3, 8)]
    h0 = [np.random.default_rng(i).standard_normal(spec.state_shapes(x.shape[0])[0]).astype(np.float32)
          for i, (x, _) in enumerate(cases)]  # fmt: skip
    want = [_general(monkeypatch, lambda x=x, n=n, h=h: kernels.run(prepared, x, n, h, None, "all", 1))
            for (x, n), h in zip(cases, h0)]  # fmt: skip
    want_zero = [_general(monkeypatch, lambda x=x, n=n: kernels.run(prepared, x, n, None, None, "all", 1))
                 for x, n in cases]  # fmt: skip

    def check(j, i):
        x, n = cases[i]
        given = j % 2 == 1  # the same plan with and without an initial state
        _same(kernels.run(prepared, x, n, h0[i] if given else None, None, "all", 1), want[i] if given else want_zero[i])

    _on_threads(len(cases), check)
    assert prepared.cache.get("calls")


def test_predict_on_several_threads_at_once_keeps_each_calls_bits(monkeypatch, tmp_path):
    """A tagger's chain (embedding, BiLSTM, linear, relu, linear per token) on one `Model` from four threads."""
    import torch

    import rnnjit

    monkeypatch.setattr(kernels, "ONE_THREAD_WORK", ONE_THREAD_WORK)
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.ModuleDict({"emb": nn.Embedding(40, 8), "rnn": nn.LSTM(8, 12, batch_first=True, bidirectional=True),
                         "fc1": nn.Linear(24, 10), "fc2": nn.Linear(10, 30)})  # fmt: skip
    torch.save(net.state_dict(), tmp_path / "m.pth")
    rnnjit.convert(tmp_path / "m.pth", tmp_path / "m.npz", chain="emb,rnn,fc1,relu,fc2", output="all",
                   reference=False)  # fmt: skip
    model = rnnjit.load(tmp_path / "m.npz")
    cases = [_inputs(B, T, 0, 7 * B + T, np.float32, tokens=40) for B in (1, 3) for T in (2, 6, 11)]
    want = [_general(monkeypatch, lambda x=x, n=n: model.predict(x, n, engine="numba", threads=1)) for x, n in cases]
    ref = [model.predict(x, n, engine="numpy") for x, n in cases]
    for w, r in zip(want, ref):
        assert max_err(w, r) <= 1e-5

    def check(j, i):
        x, n = cases[i]
        np.testing.assert_array_equal(model.predict(x, n, engine="numba", threads=2), want[i])

    _on_threads(len(cases), check)


def test_a_kept_plan_follows_a_paused_team(monkeypatch):
    """The choices (team, split, wavefront) are made on every call: a team paused by a busy machine is not run
    from a plan kept before the pause, and the team runs again once the pause is over."""
    from rnnjit.kernels import team_policy

    monkeypatch.setattr(team_policy, "TEAM_MIN_BYTES", 0)  # the team path for a batch of one,
    monkeypatch.setattr(team_policy, "L2_BYTES", 0)  # not the timed choice of one in L2 (`team_policy.b1_team`)
    monkeypatch.setattr(team_policy, "_team_paused_until", 0.0)
    monkeypatch.setattr(team_policy, "note_spins", lambda spins, steps: None)  # never paused by this machine
    run_team, teams = kernels._run_team, []
    monkeypatch.setattr(kernels, "_run_team", lambda values, n, chunks: (teams.append(n), run_team(values, n, chunks)))
    _, spec, weights = build("lstm", 8, 64, 1, False, True, np.float32, seed=5)
    prepared = kernels.prepare(spec, weights)
    x, lengths = _inputs(1, 9, 8, 0, np.float32)
    want = kernels.run(prepared, x, lengths, None, None, "all", 2)
    assert teams == [2]
    monkeypatch.setattr(team_policy, "_team_paused_until", float("inf"))
    _same(kernels.run(prepared, x, lengths, None, None, "all", 2), want)
    assert teams == [2]
    monkeypatch.setattr(team_policy, "_team_paused_until", 0.0)
    _same(kernels.run(prepared, x, lengths, None, None, "all", 2), want)
    assert teams == [2, 2]
    assert len(prepared.cache["calls"]) == 2


def test_a_plan_over_the_kept_zeros_bytes_allocates_its_zero_states_per_call(monkeypatch):
    monkeypatch.setattr(kernels, "ONE_THREAD_WORK", ONE_THREAD_WORK)
    monkeypatch.setattr(kernels, "KEPT_ZEROS_BYTES", 0)
    _, spec, weights = build("lstm", 4, 16, 2, True, True, np.float32, seed=2)
    prepared = kernels.prepare(spec, weights)
    x, lengths = _inputs(3, 6, 4, 0, np.float32)
    want = _general(monkeypatch, lambda: kernels.run(prepared, x, lengths, None, None, "all", 1))
    for _ in range(2):
        _same(kernels.run(prepared, x, lengths, None, None, "all", 1), want)
    (plan,) = prepared.cache["calls"].values()
    assert plan.h0 is None and plan.c0 is None
