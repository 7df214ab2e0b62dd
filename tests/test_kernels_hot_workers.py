"""Tile workers whose second thread's share runs on the hot helper (`rnnjit.kernels.hot.run_workers_hot`) have the
bits of one thread and of the pool; a job the helper has not started is taken back; a busy helper leaves it to the pool;
quantized weights go through the pool; a process compiles only the helper jobs it runs (each called by address).

Small shapes; teams and wavefronts are switched off so every plan runs plain tile workers (`run_worker`).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from test_kernels import build
from test_kernels_hot import _same

from rnnjit import kernels
from rnnjit.kernels import hot

pytestmark = pytest.mark.skipif(not hot.hot_available(np.float32), reason="no helper thread under NUMBA_DISABLE_JIT")


def _plain_workers(monkeypatch):
    """Every call on two threads as tile workers (no team, no wavefront, no one-thread shortcut); the
    `run_workers_hot` calls recorded as (parts, own is other, ran)."""
    monkeypatch.setattr(kernels, "ONE_THREAD_WORK", 0)
    monkeypatch.setattr(kernels, "team_chunks", lambda *a: None)
    monkeypatch.setattr(kernels, "wavefront_workers", lambda *a: 0)
    seen = []
    real = kernels.run_workers_hot
    monkeypatch.setattr(kernels, "run_workers_hot",
                        lambda own, other: seen.append((len(other), own is other, real(own, other))) or seen[-1][2])
    return seen


def _three(prepared, x, lengths, select, monkeypatch):
    """(one thread, two threads with the helper, two threads through the pool)."""
    one = kernels.run(prepared, x, lengths, None, None, select, 1)
    hot_two = kernels.run(prepared, x, lengths, None, None, select, 2)
    monkeypatch.setattr(kernels, "HOT_WORKERS", False)
    pool_two = kernels.run(prepared, x, lengths, None, None, select, 2)
    monkeypatch.setattr(kernels, "HOT_WORKERS", True)
    return one, hot_two, pool_two


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh", "lstmp"])
def test_tile_workers_on_the_hot_helper_keep_the_bits_of_one_thread(cell, dtype, monkeypatch):
    seen = _plain_workers(monkeypatch)
    _, spec, weights = build(cell, 7, 24, 2, False, True, dtype, seed=31)  # a stack: tiles' own layout between
    prepared = kernels.prepare(spec, weights)
    rng = np.random.default_rng(32)
    for B in (5, 13, 37):  # FEW tiles; lane tiles and a remainder (two parts a thread)
        x = rng.standard_normal((B, 11, 7)).astype(dtype)
        lengths = rng.integers(1, 12, B)
        for select in ("all", "final", "max"):
            one, hot_two, pool_two = _three(prepared, x, lengths, select, monkeypatch)
            _same(one, hot_two)
            _same(one, pool_two)
    # every call on the helper, the same tiles shared
    assert seen and all(ran and same for _, same, ran in seen)
    if cell == "lstm":  # its B=37 plan: a thread's share in two parts, run in turn on the helper
        assert 2 in {parts for parts, _, _ in seen}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_directions_at_once_run_one_on_the_helper(cell, monkeypatch):
    seen = _plain_workers(monkeypatch)
    monkeypatch.setattr(kernels, "SPLIT_WORK", 0)
    _, spec, weights = build(cell, 6, 20, 2, True, True, np.float32, seed=33)
    prepared = kernels.prepare(spec, weights)
    rng = np.random.default_rng(34)
    x = rng.standard_normal((9, 15, 6)).astype(np.float32)
    lengths = rng.integers(1, 16, 9)
    one, hot_two, pool_two = _three(prepared, x, lengths, "all", monkeypatch)
    _same(one, hot_two)
    _same(one, pool_two)
    assert seen and all(ran and not same for _, same, ran in seen)  # each direction its own job


def test_a_job_the_helper_never_starts_is_taken_back_and_a_busy_helper_leaves_it_to_the_pool(monkeypatch):
    seen = _plain_workers(monkeypatch)
    monkeypatch.setattr(kernels, "SPLIT_WORK", 0)
    _, spec, weights = build("lstm", 6, 20, 1, True, True, np.float32, seed=35)
    prepared = kernels.prepare(spec, weights)
    rng = np.random.default_rng(36)
    x = rng.standard_normal((9, 15, 6)).astype(np.float32)
    lengths = rng.integers(1, 16, 9)
    one = kernels.run(prepared, x, lengths, None, None, "all", 1)
    kernels.run(prepared, x, lengths, None, None, "all", 2)  # the helper started
    helper = hot._helper
    assert helper is not None and helper.thread.is_alive()
    monkeypatch.setattr(hot, "SERVE_SPIN", 0)  # the helper sleeps as soon as it has nothing to do ...
    kernels.run(prepared, x, lengths, None, None, "all", 2)
    deadline = time.monotonic() + 60  # its last `SERVE_SPIN` rounds each yield the core: seconds on a busy machine
    while not helper.box[hot.ASLEEP] and time.monotonic() < deadline:
        helper.wake.wait(0.01)
    assert helper.box[hot.ASLEEP]
    time.sleep(0.05)  # flagged asleep just before its loop returns: now waiting on its Event

    class Unheard:
        """The helper's Event, but a wake-up is never sent: the caller takes every job back and runs it."""

        def __init__(self, event):
            self.event = event

        def set(self):
            pass

        def clear(self):
            self.event.clear()

        def wait(self, timeout=None):
            return self.event.wait(timeout)

    finished = []
    real_finish = hot.finish
    monkeypatch.setattr(hot, "finish", lambda box: finished.append(real_finish(box)) or finished[-1])
    wake = helper.wake
    helper.wake = Unheard(wake)
    try:
        _same(one, kernels.run(prepared, x, lengths, None, None, "all", 2))
    finally:
        helper.wake = wake
    assert finished and not any(finished)
    monkeypatch.setattr(hot, "SERVE_SPIN", 4000)
    wake.set()
    pooled = []
    monkeypatch.setattr(kernels, "run_jobs", lambda jobs: (pooled.append(len(jobs)), [fn(*a) for fn, a in jobs]))
    seen.clear()
    with helper.busy:  # another Python thread's call holds the helper: this one goes through the pool
        _same(one, kernels.run(prepared, x, lengths, None, None, "all", 2))
    assert pooled == [2] and seen and not any(ran for _, _, ran in seen)


