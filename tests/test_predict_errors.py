"""``Model.predict`` refuses malformed input with one-line messages a user can act on."""

from __future__ import annotations

import numpy as np
import pytest

from rnnjit.errors import InputError, InputTypeError, RnnjitError
from torch_models import Arch, Net

LSTM = Arch("lstm", input_size=3, hidden_size=5, num_layers=2, bidirectional=True, proj_size=2)
GRU = Arch("gru", input_size=3, hidden_size=4)


@pytest.fixture
def lstm(model_cache):
    return model_cache(("errors", LSTM), lambda: (Net(LSTM, ("linear:1",)), {}))[1]


@pytest.fixture
def gru(model_cache):
    return model_cache(("errors", GRU), lambda: (Net(GRU, ("linear:1",)), {}))[1]


def error(model, *args, kind=InputError, **kwargs) -> str:
    with pytest.raises(kind) as exc:
        model.predict(*args, **kwargs)
    msg = str(exc.value)
    assert "\n" not in msg, f"message is not one line: {msg!r}"
    assert isinstance(exc.value, RnnjitError) and isinstance(exc.value, ValueError)
    return msg


X = np.zeros((2, 4, 3), np.float32)


def test_valid_input_works(lstm, engine):
    assert lstm.predict(X, lengths=[4, 1], engine=engine).shape == (2, 1)


# ----------------------------------------------------------------------- x
def test_x_with_wrong_feature_width(lstm):
    msg = error(lstm, np.zeros((2, 4, 5), np.float32))
    assert "5" in msg and "input_size=3" in msg


@pytest.mark.parametrize("shape", [(4, 3), (3,), (1, 2, 4, 3)], ids=lambda s: f"shape={s}")
def test_x_with_wrong_ndim(lstm, shape):
    msg = error(lstm, np.zeros(shape, np.float32))
    assert str(shape) in msg and "batch" in msg


def test_sequence_first_layout_is_caught_by_width(lstm):
    # (T, B, I) with B != I: the features axis is wrong, and the message says what was expected
    msg = error(lstm, np.zeros((4, 2, 7), np.float32))
    assert "input_size=3" in msg


def test_list_with_a_bad_sequence(lstm):
    msg = error(lstm, [np.zeros((3, 3)), np.zeros((2, 4))])
    assert "sequence 1" in msg and "(2, 4)" in msg and "3" in msg
    msg = error(lstm, [np.zeros((3, 3)), np.zeros(3)])
    assert "sequence 1" in msg


def test_non_numeric_x(lstm):
    error(lstm, np.full((1, 2, 3), "a"), kind=InputTypeError)
    error(lstm, np.array([[[{}, {}, {}]]], dtype=object), kind=InputTypeError)


def test_zero_time_steps(lstm):
    msg = error(lstm, np.zeros((2, 0, 3), np.float32))
    assert "0 time steps" in msg


# ----------------------------------------------------------------- lengths
@pytest.mark.parametrize("lengths, bad", [([0, 4], "0"), ([4, 5], "5"), ([-1, 2], "-1")], ids=str)
def test_lengths_out_of_range(lstm, lengths, bad):
    msg = error(lstm, X, lengths=lengths)
    assert f"= {bad}" in msg and "1 <= length <= 4" in msg


@pytest.mark.parametrize("lengths", [[4], [4, 4, 4], [[4, 4]], 4], ids=lambda v: f"lengths={v!r}")
def test_lengths_with_wrong_shape(lstm, lengths):
    msg = error(lstm, X, lengths=lengths)
    assert "(2,)" in msg


def test_fractional_lengths(lstm):
    error(lstm, X, lengths=[2.5, 4.0], kind=InputTypeError)
    # whole-valued floats are accepted
    assert lstm.predict(X, lengths=[2.0, 4.0], engine="numpy").shape == (2, 1)


def test_lengths_that_disagree_with_a_list(lstm):
    msg = error(lstm, [np.zeros((3, 3)), np.zeros((2, 3))], lengths=[3, 3])
    assert "lengths" in msg


