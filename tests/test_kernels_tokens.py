"""Token ids read through an embedding table inside the kernels, and pooling in their output pass.

The engine reads each step's table row by token id in its tile instead of a
(B, T, E) embedded batch: on every path (one-sequence tiles, few-sequence
tiles, lane tiles, a team, several layers, both directions) the result must
be the same bits as running the embedded batch, on both engines, and what
torch's ``nn.Embedding`` + recurrent module return. Ids past a sequence's
length are never read. `rnnjit.Model` hands the embedding and a pooling step
to the engine (no embed/pool pass of its own) when they touch the recurrent
module, and keeps its own passes where they do not.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from test_kernels import SELECTS, TOL, build, max_err, torch_run

from rnnjit import kernels, reference
from rnnjit.kernels import team_policy
from rnnjit.kinds import KINDS
from rnnjit.model import Model
from rnnjit.spec import RNNSpec, Step, rnn_step

V, E = 50, 6


def tokens(B, T, seed, garbage_padding=True):
    """Token ids (B, T), lengths, and the padding filled with ids no table has (they must never be read)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, (B, T))
    lengths = rng.integers(1, T + 1, B).astype(np.int64)
    lengths[0] = T
    if garbage_padding:
        ids[np.arange(T)[None, :] >= lengths[:, None]] = 10**12
    return ids, lengths


@pytest.mark.parametrize("cell", ["lstm", "lstmp", "gru", "rnn_tanh"])
@pytest.mark.parametrize("B", [1, 3, 9, 13, 40], ids=lambda b: f"{b=}")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_table_rows_read_in_the_tile_match_the_embedded_batch(cell, B, dtype):
    H = 64 if B < 12 else 16  # B=1 runs as a team at H=64, 13 as a 16-lane team, 40 as lane tiles
    mod, spec, weights = build(cell, E, H, 2, True, True, dtype, seed=B)
    table = np.random.default_rng(B).standard_normal((V, E)).astype(dtype)
    ids, lengths = tokens(B, 5, seed=B)
    x = table[np.where(np.arange(5)[None, :] < lengths[:, None], ids, 0)]
    prepared, ref = kernels.prepare(spec, weights), reference.prepare(spec, weights)
    for select in SELECTS:
        for n in (1, 2):
            team_policy._team_paused_until = 0.0  # a stalled team on a busy machine must not skip the team path
            got = kernels.run(prepared, ids, lengths, None, None, select, n, table=table)
            want = kernels.run(prepared, x, lengths, None, None, select, n)
            for g, w in zip(got, want):
                if w is not None:
                    np.testing.assert_array_equal(g, w)
        got = reference.run(ref, ids, lengths, None, None, select, table=table)
        want = reference.run(ref, x, lengths, None, None, select)
        for g, w in zip(got, want):
            if w is not None:
                np.testing.assert_array_equal(g, w)
    emb = torch.nn.Embedding(V, E).to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        emb.weight.copy_(torch.from_numpy(table))
    with torch.inference_mode():
        tx = emb(torch.from_numpy(np.where(ids < V, ids, 0))).numpy()
    ty, thn, tcn = torch_run(mod, tx, lengths, None, None)
    y, hn, cn = kernels.run(prepared, ids, lengths, None, None, "all", 2, table=table)
    for name, g, w in zip(("y", "hn", "cn"), (y, hn, cn), (ty, thn, tcn)):
        assert max_err(g, w) <= TOL[dtype], f"{name} vs torch: {max_err(g, w):.3g}"


def test_pooled_outputs_are_the_same_bits_for_any_thread_count():
    _, spec, weights = build("lstm", 4, 9, 2, True, True, np.float32)
    prepared = kernels.prepare(spec, weights)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((100, 7, 4)).astype(np.float32)
    lengths = rng.integers(1, 8, 100).astype(np.int64)
    for select in ("sum", "mean", "max"):
        one = kernels.run(prepared, x, lengths, None, None, select, 1)
        for n in (2, 3):
            for a, b in zip(one, kernels.run(prepared, x, lengths, None, None, select, n)):
                np.testing.assert_array_equal(a, b)


def test_engines_check_the_table_and_the_select():
    _, spec, weights = build("gru", E, 8, 1, False, True, np.float32)
    prepared = kernels.prepare(spec, weights)
    ids, lengths = tokens(4, 3, seed=0)
    with pytest.raises(ValueError, match="vocabulary"):
        kernels.run(prepared, ids, lengths, table=np.zeros((V, E + 1), np.float32))
    for engine, prep in ((kernels, prepared), (reference, reference.prepare(spec, weights))):
        with pytest.raises(ValueError, match="select"):
            engine.run(prep, np.zeros((2, 3, E), np.float32), np.array([3, 3]), select="median")


