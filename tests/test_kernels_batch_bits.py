"""A sequence's outputs are the same bits alone, in a few-sequence tile and in a lane tile.

The one-sequence, few-sequence, team and lane paths, and a bidirectional
layer running its directions at once on two threads, may not change a single
bit against the lane tiles of a large batch (DESIGN: a row's score does not
depend on the other rows of its batch). The one-sequence path and its team
project every step's input columns first and continue each sum over the h
columns per step (`rnnjit.kernels.layer.project_steps`): sequences longer
than one block of projected steps, inputs whose bf16 pairs straddle the x/h
boundary, and token ids read from a table must keep the bits too.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_kernels import build

from test_kernels_tokens import V, tokens

from rnnjit import kernels
from rnnjit.kernels import team_policy
from rnnjit.kernels.pool import run_in_order
from rnnjit.kernels.layer import L1_SETS, STEP_BLOCK, gather_by_lane
from rnnjit.kernels.tiling import tile_steps


def _alone_as_in_the_batch(prepared, x, lengths, whole, picks):
    """Each picked sequence scored alone, on one thread and on two, has the bits it has in ``whole``."""
    for b in picks:
        for threads in (1, 2):
            y, hn, cn = kernels.run(prepared, x[b : b + 1], lengths[b : b + 1], None, None, "all", threads)
            np.testing.assert_array_equal(y[0], whole[0][b])
            np.testing.assert_array_equal(hn[:, 0], whole[1][:, b])
            if cn is not None:
                np.testing.assert_array_equal(cn[:, 0], whole[2][:, b])


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
    _alone_as_in_the_batch(prepared, x, lengths, whole, (0, 5, 69))  # the one-sequence path; a team when forced
    few = kernels.run(prepared, x[10:13], lengths[10:13], None, None, "all", 2)  # a few-sequence tile
    np.testing.assert_array_equal(few[0], whole[0][10:13])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("T", [8, 2 * STEP_BLOCK + 5], ids=lambda t: f"{t=}")  # one block of projected steps, three
def test_a_batch_of_one_run_by_a_team_has_the_same_bits_as_in_a_batch(cell, T, monkeypatch):
    # 128 units: two row groups per gate, which the team's chunks read gate by gate, stored unit-major
    _, spec, weights = build(cell, 13, 128, 1, False, True, np.float32, seed=5)
    prepared = kernels.prepare(spec, weights)
    if cell != "rnn_tanh":  # one gate: nothing to reorder
        assert (prepared.layers[0].hgroup != np.arange(prepared.layers[0].hgroup.size)).any()
    rng = np.random.default_rng(6)
    x = rng.standard_normal((40, T, 13)).astype(np.float32)
    lengths = rng.integers(1, T + 1, 40).astype(np.int64)
    lengths[3] = T
    whole = kernels.run(prepared, x, lengths, None, None, "all", 2)
    monkeypatch.setattr(team_policy, "TEAM_MIN_BYTES", 0)  # the team path for a batch of one
    monkeypatch.setattr(team_policy, "b1_team", lambda weight_bytes: True)
    monkeypatch.setattr(team_policy, "note_alone", lambda alone: None)  # never paused by a busy machine
    monkeypatch.setattr(team_policy, "_team_paused_until", 0.0)
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
    T = STEP_BLOCK + 13  # a batch of one projects its inputs a block of steps ahead: waits for a block, then steps
    x = rng.standard_normal((60, T, 7)).astype(np.float32)
    lengths = rng.integers(1, T + 1, 60).astype(np.int64)
    lengths[:2] = T
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


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_stack_whose_layers_run_as_teams_runs_layer_after_layer_with_the_same_bits(cell, monkeypatch):
    run_team = kernels._run_team
    _, spec, weights = build(cell, 9, 128, 3, False, True, np.float32, seed=10)  # 128 units: whole row groups
    prepared = kernels.prepare(spec, weights)
    rng = np.random.default_rng(11)
    T = STEP_BLOCK + 13
    x = rng.standard_normal((20, T, 9)).astype(np.float32)
    lengths = rng.integers(1, T + 1, 20).astype(np.int64)
    whole = kernels.run(prepared, x, lengths, None, None, "all", 2)
    monkeypatch.setattr(team_policy, "WAVEFRONT_WORK", 0)
    monkeypatch.setattr(team_policy, "L2_BYTES", 0)  # the team path for a batch of one
    monkeypatch.setattr(team_policy, "b1_team", lambda weight_bytes: True)
    monkeypatch.setattr(team_policy, "note_wave", lambda ran, waited: None)
    monkeypatch.setattr(team_policy, "note_spins", lambda spins, steps: None)
    monkeypatch.setattr(team_policy, "note_alone", lambda alone: None)
    teams, stacks = [], []
    monkeypatch.setattr(kernels, "_run_team", lambda values, n, chunks: (teams.append(n), run_team(values, n, chunks)))
    monkeypatch.setattr(kernels, "run_in_order", lambda n, jobs: (stacks.append(len(jobs)), run_in_order(n, jobs))[1])
    for b in (0, 4, 13):
        y, hn, cn = kernels.run(prepared, x[b : b + 1], lengths[b : b + 1], None, None, "all", 2)
        np.testing.assert_array_equal(y[0], whole[0][b])
        np.testing.assert_array_equal(hn[:, 0], whole[1][:, b])
        if cn is not None:
            np.testing.assert_array_equal(cn[:, 0], whole[2][:, b])
    assert teams == [2] * 9 and stacks == []  # every layer of every call as a team, none as a wavefront


def test_a_wavefront_pauses_when_its_caller_mostly_waited_and_gives_way_to_teams_of_large_layers(monkeypatch):
    _, spec, _ = build("lstm", 7, 20, 2, False, True, np.float32)
    monkeypatch.setattr(team_policy, "_waves_paused_until", 0.0)
    monkeypatch.setattr(team_policy, "_wave_strikes", 0)
    team_policy.note_wave(1.0, 0.1)  # a healthy run: the caller waited about a step at the end
    assert team_policy.wavefront_workers(spec, True, 2, 1e9) == 2
    for _ in range(team_policy.WAVE_STRIKES - 1):  # a hiccup, and another: not yet
        team_policy.note_wave(1.0, 3.0)
        assert team_policy.wavefront_workers(spec, True, 2, 1e9) == 2
    team_policy.note_wave(1.0, 0.1)  # a healthy run in between clears the count
    for _ in range(team_policy.WAVE_STRIKES - 1):
        team_policy.note_wave(1.0, 3.0)
    assert team_policy.wavefront_workers(spec, True, 2, 1e9) == 2
    team_policy.note_wave(1.0, 3.0)  # the upper layer's thread held up call after call by another process
    assert team_policy.wavefront_workers(spec, True, 2, 1e9) == 0
    monkeypatch.setattr(team_policy, "_waves_paused_until", 0.0)
    assert team_policy.wavefront_workers(spec, True, 2, 1e9, True) == 0  # layers that run as teams
    assert team_policy.wavefront_workers(spec, True, 2, 1e9, False) == 2


def test_a_batch_of_one_runs_as_a_team_from_the_weights_a_step_reads(monkeypatch):
    # a wide input (I=256, H=64): 330 KB of packed weights, 67 KB of them the h columns a projected step reads
    _, spec, weights = build("lstm", 256, 64, 1, False, True, np.float32, seed=12)
    prepared = kernels.prepare(spec, weights)
    pk = prepared.layers[0]
    x = np.random.default_rng(13).standard_normal((1, 30, 256)).astype(np.float32)
    run_team, teams = kernels._run_team, []
    monkeypatch.setattr(kernels, "_run_team", lambda values, n, chunks: (teams.append(n), run_team(values, n, chunks)))
    monkeypatch.setattr(kernels, "ONE_THREAD_WORK", 0)
    monkeypatch.setattr(team_policy, "_team_paused_until", 0.0)
    monkeypatch.setattr(team_policy, "TEAM_MIN_BYTES", (pk.wgh.nbytes + pk.w.nbytes) // 2)
    monkeypatch.setattr(team_policy, "b1_team", lambda weight_bytes: True)
    alone = kernels.run(prepared, x, np.array([30]), None, None, "all", 2)
    assert teams == []  # what a step reads is below the minimum (all of the weights are not): one thread
    monkeypatch.setattr(team_policy, "TEAM_MIN_BYTES", pk.wgh.nbytes)
    team = kernels.run(prepared, x, np.array([30]), None, None, "all", 2)
    assert teams == [2]
    np.testing.assert_array_equal(team[0], alone[0])


PRECISIONS = [None, "bf16", "float64"]  # None: float32


def _prepared(cell, I, precision, bidir=True, layers=2, seed=7):
    dtype = np.float64 if precision == "float64" else np.float32
    _, spec, weights = build(cell, I, 20, layers, bidir, True, dtype, seed=seed)
    return kernels.prepare(spec, weights, None if precision == "float64" else precision), dtype


@pytest.mark.parametrize("precision", PRECISIONS, ids=lambda p: f"precision={p or 'float32'}")
@pytest.mark.parametrize("cell", ["lstm", "lstmp", "gru", "rnn_relu"])
@pytest.mark.parametrize("I", [10, 11], ids=lambda i: f"{i=}")  # bf16: I + 1 odd (a pair straddles x and h), even
def test_projected_inputs_keep_the_bits_over_several_blocks_of_steps(cell, I, precision):
    prepared, dtype = _prepared(cell, I, precision)
    rng = np.random.default_rng(8)
    T = 2 * STEP_BLOCK + 14
    x = rng.standard_normal((30, T, I)).astype(dtype)
    lengths = rng.integers(1, T + 1, 30).astype(np.int64)
    lengths[:4] = [T, 1, STEP_BLOCK, STEP_BLOCK + 1]  # the whole padding, one step, a block, a block and one
    whole = kernels.run(prepared, x, lengths, None, None, "all", 2)
    _alone_as_in_the_batch(prepared, x, lengths, whole, (0, 1, 2, 3, 17))


@pytest.mark.parametrize("precision", [None, "bf16"], ids=lambda p: f"precision={p or 'float32'}")
def test_projected_inputs_read_token_ids_as_features_are(precision):
    prepared, _ = _prepared("lstm", 7, precision, bidir=True, layers=1)
    table = np.random.default_rng(9).standard_normal((V, 7)).astype(np.float32)
    ids, lengths = tokens(5, STEP_BLOCK + 9, seed=9)
    x = table[np.where(np.arange(ids.shape[1])[None, :] < lengths[:, None], ids, 0)]
    whole = kernels.run(prepared, x, lengths, None, None, "all", 2)[0]
    for b in range(5):
        got = kernels.run(prepared, ids[b : b + 1], lengths[b : b + 1], None, None, "all", 1, table=table)[0]
        np.testing.assert_array_equal(got[0], whole[b])


@pytest.mark.parametrize("precision, I, bt, expected", [
    ("float32", 10, 1, (11, 10)),  # every column of [b_ih | W_ih]; no input column gathered per step
    ("bf16", 10, 1, (5, 9)),  # 11 columns: 5 whole pairs; the pair of the last input and the first h stays
    ("bf16", 11, 1, (6, 11)),
    ("int8", 10, 1, (0, 0)),  # input columns are a product of their own, rescaled per step
    ("float32", 10, 4, (0, 0)),  # a few-sequence tile reads each weight once per step for all its sequences
])  # fmt: skip
def test_which_tiles_project_their_inputs_first(precision, I, bt, expected):
    _, spec, weights = build("lstm", I, 16, 1, False, True, np.float32, seed=1)
    prepared = kernels.prepare(spec, weights, precision)
    assert kernels._projected(prepared, prepared.layers[0], bt) == expected


@pytest.mark.parametrize("precision", PRECISIONS, ids=lambda p: f"precision={p or 'float32'}")
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_step_gathered_lane_by_lane_or_feature_by_feature_has_the_same_bits(cell, precision):
    # rows T * I * 4 = 4096 bytes apart all start in one L1 set (gathered lane by lane); one step more of
    # padding puts them 4224 bytes apart, over 32 sets (feature by feature): the same sequences, the same bits
    prepared, dtype = _prepared(cell, 32, precision, bidir=True, layers=2)
    rng = np.random.default_rng(10)
    B, T, I = 64, 32 // np.dtype(dtype).itemsize * 4, 32
    x = rng.standard_normal((B, T, I)).astype(dtype)
    lengths = rng.integers(T - 3, T + 1, B).astype(np.int64)
    seq, slen, sets = np.arange(48, dtype=np.int64), np.full(48, T, np.int64), np.zeros(L1_SETS, np.int64)
    no_tokens = np.zeros((0, T), np.int64)
    pick = getattr(gather_by_lane, "py_func", gather_by_lane)
    assert pick(no_tokens, seq, slen, 48, False, T, I, np.dtype(dtype).itemsize, sets)
    assert not pick(np.zeros((0, T + 1), np.int64), seq, slen, 48, False, T + 1, I, np.dtype(dtype).itemsize, sets)
    padded = np.concatenate([x, np.zeros((B, 1, I), dtype)], axis=1)
    for select in ("all", "last"):
        a = kernels.run(prepared, x, lengths, None, None, select, 2)
        b = kernels.run(prepared, padded, lengths, None, None, select, 2)
        cut = (slice(None), slice(0, T)) if select == "all" else (slice(None),)
        np.testing.assert_array_equal(a[0][cut], b[0][cut])
        np.testing.assert_array_equal(a[1], b[1])


def _layer_alone(spec, weights, layer, precision):
    """Layer ``layer`` of a one-directional stack as a one-layer model of its own."""
    sub = {k.replace(f"_l{layer}", "_l0"): v for k, v in weights.items() if k.endswith(f"_l{layer}")}
    width = spec.input_size if layer == 0 else spec.h_out
    one = type(spec)(spec.cell, width, spec.hidden_size, 1, False, spec.bias, spec.proj_size)
    return kernels.prepare(one, sub, precision)


@pytest.mark.parametrize("precision", [*PRECISIONS, "int8"], ids=lambda p: f"precision={p or 'float32'}")
@pytest.mark.parametrize("cell", ["lstm", "lstmp", "gru", "rnn_tanh"])
@pytest.mark.parametrize("B", [64, 150], ids=lambda b: f"B={b}")  # lane tiles; 150: a ragged last one
def test_a_stack_in_lane_tiles_hands_each_layers_output_on_in_tile_layout_with_the_same_bits(cell, B, precision,
                                                                                              monkeypatch):  # fmt: skip
    dtype = np.float64 if precision == "float64" else np.float32
    prec = None if precision == "float64" else precision
    _, spec, weights = build(cell, 9, 21, 3, False, True, dtype, seed=12)  # 21 units: a part-filled panel
    prepared = kernels.prepare(spec, weights, prec)
    rng = np.random.default_rng(13)
    T = 23
    x = rng.standard_normal((B, T, 9)).astype(dtype)
    lengths = rng.integers(1, T + 1, B).astype(np.int64)
    h0 = rng.standard_normal((3, B, spec.h_out)).astype(dtype) * 0.5
    c0 = rng.standard_normal((3, B, 21)).astype(dtype) * 0.5 if cell in ("lstm", "lstmp") else None
    handed = []
    monkeypatch.setattr(kernels, "tile_steps", lambda *a: (handed.append(1), tile_steps(*a))[1])
    for threads in (1, 2):
        for select in ("all", "last", "final"):
            handed.clear()
            y, hn, cn = kernels.run(prepared, x, lengths, h0, c0, select, threads)
            assert handed == [1]  # the stack ran in lane tiles, its layers' outputs in the tiles' layout
            rows, states = x, []
            for layer in range(3):  # layer after layer, each reading the (B, T, H) rows of the one below
                one = _layer_alone(spec, weights, layer, prec)
                top = layer == 2
                rows, h, c = kernels.run(one, rows, lengths, h0[layer : layer + 1],
                                         None if c0 is None else c0[layer : layer + 1], select if top else "all",
                                         threads)  # fmt: skip
                states.append((h, c))
            np.testing.assert_array_equal(y, rows)
            np.testing.assert_array_equal(hn, np.concatenate([h for h, _ in states]))
            if cn is not None:
                np.testing.assert_array_equal(cn, np.concatenate([c for _, c in states]))
