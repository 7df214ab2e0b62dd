"""Arrow <-> numpy: decode sequence columns to padded arrays, encode scores and states.

Decoding reads Arrow offsets and value buffers with numpy (one vectorized
scatter per batch, no per-row Python loop). Nothing here knows about models
beyond sizes, and nothing here does I/O.

Accepted feature columns (list layout): ``list<list<num>>``,
``list<fixed_size_list<num>[I]>``, ``fixed_size_list<fixed_size_list<num>>``,
the ``large_list`` variants (num: any integer or floating type), and the shapes
`rnnjit.io.shapes` rewrites to these (tensors, univariate series). State columns (``h0``/``c0``): ``list<num>``,
``large_list<num>`` or ``fixed_size_list<num>[n]``, one flattened (L*D, H) block
per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from rnnjit.errors import InputError, InputTypeError
from rnnjit.io.shapes import as_steps, is_list_type, is_numeric_type  # noqa: F401 - re-exported for readers


def as_array(col) -> pa.Array:
    """A single contiguous Array from an Array or ChunkedArray."""
    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks == 1:
            return col.chunk(0)
        if col.num_chunks == 0:
            return pa.array([], type=col.type)
        return col.combine_chunks()
    return col


def _bitmap(valid: np.ndarray) -> pa.Buffer | None:
    """Arrow validity bitmap for a bool mask (None when every entry is valid)."""
    if valid.all():
        return None
    return pa.py_buffer(np.packbits(valid.astype(bool), bitorder="little"))


def _offsets(arr: pa.Array) -> np.ndarray:
    """Offsets (len+1,) of a list-like array, into ``arr.values`` (int64)."""
    if pa.types.is_fixed_size_list(arr.type):
        n = arr.type.list_size
        return (np.arange(len(arr) + 1, dtype=np.int64) + arr.offset) * n
    return np.asarray(arr.offsets).astype(np.int64, copy=False)


def _null_mask(arr: pa.Array) -> np.ndarray:
    if arr.null_count == 0:
        return np.zeros(len(arr), dtype=bool)
    return np.asarray(arr.is_null())


def _row_spans(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """A list-like array's rows: offsets into ``arr.values``, lengths, null mask, and the first and
    one-past-last value index they span (null rows may still own a span)."""
    off = _offsets(arr)
    return off, np.diff(off), _null_mask(arr), int(off[0]), int(off[-1])


def _leaf_numpy(leaf: pa.Array, start: int, stop: int, dtype, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Values ``leaf[start:stop]`` as ``dtype`` plus a null mask (None when no nulls)."""
    if not is_numeric_type(leaf.type):
        raise InputTypeError(
            f"{what} holds {leaf.type} values; expected numbers (float or int); "
            "cast the column to float32 before scoring"
        )
    part = leaf.slice(start, stop - start)
    nulls = None
    if part.null_count:
        nulls = np.asarray(part.is_null())
        part = part.fill_null(0)
    vals = part.to_numpy(zero_copy_only=False)
    with np.errstate(over="ignore", invalid="ignore"):  # |x| beyond float32 becomes inf: reported as invalid
        return np.asarray(vals, dtype=dtype), nulls


def _nonfinite(arr: pa.Array, row: int, step: int, dtype) -> str:
    """Why a step is not finite: NaN/inf in the file, or a value the model's dtype cannot hold."""
    vals = [v for v in (arr[row].as_py() or [])[step] or [] if v is not None]
    big = [v for v in vals if np.isfinite(v)] if all(np.isfinite(v) for v in vals) else []
    if big:
        v = max(big, key=abs)
        return (f"holds {v!r}, beyond {np.dtype(dtype).name}'s range (|x| <= {np.finfo(dtype).max:.3g}); "
                "scale the feature, or load the bundle with dtype='float64'")
    return "holds NaN or inf"


# --------------------------------------------------------------------------- decode
@dataclass
class DecodedFeatures:
    """A batch of sequences decoded from a list-layout column.

    ``x`` (G, T, I) and ``lengths`` (G,) hold only the scorable rows, listed in
    ``rows`` (indices into the batch). ``empty`` marks zero-length rows;
    ``invalid`` marks rows that were null or held a null step, a null value,
    NaN or inf (``reason`` names the first such row's problem).
    """

    x: np.ndarray
    lengths: np.ndarray
    rows: np.ndarray
    empty: np.ndarray
    invalid: np.ndarray
    reasons: dict[int, str]


