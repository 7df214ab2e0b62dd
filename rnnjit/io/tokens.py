"""Arrow -> numpy for token-id columns: the input of a model that starts with an embedding.

Beside `rnnjit.io.arrow.decode_features` (float features), with the same
row outcomes (`DecodedFeatures`: scorable rows, empty rows, invalid rows and
the first reason).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from rnnjit.errors import InputTypeError
from rnnjit.io.arrow import DecodedFeatures, _null_mask, _row_spans, as_array, is_numeric_type, pad_rows


def is_token_type(t: pa.DataType) -> bool:
    """``list<num>``, or ``list<fixed_size_list<num>[1]>`` as the long layout groups one column."""
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)):
        return False
    inner = t.value_type
    if pa.types.is_fixed_size_list(inner):
        return inner.list_size == 1 and is_numeric_type(inner.value_type)
    return is_numeric_type(inner)


def decode_tokens(col, n_embeddings: int, column: str = "tokens", row_name=None) -> DecodedFeatures:
    """Decode a token-id column to a padded (G, T) int64 array.

    Parameters
    ----------
    col : pa.Array or pa.ChunkedArray
        ``list<int>`` (one id per step), or ``list<fixed_size_list<num>[1]>``
        as the long layout groups an id column. Float ids must be whole numbers.
    n_embeddings : int
        Rows of the embedding table: ids must satisfy ``0 <= id < n_embeddings``.
    column, row_name : as in `rnnjit.io.arrow.decode_features`.

    A null row, a null id, a non-integer or an out-of-range id makes the row
    invalid (``reasons`` names the first one), as NaN does for features; it is
    never read out of the table's bounds.
    """
    row_name = row_name or (lambda i: f"row {i}")
    arr = as_array(col)
    if not is_token_type(arr.type):
        raise InputTypeError(
            f"column {column!r} has type {arr.type}; this model starts with an embedding and takes token ids: "
            "expected list<int> (one row per sequence, one id per step); for one row per step use layout='long' "
            "with the id column as the only feature column"
        )
    B = len(arr)
    outer_off, row_len, row_null, s0, s1 = _row_spans(arr)
    S = s1 - s0
    steps = arr.values.slice(s0, S)
    if pa.types.is_fixed_size_list(steps.type):
        step_null = _null_mask(steps)
        leaf = steps.values.slice(steps.offset, S)  # one slot per step, null steps included
    else:
        step_null = np.zeros(S, dtype=bool)
        leaf = steps
    if leaf.null_count:
        step_null = step_null | np.asarray(leaf.is_null())
        leaf = leaf.fill_null(0)
    vals = np.asarray(leaf.to_numpy(zero_copy_only=False))
    step_row = np.repeat(np.arange(B, dtype=np.int64), row_len)
    if np.issubdtype(vals.dtype, np.floating):
        with np.errstate(invalid="ignore"):
            whole = np.isfinite(vals) & (vals == np.floor(vals))
        ids = np.where(whole, vals, -1).astype(np.int64)
    else:
        whole = np.ones(S, dtype=bool)
        ids = vals.astype(np.int64, copy=False)
    bad_range = whole & ~step_null & ((ids < 0) | (ids >= n_embeddings))
    bad_step = step_null | ~whole | bad_range
    invalid = row_null.copy()
    if bad_step.any():
        invalid |= np.bincount(step_row, weights=bad_step, minlength=B).astype(bool)
    reasons: dict[int, str] = {}
    for r in np.flatnonzero(invalid)[:1]:
        r = int(r)
        if row_null[r]:
            reasons[r] = f"{row_name(r)}: column {column!r} is null"
            continue
        lo = int(outer_off[r] - s0)
        st = int(np.flatnonzero(bad_step[lo : lo + row_len[r]])[0])
        if step_null[lo + st]:
            reasons[r] = f"{row_name(r)}: step {st} of column {column!r} is a null token id"
        elif not whole[lo + st]:
            reasons[r] = f"{row_name(r)}: step {st} of column {column!r} holds {vals[lo + st]!r}, not a whole token id"
        else:
            reasons[r] = (
                f"{row_name(r)}: step {st} of column {column!r} holds token id {int(ids[lo + st])}, out of range "
                f"for the embedding's {n_embeddings} rows (valid ids 0..{n_embeddings - 1})"
            )
    return pad_rows(ids, row_null, row_len, invalid, reasons, step_row, outer_off[:-1] - s0)
