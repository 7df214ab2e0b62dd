"""A sequence's outputs are the same bits alone, in a few-sequence tile and in a lane tile.

The one-sequence, few-sequence, team and lane paths, and a bidirectional
layer running its directions at once on two threads, may not change a single
bit against the lane tiles of a large batch (DESIGN: a row's score does not
depend on the other rows of its batch).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_kernels import build

from rnnjit import kernels
from rnnjit.kernels import team_policy
from rnnjit.kernels.pool import run_in_order


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("cell", ["lstm", "lstmp", "gru", "rnn_tanh"])
@pytest.mark.parametrize("bidir", [False, True, "split"], ids=lambda b: f"{b=}")
def test_a_sequence_has_the_same_bits_alone_and_in_any_batch(cell, bidir, dtype, monkeypatch):
    if bidir == "split":  # the two directions at once (on two threads) whatever the work
        monkeypatch.setattr(kernels, "SPLIT_WORK", 0)
    _, spec, weights = build(cell, 11, 24, 2, bool(bidir), True, dtype, seed=3)
    prepared = kernels.prepare(spec, weights)
    rng = np.random.default_rng(4)
    B, T = 70, 9
    x = rng.standard_normal((B, T, 11)).astype(dtype)
    lengths = rng.integers(1, T + 1, B).astype(np.int64)
    whole = kernels.run(prepared, x, lengths, None, None, "all", 2)
    for b in (0, 5, 69):  # alone: the one-sequence path, on one thread and on two (a team when forced)
        for threads in (1, 2):
            y, hn, cn = kernels.run(prepared, x[b : b + 1], lengths[b : b + 1], None, None, "all", threads)
            np.testing.assert_array_equal(y[0], whole[0][b])
            np.testing.assert_array_equal(hn[:, 0], whole[1][:, b])
            if cn is not None:
                np.testing.assert_array_equal(cn[:, 0], whole[2][:, b])
    few = kernels.run(prepared, x[10:13], lengths[10:13], None, None, "all", 2)  # a few-sequence tile
    np.testing.assert_array_equal(few[0], whole[0][10:13])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_a_batch_of_one_run_by_a_team_has_the_same_bits_as_in_a_batch(cell, monkeypatch):
    _, spec, weights = build(cell, 13, 64, 1, False, True, np.float32, seed=5)  # 64 units: whole row groups
    prepared = kernels.prepare(spec, weights)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((40, 8, 13)).astype(np.float32)
    lengths = rng.integers(1, 9, 40).astype(np.int64)
    whole = kernels.run(prepared, x, lengths, None, None, "all", 2)
    monkeypatch.setattr(team_policy, "L2_BYTES", 0)  # the team path for a batch of one
    assert team_policy.team_chunks(spec, 1, 2, 1) is not None
    for b in (3, 17):
        team_policy._team_paused_until = 0.0
        y, hn, _ = kernels.run(prepared, x[b : b + 1], lengths[b : b + 1], None, None, "all", 2)
        np.testing.assert_array_equal(y[0], whole[0][b])
        np.testing.assert_array_equal(hn[:, 0], whole[1][:, b])


@pytest.mark.parametrize("cell", ["lstm", "lstmp", "gru", "rnn_tanh"])
@pytest.mark.parametrize("select", ["all", "last", "final"])
def test_a_stack_run_as_a_wavefront_has_the_same_bits_as_layer_after_layer(cell, select, monkeypatch):
    _, spec, weights = build(cell, 7, 20, 3, False, True, np.float32, seed=8)
    prepared = kernels.prepare(spec, weights)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((60, 30, 7)).astype(np.float32)
    lengths = rng.integers(1, 31, 60).astype(np.int64)
    lengths[:2] = 30
    whole = kernels.run(prepared, x, lengths, None, None, select, 2)  # lane tiles, layer after layer
    monkeypatch.setattr(team_policy, "WAVEFRONT_WORK", 0)  # the wavefront however small the work
    monkeypatch.setattr(team_policy, "note_wave", lambda ran, waited: None)  # never paused by a busy machine
    assert team_policy.wavefront_workers(spec, True, 2, 1.0) == 2
    assert team_policy.wavefront_workers(spec, False, 2, 1.0) == 0
    stacks = []
    monkeypatch.setattr(kernels, "run_in_order", lambda n, jobs: (stacks.append(n), run_in_order(n, jobs))[1])
    for b0, b1 in ((0, 1), (1, 2), (7, 8), (10, 13)):  # batches of one, and a few-sequence tile
        for _ in range(3):  # the layers' threads meet at different steps from run to run
            y, hn, cn = kernels.run(prepared, x[b0:b1], lengths[b0:b1], None, None, select, 2)
            np.testing.assert_array_equal(y, whole[0][b0:b1])
            np.testing.assert_array_equal(hn, whole[1][:, b0:b1])
            if cn is not None:
                np.testing.assert_array_equal(cn, whole[2][:, b0:b1])
    assert stacks == [2] * 12  # every call above ran as a wavefront


def test_a_wavefront_whose_caller_mostly_waited_pauses_waves(monkeypatch):
    _, spec, _ = build("lstm", 7, 20, 2, False, True, np.float32)
    monkeypatch.setattr(team_policy, "_waves_paused_until", 0.0)
    team_policy.note_wave(1.0, 0.1)  # a healthy run: the caller waited about a step at the end
    assert team_policy.wavefront_workers(spec, True, 2, 1e9) == 2
    team_policy.note_wave(1.0, 3.0)  # the upper layer's thread was held up by another process
    assert team_policy.wavefront_workers(spec, True, 2, 1e9) == 0
