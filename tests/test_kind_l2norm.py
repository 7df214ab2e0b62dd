"""The ``l2norm`` step (``F.normalize(y, p=2, dim=-1, eps)``), added as one entry of the step-kind table.

The user's way end to end: a torch model whose forward() normalizes ->
``convert --chain`` -> bundle -> ``predict`` / ``rnnjit score`` / ``verify
--against``, against the torch module's own forward.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

import chain_models
import rnnjit
from chain_models import ChainNet, L2Norm, float_batch, token_batch
from cli_helpers import list_table, run, write
from rnnjit.kinds import KINDS
from rnnjit.spec import Step
from test_chain import DTYPES, check, convert
from torch_models import ENGINES, max_abs


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: f"dtype={d!r}")
@pytest.mark.parametrize("output", ["last", "all"], ids=lambda o: f"output={o!r}")
def test_l2norm_after_the_recurrent_module_matches_torch(tmp_path, engine, dtype, output):
    net = ChainNet([("lstm", nn.LSTM(3, 6, batch_first=True)), "l2norm", ("fc", nn.Linear(6, 2))],
                   output=output, seed=1)
    model = convert(net, tmp_path, dtype)
    assert model.describe() == "lstm,l2norm,fc"
    x, lengths = float_batch(np.random.default_rng(0), 3, 7, 5, dtype)
    check(net, model, x, lengths, dtype, engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_l2norm_between_embedding_pooling_and_head_matches_torch(tmp_path, engine):
    net = ChainNet([("emb", nn.Embedding(11, 4)), ("gru", nn.GRU(4, 5, batch_first=True)), "pool:mean", "l2norm",
                    ("fc", nn.Linear(5, 1)), "sigmoid"], output="all", seed=2)
    model = convert(net, tmp_path, "float32")
    ids, lengths = token_batch(np.random.default_rng(1), 11, 6, 8)
    check(net, model, ids, lengths, "float32", engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_l2norm_first_normalizes_the_input_features(tmp_path, engine):
    net = ChainNet(["l2norm", ("lstm", nn.LSTM(3, 4, batch_first=True)), ("fc", nn.Linear(4, 1))], seed=3)
    model = convert(net, tmp_path, "float32")
    assert model.input_size == 3  # the first step that fixes the width is the LSTM
    x, lengths = float_batch(np.random.default_rng(2), 3, 5, 6)
    check(net, model, x, lengths, "float32", engine)


def test_stated_eps_is_used_and_not_named_as_a_guess(tmp_path, monkeypatch):
    # eps=0.5 is larger than the norm of the small vectors below: the stated value changes the scores
    monkeypatch.setitem(chain_models.OPS, "l2norm:eps=0.5", lambda: L2Norm(0.5))
    net = ChainNet([("lstm", nn.LSTM(2, 3, batch_first=True)), "l2norm:eps=0.5", ("fc", nn.Linear(3, 1))], seed=4)
    model = convert(net, tmp_path, "float32")
    step = model.chain[1]
    assert (step.kind, step.eps) == ("l2norm", 0.5)
    assert not any(a["what"] == "eps" for a in model.assumed)
    x, lengths = float_batch(np.random.default_rng(3), 2, 4, 3)
    x *= 1e-3
    check(net, model, x, lengths, "float32", "numpy")
    rnnjit.convert(tmp_path / "m.pth", tmp_path / "default.npz", chain="lstm,l2norm,fc")
    default = rnnjit.load(tmp_path / "default.npz")
    assert max_abs(default.predict(x, lengths=lengths), model.predict(x, lengths=lengths)) > 1e-3


def test_unstated_eps_is_named_as_a_guess(tmp_path):
    net = ChainNet([("lstm", nn.LSTM(2, 3, batch_first=True)), "l2norm", ("fc", nn.Linear(3, 1))], seed=5)
    model = convert(net, tmp_path, "float32")
    eps = [a for a in model.assumed if a["what"] == "eps"]
    assert len(eps) == 1 and eps[0]["assumed"] == "1e-12"
    assert "l2norm: eps assumed 1e-12 (F.normalize's default" in eps[0]["note"]
    assert "l2norm:eps=1e-6" in eps[0]["note"]


def test_bundle_round_trip_keeps_the_step_and_its_eps(tmp_path):
    net = ChainNet([("lstm", nn.LSTM(2, 3, batch_first=True)), "l2norm", ("fc", nn.Linear(3, 1))], seed=6)
    convert(net, tmp_path, "float32", chain="lstm,l2norm:eps=1e-6,fc")
    doc = json.loads(str(np.load(tmp_path / "m.npz", allow_pickle=False)["__rnnjit__"][()]))
    assert doc["chain"][1] == {"kind": "l2norm", "name": "", "eps": 1e-6}
    step = Step.from_dict(doc["chain"][1])
    assert step == Step("l2norm", "", eps=1e-6) and Step.from_dict(step.to_dict()) == step
    # a bundle written without the eps key reads the kind's default, F.normalize's 1e-12
    assert Step.from_dict({"kind": "l2norm", "name": ""}).eps == KINDS["l2norm"].option("eps").default == 1e-12
    assert rnnjit.load(tmp_path / "m.npz").chain[1] == step


def test_cli_convert_and_score(tmp_path):
    net = ChainNet([("lstm", nn.LSTM(3, 4, batch_first=True)), "l2norm", ("fc", nn.Linear(4, 2))], seed=7)
    torch.save(net.state_dict(), tmp_path / "m.pth")
    r = run("convert", tmp_path / "m.pth", "-o", tmp_path / "m.npz", "--chain", "lstm,l2norm,fc")
    assert r.exit_code == 0, r.stderr
    assert "note: l2norm: eps assumed 1e-12" in r.stderr
    rng = np.random.default_rng(4)
    seqs = [rng.normal(size=(int(n), 3)).astype(np.float32) for n in rng.integers(1, 6, size=9)]
    src = write(list_table(seqs), tmp_path / "in.parquet")
    r = run("score", "--model", tmp_path / "m.npz", "--input", src, "-o", tmp_path / "out.parquet", "--quiet")
    assert r.exit_code == 0, r.stderr
    got = np.array(pq.read_table(tmp_path / "out.parquet").column("score").to_pylist(), dtype=np.float32)
    want = np.concatenate([net.run(s[None], [len(s)]) for s in seqs])
    assert max_abs(got, want) <= 1e-5


def test_verify_against_builds_l2norm_in_torch(tmp_path):
    net = ChainNet([("lstm", nn.LSTM(3, 4, batch_first=True)), "l2norm", ("fc", nn.Linear(4, 1))], seed=8)
    convert(net, tmp_path, "float32")
    r = run("verify", tmp_path / "m.npz", "--against", tmp_path / "m.pth", "--engine", "numpy")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "torch: ok" in r.stdout


def test_a_zero_vector_divides_by_eps_as_torch_does():
    y = np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [1e-13, 0.0, 0.0]], dtype=np.float64)
    step = Step("l2norm", "", eps=1e-12)
    got = KINDS["l2norm"].apply(step, {}, y, None)
    want = nn.functional.normalize(torch.from_numpy(y), p=2.0, dim=-1, eps=1e-12).numpy()
    assert got.dtype == y.dtype and np.array_equal(got, want)


@pytest.mark.parametrize("chain, message", [
    ("lstm,l2norm:eps=0,fc", r"eps must be a positive number, e\.g\. l2norm:eps=1e-6"),
    ("lstm,l2norm:max_norm=1,fc", r"'l2norm':max_norm=\.\.\. gives a max_norm, but 'l2norm' is not an nn\.Embedding"),
])
def test_bad_l2norm_options_are_one_line_errors(tmp_path, chain, message):
    net = ChainNet([("lstm", nn.LSTM(2, 3, batch_first=True)), ("fc", nn.Linear(3, 1))], seed=9)
    torch.save(net.state_dict(), tmp_path / "m.pth")
    r = run("convert", tmp_path / "m.pth", "-o", tmp_path / "m.npz", "--chain", chain)
    assert r.exit_code == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert re.search(message, r.stderr), r.stderr
    assert not (tmp_path / "m.npz").exists()