# ------------------------------------------------------------------- state
def test_h0_with_wrong_shape(lstm):
    msg = error(lstm, X, h0=np.zeros((4, 2, 5), np.float32))  # hidden_size instead of proj_size
    assert "h0" in msg and "(4, 2, 5)" in msg and "(4, 2, 2)" in msg


def test_h0_in_batch_first_layout(gru):
    msg = error(gru, X, h0=np.zeros((2, 1, 4), np.float32))
    assert "h0" in msg and "(2, 1, 4)" in msg and "(1, 2, 4)" in msg


def test_c0_with_wrong_shape(lstm):
    msg = error(lstm, X, c0=np.zeros((4, 2, 2), np.float32))  # proj_size instead of hidden_size
    assert "c0" in msg and "(4, 2, 2)" in msg and "(4, 2, 5)" in msg


def test_c0_for_a_gru(gru):
    msg = error(gru, X, c0=np.zeros((1, 2, 4), np.float32))
    assert "c0" in msg and "gru" in msg


def test_non_numeric_h0(gru):
    error(gru, X, h0=np.full((1, 2, 4), "x"), kind=InputTypeError)


# ----------------------------------------------------------------- options
@pytest.mark.parametrize("mode", ["first", "ALL", ""], ids=lambda m: f"output={m!r}")
def test_unknown_output_mode(lstm, mode):
    msg = error(lstm, X, output=mode)
    assert repr(mode) in msg and "last" in msg and "final" in msg and "all" in msg


def test_unknown_engine(lstm):
    msg = error(lstm, X, engine="cuda")
    assert "'cuda'" in msg and "numpy" in msg


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2"], ids=lambda t: f"threads={t!r}")
def test_bad_thread_count(lstm, threads):
    msg = error(lstm, X, threads=threads)
    assert "threads" in msg


def test_errors_leave_the_model_usable(lstm, engine):
    error(lstm, np.zeros((2, 4, 5), np.float32))
    assert lstm.predict(X, engine=engine).shape == (2, 1)


# ------------------------------------------------------- what users pass as x
def test_integer_x_for_a_model_without_embedding(lstm):
    msg = error(lstm, np.ones((2, 4, 3), np.int64), kind=InputTypeError)
    assert "no embedding" in msg and "astype(np.float32)" in msg


def test_pandas_column_as_read_parquet_returns_it(lstm, engine, tmp_path):
    """pd.read_parquet gives an object array per row holding one array per step."""
    pd = pytest.importorskip("pandas")
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    seqs = [rng.standard_normal((n, 3)).astype(np.float32) for n in (4, 1, 3)]
    pq.write_table(pa.table({"features": pa.array([s.tolist() for s in seqs])}), tmp_path / "x.parquet")
    col = pd.read_parquet(tmp_path / "x.parquet")["features"]
    assert col.dtype == object and col.iloc[0].dtype == object
    expect = lstm.predict(seqs, engine=engine)
    np.testing.assert_array_equal(lstm.predict(col, engine=engine), expect)
    np.testing.assert_array_equal(lstm.predict(list(col), engine=engine), expect)
    table = pq.read_table(tmp_path / "x.parquet")
    np.testing.assert_array_equal(lstm.predict(table["features"], engine=engine), expect)
    np.testing.assert_array_equal(lstm.predict(table["features"].chunk(0), engine=engine), expect)
    with pytest.raises(InputTypeError, match="pass the sequence column"):
        lstm.predict(pd.read_parquet(tmp_path / "x.parquet"))


def test_univariate_series_for_input_size_one(tmp_path, engine):
    import rnnjit
    from torch_models import convert_and_load

    net = Net(Arch("gru", input_size=1, hidden_size=3), ("linear:1",))
    model, _ = convert_and_load(net, tmp_path)
    seqs = [np.array([0.5, -1.0, 2.0], np.float32), np.array([1.5], np.float32)]
    expect = model.predict([s[:, None] for s in seqs], engine=engine)
    np.testing.assert_array_equal(model.predict(seqs, engine=engine), expect)
    padded = np.array([[0.5, -1.0, 2.0], [1.5, 0, 0]], np.float32)
    np.testing.assert_array_equal(model.predict(padded, lengths=[3, 1], engine=engine), expect)
    assert isinstance(model, rnnjit.Model)
