"""`rnnjit.plan.plan_scoring`: the columns to read and the output schema, checked before any row is read."""

from __future__ import annotations

import pyarrow as pa
import pytest

import rnnjit
from cli_helpers import FEATURES_TYPE, make_bundle
from rnnjit.errors import InputError
from rnnjit.plan import plan_scoring
from rnnjit.scoring import ScoreOptions


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("plan")
    return {
        "lstm": rnnjit.load(make_bundle(d, name="lstm.npz", feature_names=["a", "b", "c"])),
        "bilstm": rnnjit.load(make_bundle(d, name="bilstm.npz", bidirectional=True)),
    }


LIST = pa.schema([("id", pa.int64()), ("label", pa.string()), ("features", FEATURES_TYPE)])


def test_list_layout_reads_pass_through_then_features(models):
    plan = plan_scoring(models["lstm"], LIST, ScoreOptions())
    assert plan.layout == "list" and plan.long is None and plan.notes == ()
    assert plan.columns == ("id", "label", "features")
    assert plan.list_schema.names == ["id", "label", "features"]
    assert plan.output_schema.names == ["id", "label", "score"]
    assert plan.output_schema.field("score").type == pa.float32()


def test_state_columns_are_read_when_present_and_emitted_on_request(models):
    schema = LIST.append(pa.field("h0", pa.list_(pa.float32()))).append(pa.field("c0", pa.list_(pa.float32())))
    plan = plan_scoring(models["lstm"], schema, ScoreOptions(pass_through=("id",), emit_state=True))
    assert plan.columns == ("id", "features", "h0", "c0")
    assert plan.output_schema.names == ["id", "score", "hn", "cn"]


def test_long_layout_groups_steps_into_a_features_column(models):
    schema = pa.schema([("id", pa.int64()), ("t", pa.int64()), ("a", pa.float32()), ("b", pa.float32()),
                        ("c", pa.float32())])
    plan = plan_scoring(models["lstm"], schema, ScoreOptions(id_columns=("id",)), layout="long", order_column="t")
    assert plan.layout == "long" and plan.columns == ("id", "t", "a", "b", "c")
    assert plan.long.feature_columns == ("a", "b", "c")  # the bundle's feature names
    assert plan.options.features_column == "features" and plan.options.row_label == "sequence"
    assert plan.list_schema.names == ["id", "features"]
    batch = pa.record_batch([pa.array([7, 7, 8]), pa.array([0, 1, 0]), *(pa.array([1.0, 2.0, 3.0], pa.float32()),) * 3],
                            schema=schema)
    grouped = list(plan.sequences([batch], "float32"))
    assert sum(n for _, n in grouped) == 3  # input rows consumed
    assert [i for b, _ in grouped for i in b.column("id").to_pylist()] == [7, 8]
    assert [len(f) for b, _ in grouped for f in b.column("features").to_pylist()] == [2, 1]


def test_a_previous_runs_hn_column_is_noted(models):
    schema = LIST.append(pa.field("hn", pa.list_(pa.float32())))
    plan = plan_scoring(models["lstm"], schema, ScoreOptions(pass_through=("id",)))
    assert len(plan.notes) == 1 and "pass h0_column='hn'" in plan.notes[0]
    # without --emit-state it is copied through like any column, with the note (README "State columns")
    plan = plan_scoring(models["lstm"], schema, ScoreOptions())
    assert "hn" in plan.output_schema.names and len(plan.notes) == 1
    # with it, it would clash with the run's own hn: the error carries the note
    with pytest.raises(InputError, match=r"'hn' would be overwritten by the state column emit_state writes.*"
                                         r"pass h0_column='hn'"):
        plan_scoring(models["lstm"], schema, ScoreOptions(emit_state=True))


@pytest.mark.parametrize("model, schema, kw, message", [
    ("lstm", pa.schema([("id", pa.int64()), ("seq", FEATURES_TYPE)]), {},
     r"^column 'features' not found; the input has columns id, seq; name the sequence column with features_column"),
    ("lstm", LIST, {"layout": "wide"}, r"^layout 'wide' is not known; expected one of list, long$"),
    ("bilstm", LIST, {"options": ScoreOptions(emit_state=True)}, r"^emit_state on a bidirectional model"),
    ("lstm", LIST, {"options": ScoreOptions(pass_through=("id", "region"))}, r"'region'"),
])
def test_plan_refuses_before_any_row_is_read(models, model, schema, kw, message):
    options = kw.pop("options", ScoreOptions())
    with pytest.raises(InputError, match=message):
        plan_scoring(models[model], schema, options, **kw)