def test_quantized_weights_go_through_the_pool(monkeypatch):
    seen = _plain_workers(monkeypatch)
    _, spec, weights = build("lstm", 7, 24, 1, False, True, np.float32, seed=37)
    prepared = kernels.prepare(spec, weights, precision="bf16")
    rng = np.random.default_rng(38)
    x = rng.standard_normal((13, 11, 7)).astype(np.float32)
    lengths = rng.integers(1, 12, 13)
    one, hot_two, pool_two = _three(prepared, x, lengths, "all", monkeypatch)
    _same(one, hot_two)
    _same(one, pool_two)
    assert seen and not any(ran for _, _, ran in seen)


_ONLY = """
import numpy as np, sys
sys.path.insert(0, "tests")
from test_kernels import build
from rnnjit import kernels
from rnnjit.kernels import hot, team_policy
kernels.ONE_THREAD_WORK = 0
if sys.argv[1] == "workers":
    kernels.team_chunks = lambda *a: None
    kernels.wavefront_workers = lambda *a: 0
else:  # a batch of one as a team (`test_kernels_hot._runs`)
    team_policy.TEAM_MIN_BYTES = 0
    team_policy.b1_team = lambda weight_bytes: True
    team_policy.note_spins = lambda spins, steps: None
    team_policy.note_alone = lambda alone: None
_, spec, weights = build("lstm", 7, 128, 1, False, True, np.float32, seed=39)
prepared = kernels.prepare(spec, weights)
B = 13 if sys.argv[1] == "workers" else 1
x = np.random.default_rng(40).standard_normal((B, 30, 7)).astype(np.float32)
for _ in range(3):
    kernels.run(prepared, x, np.full(B, 30), None, None, "all", 2)
print(*(len(f.signatures) for f in (hot._team_f32, hot._team_f64, hot._workers_f32, hot._workers_f64)))
"""


@pytest.mark.parametrize("only", ["teams", "workers"])
def test_a_process_compiles_only_the_helper_jobs_it_runs(only, tmp_path):
    """The helper's loop calls each job through its address (`hot.call_at`): a process of teams loads or compiles
    no worker job, one of tile workers no team job, neither the other dtype's."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, "-c", _ONLY, only], cwd=root, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == (["1", "0", "0", "0"] if only == "teams" else ["0", "0", "1", "0"])


def test_the_posted_words_follow_run_workers_arguments():
    """`hot.post_part` writes and `hot._run_posted` reads arrays and scalars in `run_worker`'s own order."""
    names = hot._WORKER_ARGS
    assert tuple(n for n in names if n in hot.WARRAYS) == hot.WARRAYS
    assert tuple(n for n in names if n not in hot.WARRAYS) == hot.WSCALARS
    assert len(hot.WARRAY_TYPES) == len(hot.WARRAYS)
