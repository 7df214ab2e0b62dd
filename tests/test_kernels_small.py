"""The small-batch paths of the numba engine at hidden sizes that use them fully.

tests/test_kernels.py runs small batches at H=5, where the hidden units are
too few to share out. Here H is 64 or 128: a batch of one runs on one thread
and, forced, as a team of threads on one matrix-vector product per step (the
path of weights larger than L2); small batches run one sequence per tile or
the few-sequence kernel (which one depends on the thread count: B=2 is one or
the other), 13, forced, a 16-lane tile as a team, and 130 lane tiles of 32 or
48 (24 for float64).
Every path: parity with the reference engine and with PyTorch, and the same
bits for 1, 2 and 3 threads (so across those paths too).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_kernels import SELECTS, TOL, build, max_err, pooled_tol, torch_run

from rnnjit import kernels, reference
from rnnjit.kernels import team_policy, tiling

CELLS = ["lstm", "lstmp", "gru", "rnn_tanh", "rnn_relu"]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("B", [1, "1 team", 2, 3, 7, 10, "13 team", 40, 130], ids=lambda b: f"{b=}")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_small_batches_match_reference_torch_and_any_thread_count(cell, B, dtype, monkeypatch):
    if B == "1 team":
        monkeypatch.setattr(team_policy, "L2_BYTES", 0)  # the team path of weights larger than L2
        B = 1
    elif B == "13 team":
        monkeypatch.setattr(kernels, "tile_width", lambda *_: 16)  # one lane tile shared by a team
        B = 13
    H = 128 if B == 1 else 64
    mod, spec, weights = build(cell, 5, H, 2, True, True, dtype, seed=B)
    rng = np.random.default_rng(B)
    T = 7
    x = rng.standard_normal((B, T, 5)).astype(dtype)
    lengths = rng.integers(1, T + 1, B).astype(np.int64)
    h_shape, c_shape = spec.state_shapes(B)
    h0 = rng.standard_normal(h_shape).astype(dtype)
    c0 = rng.standard_normal(c_shape).astype(dtype) if c_shape else None
    prepared, ref = kernels.prepare(spec, weights), reference.prepare(spec, weights)
    rel = cell == "rnn_relu"
    for select in SELECTS:
        runs = []
        for n in (1, 2, 3):
            team_policy._team_paused_until = 0.0  # a stalled team on a busy machine must not skip the team path
            runs.append(kernels.run(prepared, x, lengths, h0, c0, select, n))
        want = reference.run(ref, x, lengths, h0, c0, select)
        for name, g, w in zip(("y", "hn", "cn"), runs[0], want):
            bound = pooled_tol(TOL[dtype], select, T) if name == "y" else TOL[dtype]
            assert max_err(g, w, rel) <= bound, f"{select} {name}: {max_err(g, w, rel):.3g}"
        for other in runs[1:]:
            for a, b in zip(runs[0], other):
                if a is not None:
                    np.testing.assert_array_equal(a, b)
    y, hn, cn = kernels.run(prepared, x, lengths, h0, c0, "all", 2)
    ty, thn, tcn = torch_run(mod, x, lengths, h0, c0)
    for name, g, w in zip(("y", "hn", "cn"), (y, hn, cn), (ty, thn, tcn)):
        assert max_err(g, w, rel) <= TOL[dtype], f"{name} vs torch: {max_err(g, w, rel):.3g}"


# 2 threads: one-sequence tiles for 1 and 2 (one round each), FEW tiles from 3
# (one FEW tile costs about 1.5 one-sequence tiles) up to 128 but where whole
# one-, two- or three-vector tiles give every thread the same work (32: a
# 16-lane tile each, 4.8 FEW tiles against 1.15 16-lane vectors; 64, 128: 32-lane
# tiles in the two-vector kernel, which runs at the three-vector kernel's rate
# per vector; 96: two full 48-lane rows); above 128 lane tiles with every
# thread about the same work (129: 32-lane tiles, 256: 8 x 32, not 5 x 48 + 16),
# full 48-lane rows where that costs nothing (4096).
@pytest.mark.parametrize(
    "B, expected",
    [(1, 1), (2, 1), (3, 4), (6, 4), (9, 4), (12, 4), (24, 4), (32, 16), (64, 32), (96, 48), (128, 32), (129, 32),
     (256, 32), (4096, 48)],
)  # fmt: skip
def test_tile_width(B, expected):
    assert kernels.tile_width(B, 2, np.dtype(np.float32), 1 << 20) == expected


def test_batch_of_one_runs_as_a_team_from_team_min_bytes_and_a_stack_in_l2_as_a_wavefront(monkeypatch):
    spec = build("lstm", 5, 128, 1, False, True, np.float32)[1]
    stack = build("lstm", 5, 128, 2, False, True, np.float32)[1]
    team_policy._team_paused_until = 0.0
    monkeypatch.setattr(team_policy, "b1_team", lambda weight_bytes: True)
    assert team_policy.team_chunks(spec, 1, 2, team_policy.TEAM_MIN_BYTES - 1) is None
    assert team_policy.team_chunks(spec, 1, 2, team_policy.TEAM_MIN_BYTES) == (8, 2)
    assert team_policy.team_chunks(spec, 1, 1, team_policy.TEAM_MIN_BYTES) is None
    assert team_policy.team_chunks(stack, 1, 2, team_policy.L2_BYTES) is None
    assert team_policy.team_chunks(stack, 1, 2, team_policy.L2_BYTES + 1) == (8, 2)
    assert team_policy.team_chunks(spec, 16, 2, team_policy.L2_BYTES) is not None  # one lane tile: a team
    monkeypatch.setattr(team_policy, "b1_team", lambda weight_bytes: False)  # one thread measured faster
    assert team_policy.team_chunks(spec, 1, 2, team_policy.TEAM_MIN_BYTES) is None
    assert team_policy.team_chunks(spec, 1, 2, team_policy.L2_BYTES + 1) == (8, 2)  # over L2: a team all the same


def test_a_batch_of_one_in_l2_runs_the_way_measured_faster_and_tries_the_other_now_and_then(monkeypatch):
    monkeypatch.setattr(team_policy, "_b1_seconds", {})
    key = 300_000
    assert team_policy.b1_team(key)  # nothing measured: the team first
    team_policy.note_b1(key, True, 2e-6)
    assert not team_policy.b1_team(key)  # then one thread
    team_policy.note_b1(key, False, 1.5e-6)
    ways = []
    for _ in range(2 * team_policy.PROBE_EVERY):
        ways.append(team_policy.b1_team(key))
    assert ways.count(True) == 2  # one thread is faster: the team once every PROBE_EVERY calls
    team_policy.note_b1(key, True, 1e-6)  # a faster team run counts at once
    assert team_policy.b1_team(key) or team_policy.b1_team(key)
    team_policy.note_b1(key, True, 9e-6)  # one slow call (another process) moves the average by a third
    assert team_policy._b1_seconds[key][0] == pytest.approx((2 * 1e-6 + 9e-6) / 3)
    team_policy.note_b1(123, True, 1e-6)  # a size never asked about is not recorded
    assert 123 not in team_policy._b1_seconds


def test_wide_tiles_for_large_weights():
    assert kernels.tile_width(4096, 2, np.dtype(np.float32), 64 << 20) == 16 * tiling.WIDE_VECS
    assert kernels.tile_width(256, 2, np.dtype(np.float32), 64 << 20) == 128  # one tile per thread


def test_teams_pause_after_runs_in_a_row_the_second_thread_never_joined(monkeypatch):
    spec = build("lstm", 5, 128, 1, False, True, np.float32)[1]
    monkeypatch.setattr(team_policy, "_team_paused_until", 0.0)
    monkeypatch.setattr(team_policy, "_alone_strikes", 0)
    over_l2 = team_policy.L2_BYTES + 1
    for _ in range(team_policy.ALONE_STRIKES - 1):  # a helper woken from sleep, and again: not yet
        team_policy.note_alone(True)
        team_policy.end_call()
    team_policy.note_alone(False)  # a call the two threads shared clears the count
    team_policy.end_call()
    for _ in range(team_policy.ALONE_STRIKES - 1):
        team_policy.note_alone(True)
        team_policy.end_call()
        assert team_policy.team_chunks(spec, 1, 2, over_l2) is not None
    team_policy.note_alone(True)
    team_policy.end_call()
    assert team_policy.team_chunks(spec, 1, 2, over_l2) is None  # paused (`team_policy.pause_seconds`)
