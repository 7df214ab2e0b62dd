"""FEW-sequence teams of widths that are not whole groups of 64 units (`rnnjit.kernels.team.few_rows`): each row
keeps the bits of one thread and of the same row in a batch of lane tiles, whatever the chunks.

Small shapes; the policy's byte minimums are 0 (`test_kernels_few_team._forced`).
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from test_kernels import build
from test_kernels_few_team import _as_in_wide, _forced, _same

from rnnjit import kernels
from rnnjit.kernels import team_policy
from rnnjit.kernels._simd import FEW, MR, P_ROWS


def _same_or_close(a, b, rows=slice(None)):
    """`_same`; under NUMBA_DISABLE_JIT, whose pure-Python micro-kernels sum with numpy in each call's own shape
    (a chunk's 1-3 vectors against a tile's 4), equal within float rounding."""
    if not numba.config.DISABLE_JIT:
        _same(a, b, rows)
        return
    for i, (u, v) in enumerate(zip(a, b)):
        if u is not None:
            np.testing.assert_allclose(u[rows] if i == 0 else u[:, rows], v, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("hidden", [20, 100])
def test_a_few_sequence_team_of_any_width_has_the_bits_of_one_thread(cell, hidden, dtype, monkeypatch):
    _, spec, weights = build(cell, 6, hidden, 1, False, True, dtype, seed=41)
    prepared = kernels.prepare(spec, weights)
    assert -(-hidden // MR) % P_ROWS  # not whole groups: the chunks end inside a group of the grouped weights
    rng = np.random.default_rng(42)
    x = rng.standard_normal((40, 17, 6)).astype(dtype)
    lengths = np.array([17, 4, 11, 1, 9, 17, 2, 13] + [int(v) for v in rng.integers(1, 18, 32)])
    teams = _forced(monkeypatch)
    wide = kernels.run(prepared, x, lengths, None, None, "all", 2)  # lane tiles
    assert teams == []
    for B in (3, 8, 13):
        for threads in (2, 3):
            lay = kernels._layout(prepared)
            few = kernels.tile_width(B, threads, prepared.dtype, lay.wbytes, lay.small) <= FEW  # not lane tiles
            n = teams.count(FEW)
            team = kernels.run(prepared, x[:B], lengths[:B], None, None, "all", threads)
            assert teams.count(FEW) == n + few  # (a one-tile batch of lanes may run as a lane team)
            one = kernels.run(prepared, x[:B], lengths[:B], None, None, "all", 1)
            _same_or_close(one, team)
            _as_in_wide(wide, team, slice(0, B))


def test_a_stack_of_few_sequence_teams_of_an_odd_width_keeps_its_bits(monkeypatch):
    _, spec, weights = build("lstm", 5, 100, 2, False, True, np.float32, seed=43)
    prepared = kernels.prepare(spec, weights)
    x = np.random.default_rng(44).standard_normal((8, 21, 5)).astype(np.float32)
    lengths = np.array([21, 3, 11, 20, 7, 1, 21, 14])
    teams = _forced(monkeypatch)
    team = kernels.run(prepared, x, lengths, None, None, "last", 2)
    assert teams == [FEW, FEW]  # two FEW tiles in each layer's team
    _same_or_close(kernels.run(prepared, x, lengths, None, None, "last", 1), team)
    for k in range(2):  # each FEW tile's rows alone
        _same_or_close(team, kernels.run(prepared, x[4 * k : 4 * k + 4], lengths[4 * k : 4 * k + 4], None, None, "last", 1),
              slice(4 * k, 4 * k + 4))  # fmt: skip


@pytest.mark.parametrize("hidden, threads", [(200, 2), (100, 2), (150, 2), (100, 3), (20, 2)])
def test_chunks_of_an_odd_width_cover_it_about_evenly(hidden, threads):
    _, spec, _ = build("lstm", 5, hidden, 1, False, True, np.float32)
    cb, nch = team_policy.team_chunks(spec, FEW, threads, 1 << 30)
    ub = -(-hidden // MR)
    assert (nch - 1) * cb < ub <= nch * cb
    assert nch <= threads and ub - (nch - 1) * cb >= cb - 2 * threads  # the last chunk not much shorter