def decode_features(col, input_size: int, dtype=np.float32, column: str = "features", row_name=None) -> DecodedFeatures:
    """Decode a list-layout feature column to a padded (G, T, I) array.

    Parameters
    ----------
    col : pa.Array or pa.ChunkedArray
        ``list<list<num>>``, ``list<fixed_size_list<num>[I]>`` or large_list variants.
    input_size : int
        I, the model's features per step. A step of another width is an error.
    dtype : numpy dtype of ``x``.
    column : name used in messages.
    row_name : callable(int) -> str, optional
        Names a row of the batch in messages (e.g. ``"row 7 (id=42)"``).

    Raises
    ------
    InputTypeError
        The column is not a list of lists of numbers.
    InputError
        A step has a width other than ``input_size``.
    """
    row_name = row_name or (lambda i: f"row {i}")
    arr = as_steps(as_array(col), int(input_size), column)
    t = arr.type
    if not is_list_type(t) or not is_list_type(t.value_type):
        raise InputTypeError(
            f"column {column!r} has type {t}; expected list<list<float>>, list<fixed_size_list<float>>, "
            "fixed_size_list<fixed_size_list<float>> or a (T, I) fixed_shape_tensor "
            f"(one row per sequence, {input_size} values per step); for one row per step use layout='long'"
        )
    B = len(arr)
    I = int(input_size)
    outer_off, row_len, row_null, s0, s1 = _row_spans(arr)
    S = s1 - s0
    steps = arr.values
    step_null = _null_mask(steps.slice(s0, S)) if S else np.zeros(0, dtype=bool)
    # row of each step in [s0, s1); null rows may still own a (garbage) span
    step_row = np.repeat(np.arange(B, dtype=np.int64), row_len)

    fixed = pa.types.is_fixed_size_list(steps.type)
    if fixed and steps.type.list_size != I:
        raise InputError(
            f"column {column!r} has {steps.type.list_size} values per step ({steps.type}); "
            f"the model expects input_size={I}; select the right features or use the matching bundle"
        )
    inner_off = _offsets(steps.slice(s0, S)) if S else np.zeros(1, dtype=np.int64)
    widths = np.diff(inner_off)
    live = ~(row_null[step_row] | step_null) if S else np.zeros(0, dtype=bool)
    wrong = live & (widths != I)
    if wrong.any() and wrong.sum() == live.sum() and len(set(widths[live].tolist())) == 1:
        # every step has the same other width: the bundle and the input do not match, no row is at fault
        raise InputError(
            f"column {column!r} has {int(widths[live][0])} values per step in every row; the model expects "
            f"input_size={I}: the input and the bundle do not match; select the features the model was trained "
            "on, or score with the bundle of the model trained on these"
        )
    if wrong.any():
        s = int(np.flatnonzero(wrong)[0])
        r = int(step_row[s])
        t_idx = s - int(outer_off[r] - s0)
        raise InputError(
            f"{row_name(r)}: step {t_idx} of column {column!r} has {int(widths[s])} values; "
            f"expected {I} (the model's input_size); fix that row or drop it"
        )

    leaf = steps.values
    if S:
        v0, v1 = int(inner_off[0]), int(inner_off[-1])
        flat, leaf_nulls = _leaf_numpy(leaf, v0, v1, dtype, f"column {column!r}")
        if widths.size and (widths == I).all():
            vals = flat.reshape(S, I)
            vnull = leaf_nulls.reshape(S, I).any(axis=1) if leaf_nulls is not None else None
        else:  # null steps with a short span: gather the well-formed steps only
            ok = widths == I
            idx = (inner_off[:-1] - v0)[:, None] + np.arange(I)
            idx[~ok] = 0
            vals = flat[idx] if flat.size else np.zeros((S, I), dtype=dtype)
            vals[~ok] = 0
            vnull = leaf_nulls[idx].any(axis=1) & ok if leaf_nulls is not None else None
    else:
        vals = np.zeros((0, I), dtype=dtype)
        vnull = None
        leaf_nulls = None

    # per-row validity, in one pass over the values
    reasons: dict[int, str] = {}
    invalid = row_null.copy()
    step_bad_null = step_null.copy()
    if vnull is not None:
        step_bad_null |= vnull
    finite_all = bool(np.isfinite(vals).all()) if vals.size else True
    step_nonfinite = None if finite_all else ~np.isfinite(vals).all(axis=1)
    if step_bad_null.any() or step_nonfinite is not None:
        bad_step = step_bad_null | (step_nonfinite if step_nonfinite is not None else False)
        invalid |= np.bincount(step_row, weights=bad_step, minlength=B).astype(bool)
    for r in np.flatnonzero(invalid)[:1]:
        r = int(r)
        if row_null[r]:
            reasons[r] = f"{row_name(r)}: column {column!r} is null"
        else:
            lo = int(outer_off[r] - s0)
            st = np.flatnonzero(step_bad_null[lo : lo + row_len[r]])
            if st.size:
                reasons[r] = f"{row_name(r)}: step {int(st[0])} of column {column!r} is null or holds a null value"
            else:
                st = np.flatnonzero(step_nonfinite[lo : lo + row_len[r]])
                reasons[r] = f"{row_name(r)}: step {int(st[0])} of column {column!r} " + _nonfinite(
                    arr, r, int(st[0]), dtype)

    return pad_rows(vals, row_null, row_len, invalid, reasons, step_row, outer_off[:-1] - s0)