def _classifier(pool: str, between: tuple[Step, ...] = ()):
    """Embedding -> [between] -> LSTM -> pool -> linear, as a Model and as torch modules."""
    torch.manual_seed(0)
    emb, lstm, fc = torch.nn.Embedding(V, E), torch.nn.LSTM(E, 8, batch_first=True, bidirectional=True), torch.nn.Linear(16, 3)
    weights = {f"emb.{k}": v for k, v in emb.state_dict().items()}
    weights |= {f"rnn.{k}": v for k, v in lstm.state_dict().items()}
    weights |= {f"fc.{k}": v for k, v in fc.state_dict().items()}
    weights = {k: v.detach().numpy() for k, v in weights.items()}
    rnn = rnn_step(RNNSpec("lstm", E, 8, 1, True, True, 0, prefix="rnn."))
    chain = (Step("embedding", "emb", V, E), *between, rnn, Step("pool", pool), Step("linear", "fc", 16, 3, bias=True))
    return Model(chain, weights, output="all"), (emb, lstm, fc)


def _torch_classifier(mods, pool, ids, lengths):
    emb, lstm, fc = mods
    T = ids.shape[1]
    with torch.inference_mode():
        x = emb(torch.from_numpy(np.where(ids < V, ids, 0)))
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.from_numpy(lengths), batch_first=True, enforce_sorted=False)
        y, _ = lstm(packed)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=T)
        valid = torch.from_numpy(np.arange(T)[None, :, None] < lengths[:, None, None])
        if pool == "mean":
            p = (y * valid).sum(1) / torch.from_numpy(lengths)[:, None]
        elif pool == "max":
            p = y.masked_fill(~valid, -torch.inf).max(1).values
        elif pool == "sum":
            p = (y * valid).sum(1)
        else:
            p = y[torch.arange(len(lengths)), torch.from_numpy(lengths - 1)]
        return fc(p).numpy()


@pytest.mark.parametrize("engine", ["numba", "numpy"])
@pytest.mark.parametrize("pool", ["mean", "max", "sum", "last"])
@pytest.mark.parametrize("dropout_between", [False, True])
def test_model_hands_embedding_and_pooling_to_the_engine(monkeypatch, engine, pool, dropout_between):
    between = (Step("dropout", "drop"),) if dropout_between else ()
    model, mods = _classifier(pool, between)

    def no_pass(*_a, **_k):
        raise AssertionError("the engine should have run this step")

    for kind in ("embedding", "pool"):  # the numpy passes of both kinds, as the model looks them up
        monkeypatch.setitem(KINDS, kind, replace(KINDS[kind], apply=no_pass))
    ids, lengths = tokens(21, 9, seed=4)
    got = model.predict(ids, lengths, engine=engine)
    want = _torch_classifier(mods, pool, ids, lengths)
    assert max_err(got, want) <= 1e-5


def test_model_keeps_its_own_passes_where_the_steps_do_not_touch_the_recurrent_module():
    # embedding -> linear -> LSTM: the embedded batch is needed by the linear step;
    # LSTM -> layernorm -> pool: the pooling reads the normalized steps.
    torch.manual_seed(1)
    emb, proj, lstm, ln = torch.nn.Embedding(V, E), torch.nn.Linear(E, 5), torch.nn.LSTM(5, 8, batch_first=True), torch.nn.LayerNorm(8)
    weights = {f"emb.{k}": v for k, v in emb.state_dict().items()} | {f"proj.{k}": v for k, v in proj.state_dict().items()}
    weights |= {f"rnn.{k}": v for k, v in lstm.state_dict().items()} | {f"ln.{k}": v for k, v in ln.state_dict().items()}
    weights = {k: v.detach().numpy() for k, v in weights.items()}
    chain = (
        Step("embedding", "emb", V, E), Step("linear", "proj", E, 5, bias=True),
        rnn_step(RNNSpec("lstm", 5, 8, 1, False, True, 0, prefix="rnn.")),
        Step("layernorm", "ln", 8, 8, bias=True, affine=True), Step("pool", "max"),
    )  # fmt: skip
    model = Model(chain, weights, output="all")
    assert not model._fused
    ids, lengths = tokens(6, 7, seed=2, garbage_padding=False)
    with torch.inference_mode():
        y, _ = lstm(proj(emb(torch.from_numpy(ids))))
        y = ln(y).numpy()
    want = np.stack([y[b, : lengths[b]].max(0) for b in range(6)])
    assert max_err(model.predict(ids, lengths), want) <= 1e-5
