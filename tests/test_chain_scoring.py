"""Chains through `score_batch`: state columns of several modules, pooled scores, token columns."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch import nn

import rnnjit
from chain_models import ChainNet, float_batch
from rnnjit.scoring import ScoreOptions, output_schema, score_batch
from torch_models import TOL, max_abs


def lists(x, lengths):
    return pa.array([x[b, : lengths[b]].tolist() for b in range(len(lengths))], pa.list_(pa.list_(pa.float32())))


@pytest.fixture(scope="module")
def lstm_gru(tmp_path_factory):
    d = tmp_path_factory.mktemp("lstm_gru")
    net = ChainNet([("lstm", nn.LSTM(3, 4, num_layers=2, batch_first=True)), ("gru", nn.GRU(4, 2, batch_first=True)),
                    ("fc", nn.Linear(2, 1))], output="last", seed=7, scale=2.0)
    torch.save(net.state_dict(), d / "m.pth")
    return rnnjit.convert(d / "m.pth", d / "m.npz", chain=net.chain_spec())


def test_state_columns_concatenate_modules_in_chain_order(lstm_gru, engine):
    x, lengths = float_batch(np.random.default_rng(0), 3, B=4, T=5)
    out = score_batch(lstm_gru, pa.table({"features": lists(x, lengths)}),
                      ScoreOptions(emit_state=True, engine=engine))
    _, ((hn1, cn1), hn2) = lstm_gru.predict(x, lengths=lengths, return_state=True, engine=engine)
    hn = np.asarray(out.column("hn").to_pylist())
    cn = np.asarray(out.column("cn").to_pylist())
    # per row: lstm's (2 layers, 4) then gru's (1 layer, 2); c: the LSTM's only
    expect_h = np.concatenate([hn1.transpose(1, 0, 2).reshape(4, 8), hn2.transpose(1, 0, 2).reshape(4, 2)], axis=1)
    np.testing.assert_allclose(hn, expect_h, rtol=0, atol=0)
    np.testing.assert_allclose(cn, cn1.transpose(1, 0, 2).reshape(4, 8), rtol=0, atol=0)
    from rnnjit.cli.inspect_cmd import bundle_info

    inspect = bundle_info(lstm_gru, "m.npz")["state_columns"]
    assert inspect == {"h0": {"values_per_row": 10, "shape": [[2, 4], [1, 2]]},
                       "c0": {"values_per_row": 8, "shape": [2, 4]}}


def test_carried_state_of_several_modules_continues_where_it_stopped(lstm_gru, engine):
    """Scoring the first half with --emit-state, then the second half from hn/cn, equals the whole."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 6, 3)).astype(np.float32)
    whole = lstm_gru.predict(x, engine=engine)
    first = score_batch(lstm_gru, pa.table({"features": lists(x[:, :3], [3, 3, 3])}),
                        ScoreOptions(emit_state=True, engine=engine))
    second = score_batch(lstm_gru, pa.table({"features": lists(x[:, 3:], [3, 3, 3]),
                                             "h0": first.column("hn"), "c0": first.column("cn")}),
                         ScoreOptions(engine=engine))
    assert max_abs(np.asarray(second.column("score").to_pylist()), whole[:, 0]) <= TOL["float32"]
    bad = pa.array([[0.0] * 8] * 3, pa.list_(pa.float32()))
    with pytest.raises(rnnjit.InputError, match="has 8 values; expected 10 = every recurrent module"):
        score_batch(lstm_gru, pa.table({"features": lists(x, [6, 6, 6]), "h0": bad}), ScoreOptions(engine=engine))


def test_pooled_model_scores_one_value_per_row(tmp_path, engine):
    net = ChainNet([("gru", nn.GRU(3, 4, batch_first=True)), "pool:max", ("fc", nn.Linear(4, 2))], output="all")
    torch.save(net.state_dict(), tmp_path / "m.pth")
    model = rnnjit.convert(tmp_path / "m.pth", tmp_path / "m.npz", chain=net.chain_spec())
    x, lengths = float_batch(np.random.default_rng(2), 3, B=3, T=4)
    batch = pa.table({"features": lists(x, lengths)})
    out = score_batch(model, batch, ScoreOptions(engine=engine))
    assert out.schema == output_schema(model, batch.schema, ScoreOptions())
    assert out.schema.field("score").type == pa.list_(pa.float32(), 2)
    assert max_abs(np.asarray(out.column("score").to_pylist()), net.run(x, lengths)) <= TOL["float32"]
