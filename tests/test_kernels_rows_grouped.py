"""The one-sequence tile's h product two weight groups at a time (`mk_rows_grouped2_from`), and the cell update
with its c buffers swapped by offset: the same bits as one group per call and as a sequence in a wide tile.

`mk_rows_grouped2_from` runs full-width vectors over two 64-row groups in one
loop; each row's sum must stay the chain of `mk_rows_grouped_from` (the same
products into the same accumulator, from the same partial sums). A layer
whose gate rows make an odd number of groups runs its last group alone.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from test_kernels import build
from test_kernels_batch_bits import _alone_as_in_the_batch

from rnnjit import kernels
from rnnjit.kernels._simd import GROUP_ROWS, mk_rows_grouped2_from, mk_rows_grouped_from


@njit
def _pair(a, aoff0, aoff1, b, boff, c, coff0, coff1, n, init, ioff0, ioff1):
    mk_rows_grouped2_from(a, aoff0, aoff1, b, boff, c, coff0, coff1, n, init, ioff0, ioff1)


@njit
def _one(a, aoff, b, boff, c, coff, n, init, ioff):
    mk_rows_grouped_from(a, aoff, b, boff, c, coff, n, init, ioff)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("n", [0, 1, 7, 33, 130], ids=lambda n: f"{n=}")
def test_two_groups_at_once_have_the_bits_of_one_group_per_call(dtype, n):
    rng = np.random.default_rng(n)
    a = rng.standard_normal(3 * max(n, 1) * GROUP_ROWS + 16).astype(dtype)
    b = rng.standard_normal(n + 5).astype(dtype)
    init = rng.standard_normal(4 * GROUP_ROWS).astype(dtype)
    aoff0, aoff1 = 16, 16 + 2 * n * GROUP_ROWS  # the second group stored apart, the outputs swapped
    pair = np.full(4 * GROUP_ROWS, np.nan, dtype)
    one = pair.copy()
    _pair(a, aoff0, aoff1, b, 3, pair, 2 * GROUP_ROWS, 0, n, init, GROUP_ROWS, 3 * GROUP_ROWS)
    _one(a, aoff0, b, 3, one, 2 * GROUP_ROWS, n, init, GROUP_ROWS)
    _one(a, aoff1, b, 3, one, 0, n, init, 3 * GROUP_ROWS)
    np.testing.assert_array_equal(pair.view(np.uint8), one.view(np.uint8))  # NaN where neither writes, in both
    expected = init[GROUP_ROWS : 2 * GROUP_ROWS].astype(np.float64) + (
        a[aoff0 : aoff0 + n * GROUP_ROWS].reshape(n, GROUP_ROWS).T.astype(np.float64) @ b[3 : 3 + n])
    np.testing.assert_allclose(pair[2 * GROUP_ROWS : 3 * GROUP_ROWS], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell, H", [("lstm", 48), ("lstm", 32), ("gru", 40), ("rnn_tanh", 70)],
                         ids=lambda v: f"{v}")  # gate rows in 3, 2, 2 and 2 groups
@pytest.mark.parametrize("bidir", [False, True], ids=lambda b: f"{b=}")
def test_a_sequence_alone_has_its_bits_in_a_batch_for_any_number_of_row_groups(cell, H, bidir):
    _, spec, weights = build(cell, 9, H, 1, bidir, True, np.float32, seed=7)
    prepared = kernels.prepare(spec, weights)
    rng = np.random.default_rng(8)
    B, T = 60, 11
    x = rng.standard_normal((B, T, 9)).astype(np.float32)
    lengths = rng.integers(1, T + 1, B).astype(np.int64)
    whole = kernels.run(prepared, x, lengths, None, None, "all", 2)
    _alone_as_in_the_batch(prepared, x, lengths, whole, (0, 7, 59))
