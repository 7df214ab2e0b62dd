"""Arrow <-> numpy decoding and encoding (rnnjit.io.arrow)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from rnnjit.io.arrow import (
    decode_features,
    decode_state,
    encode_scores,
    encode_state,
    rows_to_state,
    sequences_from_steps,
    state_to_rows,
)
from rnnjit.errors import InputError, InputTypeError


def _padded(seqs, I):
    T = max((len(s) for s in seqs), default=0)
    x = np.zeros((len(seqs), T, I), np.float32)
    for b, s in enumerate(seqs):
        x[b, : len(s)] = s
    return x


def _seqs(rng, n=6, I=3, lengths=None):
    lengths = lengths or [int(rng.integers(1, 6)) for _ in range(n)]
    return [rng.normal(size=(t, I)).astype(np.float32) for t in lengths]


TYPES = {
    "list<list<f32>>": pa.list_(pa.list_(pa.float32())),
    "large_list<list<f64>>": pa.large_list(pa.list_(pa.float64())),
    "list<fixed_size_list<f32>[3]>": pa.list_(pa.list_(pa.float32(), 3)),
    "large_list<fixed_size_list<f64>[3]>": pa.large_list(pa.list_(pa.float64(), 3)),
    "list<large_list<f16>>": pa.list_(pa.large_list(pa.float16())),
}


@pytest.mark.parametrize("type_name", list(TYPES))
def test_decode_types_match_padding(type_name, rng):
    seqs = _seqs(rng)
    if "f16" in type_name:
        seqs = [s.astype(np.float16).astype(np.float32) for s in seqs]
        # pyarrow < 17 cannot build float16 from Python floats; a cast can (and is what a reader sees)
        arr = pa.array([s.tolist() for s in seqs], pa.list_(pa.list_(pa.float32()))).cast(TYPES[type_name])
    else:
        arr = pa.array([s.tolist() for s in seqs], TYPES[type_name])
    dec = decode_features(arr, 3)
    np.testing.assert_array_equal(dec.x, _padded(seqs, 3))
    np.testing.assert_array_equal(dec.lengths, [len(s) for s in seqs])
    np.testing.assert_array_equal(dec.rows, np.arange(len(seqs)))
    assert dec.x.dtype == np.float32 and dec.x.flags.c_contiguous


def test_decode_integer_features(rng):
    arr = pa.array([[[1, 2], [3, 4]], [[5, 6]]], pa.list_(pa.list_(pa.int32())))
    dec = decode_features(arr, 2, np.float64)
    assert dec.x.dtype == np.float64
    np.testing.assert_array_equal(dec.x[1, 0], [5, 6])


@pytest.mark.parametrize("type_name", ["list<list<f32>>", "list<fixed_size_list<f32>[3]>"])
def test_decode_sliced_and_chunked(type_name, rng):
    seqs = _seqs(rng, n=8)
    arr = pa.array([s.tolist() for s in seqs], TYPES[type_name])
    dec = decode_features(arr.slice(3, 4), 3)
    np.testing.assert_array_equal(dec.x, _padded(seqs[3:7], 3))
    chunked = pa.chunked_array([arr.slice(0, 2), arr.slice(2, 6)])
    np.testing.assert_array_equal(decode_features(chunked, 3).x, _padded(seqs, 3))


def test_decode_equal_lengths_is_zero_copy_reshape(rng):
    seqs = _seqs(rng, lengths=[4, 4, 4])
    arr = pa.array([s.tolist() for s in seqs], TYPES["list<fixed_size_list<f32>[3]>"])
    np.testing.assert_array_equal(decode_features(arr, 3).x, np.stack(seqs))


def test_decode_empty_null_and_invalid_rows(rng):
    good = rng.normal(size=(2, 2)).tolist()
    arr = pa.array(
        [good, [], None, [[1.0, 2.0], None], [[1.0, None]], [[np.nan, 1.0]], [[np.inf, 1.0]], good],
        pa.list_(pa.list_(pa.float32())),
    )
    dec = decode_features(arr, 2)
    np.testing.assert_array_equal(dec.rows, [0, 7])
    np.testing.assert_array_equal(dec.empty, [0, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(dec.invalid, [0, 0, 1, 1, 1, 1, 1, 0])
    assert dec.reasons == {2: "row 2: column 'features' is null"}
    np.testing.assert_allclose(dec.x[1], np.asarray(good, np.float32))


def test_decode_reasons_name_the_step():
    arr = pa.array([[[1.0, 2.0], [np.nan, 0.0]]], pa.list_(pa.list_(pa.float32())))
    dec = decode_features(arr, 2, row_name=lambda i: f"row {i} (id='a')")
    assert dec.reasons[0] == "row 0 (id='a'): step 1 of column 'features' holds NaN or inf"
    arr = pa.array([[[1.0, 2.0], [None, 0.0]]], pa.list_(pa.list_(pa.float32())))
    assert "step 1" in decode_features(arr, 2).reasons[0] and "null" in decode_features(arr, 2).reasons[0]


def test_decode_all_rows_empty_or_batch_empty():
    dec = decode_features(pa.array([[], []], pa.list_(pa.list_(pa.float32()))), 4)
    assert dec.x.shape == (0, 0, 4) and dec.empty.all()
    dec = decode_features(pa.array([], pa.list_(pa.list_(pa.float32()))), 4)
    assert dec.x.shape == (0, 0, 4) and dec.rows.size == 0


def test_decode_wrong_width_names_row_and_step():
    arr = pa.array([[[1.0, 2.0, 3.0]], [[1.0, 2.0, 3.0], [1.0, 2.0]]], pa.list_(pa.list_(pa.float32())))
    with pytest.raises(InputError, match=r"row 1: step 1 of column 'features' has 2 values; expected 3"):
        decode_features(arr, 3)


def test_decode_wrong_fixed_width():
    arr = pa.array([[[1.0, 2.0]]], pa.list_(pa.list_(pa.float32(), 2)))
    with pytest.raises(InputError, match=r"2 values per step .*input_size=3"):
        decode_features(arr, 3)


def test_decode_non_numeric_and_non_list():
    with pytest.raises(InputTypeError, match="holds string values; expected numbers"):
        decode_features(pa.array([[["a", "b"]]]), 2)
    with pytest.raises(InputTypeError, match=r"has type list<item: double>; expected list<list<float>>"):
        decode_features(pa.array([[1.0, 2.0]]), 2)


@pytest.mark.parametrize("O", [1, 3])
@pytest.mark.parametrize("mode", ["last", "all"])
def test_encode_scores_with_nulls(O, mode, rng):
    rows = np.array([0, 2, 3])
    lengths = np.array([2, 1, 3])
    y = rng.normal(size=(lengths.sum() if mode == "all" else 3, O)).astype(np.float32)
    arr = encode_scores(y, rows, lengths, 5, mode)
    arr.validate(full=True)
    got = arr.to_pylist()
    assert got[1] is None and got[4] is None
    starts = np.concatenate([[0], np.cumsum(lengths)])
    for j, r in enumerate(rows):
        exp = y[starts[j] : starts[j + 1]] if mode == "all" else y[j]
        exp = exp[..., 0] if O == 1 else exp
        np.testing.assert_array_equal(np.asarray(got[r], np.float32), exp)


def test_encode_scores_all_wraps_the_packed_steps_without_a_copy(rng):
    lengths = np.array([3, 1, 4])
    y = rng.normal(size=(8, 5)).astype(np.float32)
    arr = encode_scores(y, np.arange(3), lengths, 3, "all")
    leaf = arr.values.values if pa.types.is_fixed_size_list(arr.type.value_type) else arr.values
    assert leaf.buffers()[1].address == y.ctypes.data
    with pytest.raises(ValueError, match="hold 7 steps; the rows' lengths sum to 8"):
        encode_scores(y[:7], np.arange(3), lengths, 3, "all")


def test_state_roundtrip(rng):
    s = rng.normal(size=(4, 3, 5)).astype(np.float32)  # (L*D, B, H)
    rows = state_to_rows(s)
    assert rows.shape == (3, 20)
    np.testing.assert_array_equal(rows[1], s[:, 1, :].reshape(-1))
    np.testing.assert_array_equal(rows_to_state(rows, 4), s)
    valid = np.array([True, False, True])
    arr = encode_state(rows, valid)
    arr.validate(full=True)
    back, nulls = decode_state(arr, 20)
    np.testing.assert_array_equal(nulls, ~valid)
    np.testing.assert_array_equal(back[valid], rows[valid])
    np.testing.assert_array_equal(back[1], 0)


def test_decode_state_errors():
    with pytest.raises(InputError, match=r"row 1: column 'h0' has 3 values; expected 4"):
        decode_state(pa.array([[1, 2, 3, 4], [1, 2, 3]], pa.list_(pa.float32())), 4)
    with pytest.raises(InputError, match="null, NaN or inf"):
        decode_state(pa.array([[1, 2, np.nan, 4]], pa.list_(pa.float32())), 4)
    with pytest.raises(InputTypeError, match="expected list<float> of 4 values"):
        decode_state(pa.array(["x"]), 4)


def test_sequences_from_steps():
    tbl = pa.table({"a": [1.0, 2.0, 3.0, None], "b": pa.array([4, 5, 6, 7], pa.int32())})
    arr = sequences_from_steps(tbl, ["a", "b"], np.array([0, 1, 4]))
    arr.validate(full=True)
    assert arr.to_pylist() == [[[1.0, 4.0]], [[2.0, 5.0], [3.0, 6.0], None]]


# ------------------------------------------------------------------ shapes users have (issue #7)
def _fixed_T(rng, n=5, T=4, I=3):
    return [rng.normal(size=(T, I)).astype(np.float32) for _ in range(n)]


def test_univariate_series_is_one_value_per_step(rng):
    seqs = [rng.normal(size=(t, 1)).astype(np.float32) for t in (3, 1, 5, 0, 2)]
    for t in (pa.list_(pa.float32()), pa.large_list(pa.float64())):
        col = pa.array([s[:, 0].tolist() for s in seqs], t).slice(1)  # a sliced array keeps its offsets right
        dec = decode_features(col, 1)
        np.testing.assert_array_equal(dec.lengths, [1, 5, 2])
        np.testing.assert_array_equal(dec.x, _padded([s for s in seqs[1:] if len(s)], 1))
        assert dec.empty.tolist() == [False, False, True, False]


def test_univariate_series_needs_input_size_1(rng):
    with pytest.raises(InputTypeError, match=r"a list of numbers is one value per step, which fits only a model with input_size=1"):
        decode_features(pa.array([[1.0, 2.0]]), 3)


def test_fixed_size_list_of_fixed_size_list(rng):
    seqs = _fixed_T(rng)
    col = pa.array([s.tolist() for s in seqs], pa.list_(pa.list_(pa.float32(), 3), 4)).slice(2)
    dec = decode_features(col, 3)
    np.testing.assert_array_equal(dec.x, np.stack(seqs[2:]))
    np.testing.assert_array_equal(dec.lengths, [4, 4, 4])


@pytest.mark.parametrize("shape", [(4, 3), (4, 1), (4,)], ids=lambda s: f"shape={s}")
def test_fixed_shape_tensor(rng, shape):
    I = shape[1] if len(shape) == 2 else 1
    seqs = _fixed_T(rng, I=I)
    ttype = pa.fixed_shape_tensor(pa.float32(), shape)
    col = pa.ExtensionArray.from_storage(
        ttype, pa.array([s.reshape(-1).tolist() for s in seqs], pa.list_(pa.float32(), 4 * I)))
    dec = decode_features(col.slice(1), I)
    np.testing.assert_array_equal(dec.x, np.stack(seqs[1:]))


def test_fixed_shape_tensor_of_the_wrong_width():
    col = pa.ExtensionArray.from_storage(pa.fixed_shape_tensor(pa.float32(), (2, 4)),
                                         pa.array([[0.0] * 8], pa.list_(pa.float32(), 8)))
    with pytest.raises(InputError, match=r"has 4 values per step .* input_size=3"):
        decode_features(col, 3)


def test_float64_beyond_float32_is_named_without_a_warning():
    import warnings

    col = pa.array([[[0.0, 1e39]]], pa.list_(pa.list_(pa.float64())))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dec = decode_features(col, 2)
    assert dec.invalid.tolist() == [True]
    assert "holds 1e+39, beyond float32's range" in dec.reasons[0]
    assert decode_features(col, 2, dtype=np.float64).invalid.tolist() == [False]


def test_univariate_fixed_length_series(rng):
    seqs = _fixed_T(rng, I=1)
    col = pa.array([s[:, 0].tolist() for s in seqs], pa.list_(pa.float32(), 4)).slice(1)
    np.testing.assert_array_equal(decode_features(col, 1).x, np.stack(seqs[1:]))