def pad_rows(vals, row_null, row_len, invalid, reasons, step_row, row_start) -> DecodedFeatures:
    """The scorable rows' steps, padded: ``x`` (G, T, *vals.shape[1:]) in ``vals``' dtype.

    ``vals`` holds one entry per step of the batch (``step_row`` its row,
    ``row_start`` each row's first step); rows that are null, ``invalid`` or
    empty are left out of ``x`` and listed in the result's masks.
    """
    B = row_len.shape[0]
    lengths_all = np.where(row_null, 0, row_len)
    empty = (lengths_all == 0) & ~invalid
    good = ~invalid & ~empty
    rows = np.flatnonzero(good)
    lengths = lengths_all[rows]
    G = rows.size
    T = int(lengths.max()) if G else 0
    S = vals.shape[0]
    if G == B and S == B * T and (row_len == T).all():
        # every row valid and of one length: the values already are (B, T, ...)
        x = vals.reshape(B, T, *vals.shape[1:])
    else:
        x = np.zeros((G, T, *vals.shape[1:]), dtype=vals.dtype)
        if G:
            keep = good[step_row]
            new_row = np.cumsum(good) - 1
            sr = step_row[keep]
            t_idx = np.arange(S, dtype=np.int64)[keep] - row_start[sr]
            x[new_row[sr], t_idx] = vals[keep]
    return DecodedFeatures(
        x=np.ascontiguousarray(x), lengths=lengths.astype(np.int64), rows=rows, empty=empty, invalid=invalid,
        reasons=reasons,
    )


def decode_state(col, width: int, dtype=np.float32, column: str = "h0", row_name=None, shape_hint: str = ""):
    """Decode a state column to ``(B, width)`` plus a null mask (null rows are zeros).

    Raises `InputError` naming the first row whose list does not hold ``width``
    values, or holds a null, NaN or inf.
    """
    row_name = row_name or (lambda i: f"row {i}")
    arr = as_array(col)
    t = arr.type
    if not is_list_type(t) or not is_numeric_type(t.value_type):
        raise InputTypeError(
            f"column {column!r} has type {t}; expected list<float> of {width} values per row {shape_hint}".rstrip()
        )
    B = len(arr)
    nulls = _null_mask(arr)
    off = _offsets(arr)
    n = np.diff(off)
    wrong = ~nulls & (n != width)
    if wrong.any():
        r = int(np.flatnonzero(wrong)[0])
        raise InputError(
            f"{row_name(r)}: column {column!r} has {int(n[r])} values; expected {width} {shape_hint}".rstrip()
            + "; write it as the previous run's emit_state output does"
        )
    out = np.zeros((B, width), dtype=dtype)
    if B and not nulls.all():
        flat, leaf_nulls = _leaf_numpy(arr.values, int(off[0]), int(off[-1]), dtype, f"column {column!r}")
        if nulls.any():
            idx = (off[:-1] - off[0])[~nulls][:, None] + np.arange(width)
            vals = flat[idx]
            vnull = leaf_nulls[idx].any(axis=1) if leaf_nulls is not None else np.zeros(len(idx), bool)
        else:
            vals = flat.reshape(B, width)
            vnull = leaf_nulls.reshape(B, width).any(axis=1) if leaf_nulls is not None else np.zeros(B, bool)
        bad = vnull | ~np.isfinite(vals).all(axis=1)
        if bad.any():
            r = int(np.flatnonzero(~nulls)[np.flatnonzero(bad)[0]])
            raise InputError(
                f"{row_name(r)}: column {column!r} holds a null, NaN or inf value; "
                "a state must be finite (use a null state to start from zeros)"
            )
        out[~nulls] = vals
    return out, nulls


# --------------------------------------------------------------------------- encode
def score_type(output_dim: int, mode: str) -> pa.DataType:
    """Arrow type of the ``score`` column."""
    item = pa.float32() if output_dim == 1 else pa.list_(pa.float32(), output_dim)
    return pa.list_(item) if mode == "all" else item


def state_type() -> pa.DataType:
    return pa.list_(pa.float32())


