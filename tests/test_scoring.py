"""score_batch: one Arrow batch in, pass-through + score (+ state) out."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from cli_helpers import list_table, make_weights, random_sequences

from rnnjit import HeadStep, InputError, Model, RNNSpec
from rnnjit.io.arrow import state_to_rows
from rnnjit.scoring import ScoreOptions, ScoreStats, output_schema, score_batch


def _model(cell="lstm", I=3, H=4, layers=1, bidir=False, O=1, act="sigmoid", output="last"):
    spec = RNNSpec(cell, I, H, num_layers=layers, bidirectional=bidir, prefix="rnn.")
    head = [HeadStep("linear", "fc", spec.output_size, O, True), HeadStep("activation", act)]
    return Model(spec, head, make_weights(spec, O), output=output)


def _expected(model, seqs, mode, **kw):
    return model.predict(seqs, output=mode, engine="numpy", **kw)


@pytest.mark.parametrize("mode", ["last", "final", "all"])
@pytest.mark.parametrize("O", [1, 3])
@pytest.mark.parametrize("cell,layers,bidir", [("lstm", 2, True), ("gru", 1, False), ("rnn_tanh", 1, True)])
def test_score_batch_matches_predict(cell, layers, bidir, O, mode):
    model = _model(cell, layers=layers, bidir=bidir, O=O, act="softmax" if O > 1 else "sigmoid")
    seqs = random_sequences(7, 3, seed=1)
    out = score_batch(model, list_table(seqs), ScoreOptions(output_mode=mode, engine="numpy"))
    assert out.schema == output_schema(model, list_table(seqs).schema, ScoreOptions(output_mode=mode))
    assert out.column("id").to_pylist() == list(range(7))
    exp = _expected(model, seqs, mode)
    for b, got in enumerate(out.column("score").to_pylist()):
        e = exp[b][: len(seqs[b])] if mode == "all" else exp[b]
        e = e[..., 0] if O == 1 else e
        np.testing.assert_allclose(np.asarray(got, np.float32), e, rtol=0, atol=1e-6)


def test_score_types():
    seqs = random_sequences(2, 3)
    t = list_table(seqs)
    assert score_batch(_model(), t, ScoreOptions(engine="numpy")).schema.field("score").type == pa.float32()
    assert score_batch(_model(O=2), t, ScoreOptions(engine="numpy")).schema.field("score").type == pa.list_(
        pa.float32(), 2
    )
    all_type = score_batch(_model(O=2), t, ScoreOptions(engine="numpy", output_mode="all")).schema.field("score").type
    assert all_type == pa.list_(pa.list_(pa.float32(), 2))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_emit_state_and_initial_state(cell, rng):
    model = _model(cell, layers=2)
    seqs = random_sequences(5, 3, seed=2)
    ld, H = 2, 4
    h0 = rng.normal(size=(ld, 5, H)).astype(np.float32)
    c0 = rng.normal(size=(ld, 5, H)).astype(np.float32)
    cols = {"h0": pa.array(list(state_to_rows(h0)), pa.list_(pa.float32()))}
    kw = {"h0": h0}
    if cell == "lstm":
        cols["c0"] = pa.array(list(state_to_rows(c0)), pa.large_list(pa.float64()))
        kw["c0"] = c0
    out = score_batch(model, list_table(seqs, **cols), ScoreOptions(emit_state=True, engine="numpy"))
    assert out.schema.names == ["id", "score"] + (["hn", "cn"] if cell == "lstm" else ["hn"])
    y, state = model.predict(seqs, engine="numpy", return_state=True, **kw)
    hn, cn = state if cell == "lstm" else (state, None)
    np.testing.assert_allclose(out.column("score").to_numpy(), y[:, 0], atol=1e-6)
    np.testing.assert_allclose(np.array(out.column("hn").to_pylist()), state_to_rows(hn), atol=1e-6)
    if cn is not None:
        np.testing.assert_allclose(np.array(out.column("cn").to_pylist()), state_to_rows(cn), atol=1e-6)


def test_empty_sequence_keeps_its_state_and_counts():
    model = _model("gru")
    seqs = [np.ones((2, 3), np.float32), np.zeros((0, 3), np.float32)]
    h0 = pa.array([[0.5] * 4, [0.25] * 4], pa.list_(pa.float32()))
    stats = ScoreStats()
    out = score_batch(model, list_table(seqs, h0=h0), ScoreOptions(emit_state=True, engine="numpy"), stats=stats)
    assert out.column("score").to_pylist()[1] is None
    assert out.column("hn").to_pylist()[1] == [0.25] * 4  # a day without data carries the state over
    assert (stats.rows, stats.scored, stats.empty, stats.invalid) == (2, 1, 1, 0)


def test_invalid_rows_error_or_skip():
    model = _model()
    bad = [np.ones((2, 3), np.float32), np.full((2, 3), np.nan, np.float32), np.ones((1, 3), np.float32)]
    t = list_table(bad, ids=[7, 8, 9])
    with pytest.raises(InputError, match=r"row 1 \(id=8\): step 0 of column 'features' holds NaN or inf; .*on_invalid='skip'"):
        score_batch(model, t, ScoreOptions(engine="numpy"))
    with pytest.raises(InputError, match=r"row 11 \(id=8\)"):
        score_batch(model, t, ScoreOptions(engine="numpy"), row_offset=10)
    stats = ScoreStats()
    out = score_batch(model, t, ScoreOptions(engine="numpy", on_invalid="skip"), stats=stats)
    got = out.column("score").to_pylist()
    assert got[1] is None and got[0] is not None and got[2] is not None
    assert stats.invalid == 1 and stats.scored == 2


def test_pass_through_selection_and_errors():
    model = _model()
    t = list_table(random_sequences(3, 3), label=pa.array([1, 0, 1]), h0=pa.array([None] * 3, pa.list_(pa.float32())))
    assert score_batch(model, t, ScoreOptions(engine="numpy")).schema.names == ["id", "label", "score"]
    assert score_batch(model, t, ScoreOptions(engine="numpy", pass_through=("label",))).schema.names == [
        "label",
        "score",
    ]
    with pytest.raises(InputError, match=r"column 'nope' was asked for but the input has columns id, features, label, h0"):
        score_batch(model, t, ScoreOptions(pass_through=("nope",)))
    with pytest.raises(InputError, match="'score' would be overwritten"):
        score_batch(model, t.append_column("score", pa.array([1, 2, 3])), ScoreOptions(engine="numpy"))
    with pytest.raises(InputError, match=r"column 'seq' not found; the input has columns id, features, label, h0"):
        score_batch(model, t, ScoreOptions(features_column="seq"))


def test_c0_for_a_gru_is_refused():
    t = list_table(random_sequences(1, 3), c0=pa.array([[0.0] * 4], pa.list_(pa.float32())))
    with pytest.raises(InputError, match="gru model has no cell state"):
        score_batch(_model("gru"), t, ScoreOptions(engine="numpy"))


def test_h0_wrong_length_names_row():
    t = list_table(random_sequences(2, 3), ids=[5, 6], h0=pa.array([[0.0] * 4, [0.0] * 3], pa.list_(pa.float32())))
    with pytest.raises(InputError, match=r"row 1 \(id=6\): column 'h0' has 3 values; expected 4 = num_layers"):
        score_batch(_model(), t, ScoreOptions(engine="numpy"))


def test_table_with_chunks_and_empty_batch():
    model = _model()
    seqs = random_sequences(6, 3, seed=3)
    t = pa.concat_tables([list_table(seqs[:2]), list_table(seqs[2:], ids=[2, 3, 4, 5])])
    out = score_batch(model, t, ScoreOptions(engine="numpy"))
    np.testing.assert_allclose(out.column("score").to_numpy(), _expected(model, seqs, "last")[:, 0], atol=1e-6)
    empty = score_batch(model, list_table(seqs).slice(0, 0), ScoreOptions(engine="numpy"))
    assert empty.num_rows == 0 and empty.schema.names == ["id", "score"]
    all_empty = score_batch(model, list_table([np.zeros((0, 3), np.float32)] * 2),
                            ScoreOptions(engine="numpy", emit_state=True, output_mode="all"))
    assert all_empty.column("score").to_pylist() == [None, None]
    assert all_empty.column("hn").to_pylist() == [None, None]


def test_options_are_checked():
    with pytest.raises(InputError, match="on_invalid='drop' is not known"):
        ScoreOptions(on_invalid="drop")
    with pytest.raises(InputError, match="output mode 'first' is not known"):
        ScoreOptions(output_mode="first")


def test_score_batches_numbers_rows_across_batches():
    from rnnjit.scoring import score_batches

    model = _model()
    good = list_table(random_sequences(3, 3), ids=[1, 2, 3]).to_batches()[0]
    bad = list_table([np.full((1, 3), np.nan, np.float32)], ids=[4]).to_batches()[0]
    stats = ScoreStats()
    outs = list(score_batches(model, [good, good], ScoreOptions(engine="numpy"), stats=stats))
    assert [o.num_rows for o in outs] == [3, 3] and stats.rows == 6
    with pytest.raises(InputError, match=r"row 3 \(id=4\)"):
        list(score_batches(model, [good, bad], ScoreOptions(engine="numpy")))