def encode_scores(y: np.ndarray, rows: np.ndarray, lengths: np.ndarray, n_rows: int, mode: str) -> pa.Array:
    """Scores of the scored ``rows`` as an Arrow column of ``n_rows`` (null elsewhere).

    ``y`` is (G, O) for last/final, one entry per element of ``rows``; for all,
    (sum(lengths), O): the valid steps of those rows, row after row (what
    ``Model.predict(..., packed=True)`` returns). A C-contiguous float32 ``y``
    becomes the column's values without a copy: only the offsets are built.
    """
    y = np.ascontiguousarray(y, dtype=np.float32)
    O = y.shape[-1]
    valid = np.zeros(n_rows, dtype=bool)
    valid[rows] = True
    bitmap = _bitmap(valid)
    if mode != "all":
        full = np.zeros((n_rows, O), dtype=np.float32)
        full[rows] = y
        if O == 1:
            return pa.Array.from_buffers(pa.float32(), n_rows, [bitmap, pa.py_buffer(full.reshape(-1))])
        child = pa.Array.from_buffers(pa.float32(), n_rows * O, [None, pa.py_buffer(full.reshape(-1))])
        return pa.Array.from_buffers(score_type(O, mode), n_rows, [bitmap], children=[child])
    per_row = np.zeros(n_rows, dtype=np.int64)
    per_row[rows] = lengths
    offsets = np.zeros(n_rows + 1, dtype=np.int32)
    np.cumsum(per_row, out=offsets[1:])
    S = int(offsets[-1])
    if y.shape[0] != S:
        raise ValueError(f"per-step scores hold {y.shape[0]} steps; the rows' lengths sum to {S}")
    child = pa.Array.from_buffers(pa.float32(), S * O, [None, pa.py_buffer(y.reshape(-1))])
    if O > 1:
        child = pa.Array.from_buffers(pa.list_(pa.float32(), O), S, [None], children=[child])
    return pa.Array.from_buffers(score_type(O, mode), n_rows, [bitmap, pa.py_buffer(offsets)], children=[child])


def encode_state(state: np.ndarray, valid: np.ndarray) -> pa.Array:
    """A (B, n) state matrix as ``list<float32>`` with nulls where ``valid`` is False."""
    state = np.ascontiguousarray(state, dtype=np.float32)
    B, n = state.shape
    per_row = np.where(valid, n, 0)
    offsets = np.zeros(B + 1, dtype=np.int32)
    np.cumsum(per_row, out=offsets[1:])
    vals = state[valid].reshape(-1)
    child = pa.Array.from_buffers(pa.float32(), vals.size, [None, pa.py_buffer(vals)])
    return pa.Array.from_buffers(state_type(), B, [_bitmap(valid), pa.py_buffer(offsets)], children=[child])


def state_to_rows(s: np.ndarray) -> np.ndarray:
    """PyTorch (L*D, B, H) -> per-row flattened (B, L*D*H), row-major per row."""
    ld, B, H = s.shape
    return np.ascontiguousarray(np.transpose(s, (1, 0, 2)).reshape(B, ld * H))


def rows_to_state(rows: np.ndarray, ld: int) -> np.ndarray:
    """Per-row flattened (B, L*D*H) -> PyTorch (L*D, B, H)."""
    B, n = rows.shape
    return np.ascontiguousarray(rows.reshape(B, ld, n // ld).transpose(1, 0, 2))


# --------------------------------------------------------------------------- long layout
def sequences_from_steps(table: pa.Table, feature_columns: Sequence[str], starts: np.ndarray, dtype=np.float32) -> pa.Array:
    """Build a ``list<fixed_size_list<float>[I]>`` column (``dtype`` values) from per-step columns.

    ``starts`` (G+1,) are the row offsets of each group in ``table``. A null in a
    feature column becomes a null value (the row is then reported as invalid).
    """
    I = len(feature_columns)
    N = table.num_rows
    dtype = np.dtype(dtype)
    atype = pa.from_numpy_dtype(dtype)
    vals = np.empty((N, I), dtype=dtype)
    null_steps = np.zeros(N, dtype=bool)
    for j, name in enumerate(feature_columns):
        col = as_array(table.column(name))
        if not is_numeric_type(col.type):
            raise InputTypeError(
                f"feature column {name!r} has type {col.type}; expected a number; "
                "pick numeric columns with feature_columns"
            )
        if col.null_count:
            null_steps |= np.asarray(col.is_null())
            col = col.fill_null(0)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf is reported as invalid
            vals[:, j] = col.to_numpy(zero_copy_only=False)
    flat = pa.Array.from_buffers(atype, N * I, [None, pa.py_buffer(vals.reshape(-1))])
    steps = pa.Array.from_buffers(pa.list_(atype, I), N, [_bitmap(~null_steps)], children=[flat])
    offsets = np.asarray(starts, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.list_(pa.list_(atype, I)), len(offsets) - 1, [None, pa.py_buffer(offsets)], children=[steps]
    )
