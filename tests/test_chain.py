"""Whole models against torch: every chain step alone and in combination.

Each model goes the user's way: ``torch.save(model.state_dict())`` ->
`rnnjit.convert` (``--chain`` as its ``forward`` reads) -> `rnnjit.load` ->
``predict``, compared with the torch module's own forward on variable lengths.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import rnnjit
from chain_models import ChainNet, float_batch, token_batch
from torch_models import ENGINES, TOL, max_abs

DTYPES = ("float32", "float64")
TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}


def convert(net: ChainNet, tmp_path, dtype, **kw):
    net = net.to(TORCH_DTYPE[dtype])
    torch.save(net.state_dict(), tmp_path / "m.pth")
    kw.setdefault("chain", net.chain_spec())
    rnnjit.convert(tmp_path / "m.pth", tmp_path / "m.npz", output=net.output if "pool:" not in kw["chain"] else None,
                   **kw)
    return rnnjit.load(tmp_path / "m.npz")


def check(net, model, x, lengths, dtype, engine, tol_scale=1.0):
    expect = net.run(x, lengths, TORCH_DTYPE[dtype])
    got = model.predict(x, lengths=lengths, engine=engine)
    assert got.dtype == np.dtype(dtype) and got.shape == expect.shape
    assert max_abs(got, expect) <= TOL[dtype] * tol_scale * max(1.0, float(np.abs(expect).max()))


def biased_layernorm(n: int, bias: float) -> nn.LayerNorm:
    """A LayerNorm whose bias (its output on a padded, all-zero step) is larger than any valid output."""
    ln = nn.LayerNorm(n)
    with torch.no_grad():
        ln.bias.fill_(bias)
    return ln


# One step after (or before) a small LSTM, each in PyTorch's default configuration.
SINGLE = {
    "embedding": lambda: [("emb", nn.Embedding(11, 3, padding_idx=0)), ("lstm", nn.LSTM(3, 4, batch_first=True))],
    "pool:last": lambda: [("lstm", nn.LSTM(3, 4, batch_first=True)), "pool:last"],
    "pool:mean": lambda: [("lstm", nn.LSTM(3, 4, batch_first=True)), "pool:mean"],
    "pool:max": lambda: [("lstm", nn.LSTM(3, 4, batch_first=True)), "pool:max"],
    "pool:sum": lambda: [("lstm", nn.LSTM(3, 4, batch_first=True)), "pool:sum"],
    # a LayerNorm gives its bias on padded (zero) steps: pooling must still skip them
    "pool:max-after-layernorm": lambda: [("lstm", nn.LSTM(3, 4, batch_first=True)), ("ln", biased_layernorm(4, 1.0)),
                                         "pool:max"],
    "pool:mean-after-layernorm": lambda: [("lstm", nn.LSTM(3, 4, batch_first=True)),
                                          ("ln", biased_layernorm(4, 1.0)), "pool:mean"],
    "layernorm": lambda: [("lstm", nn.LSTM(3, 4, batch_first=True)), ("ln", nn.LayerNorm(4))],
    "layernorm-no-bias": lambda: [("lstm", nn.LSTM(3, 4, batch_first=True)), ("ln", nn.LayerNorm(4, bias=False))],
    "batchnorm1d": lambda: [("lstm", nn.LSTM(3, 4, batch_first=True)), ("bn", nn.BatchNorm1d(4))],
    "batchnorm1d-no-affine": lambda: [("lstm", nn.LSTM(3, 4, batch_first=True)), ("bn", nn.BatchNorm1d(4, affine=False))],
    "linear": lambda: [("lstm", nn.LSTM(3, 4, batch_first=True)), ("fc", nn.Linear(4, 2))],
    "conv1d-k1": lambda: [("lstm", nn.LSTM(3, 4, batch_first=True)), ("conv", nn.Conv1d(4, 2, 1))],
    "activation-first": lambda: ["tanh", ("lstm", nn.LSTM(3, 4, batch_first=True))],
    "linear-before-rnn": lambda: [("proj", nn.Linear(3, 5)), "tanh", ("gru", nn.GRU(5, 4, batch_first=True))],
    "gelu": lambda: [("lstm", nn.LSTM(3, 4, batch_first=True)), ("fc", nn.Linear(4, 3)), "gelu"],
    "elu": lambda: [("lstm", nn.LSTM(3, 4, batch_first=True)), ("fc", nn.Linear(4, 3)), "elu"],
    "leaky_relu": lambda: [("lstm", nn.LSTM(3, 4, batch_first=True)), ("fc", nn.Linear(4, 3)), "leaky_relu"],
    "dropout": lambda: [("lstm", nn.LSTM(3, 4, batch_first=True)), "dropout", ("fc", nn.Linear(4, 1))],
}


# pooling needs every step of the recurrent module, so it runs with output "all" only
STEP_OUTPUTS = [(s, o) for s in SINGLE for o in ("last", "all") if o == "all" or not s.startswith("pool:")]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: f"dtype={d!r}")
@pytest.mark.parametrize("step, output", STEP_OUTPUTS, ids=[f"step={s!r}-output={o!r}" for s, o in STEP_OUTPUTS])
def test_each_step_alone_matches_torch(tmp_path, engine, step, dtype, output):
    net = ChainNet(SINGLE[step](), output=output, seed=list(SINGLE).index(step), scale=2.0)
    model = convert(net, tmp_path, dtype)
    rng = np.random.default_rng(3)
    if step == "embedding":
        x, lengths = token_batch(rng, 11, B=5, T=6)
    else:
        x, lengths = float_batch(rng, 3, B=5, T=6, dtype=dtype)
    check(net, model, x, lengths, dtype, engine)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: f"dtype={d!r}")
def test_embedding_bilstm_meanpool_layernorm_linear_sigmoid(tmp_path, engine, dtype):
    net = ChainNet([("emb", nn.Embedding(30, 6, padding_idx=0)),
                    ("lstm", nn.LSTM(6, 5, batch_first=True, bidirectional=True, num_layers=2)),
                    "pool:mean", ("ln", nn.LayerNorm(10)), ("fc", nn.Linear(10, 1)), "sigmoid"],
                   output="all", seed=1, scale=2.0)
    model = convert(net, tmp_path, dtype)
    assert model.takes_tokens and model.output_dim == 1 and not model.returns_steps()
    x, lengths = token_batch(np.random.default_rng(1), 30, B=6, T=9)
    check(net, model, x, lengths, dtype, engine)
    # a list of per-sequence id arrays scores the same
    seqs = [x[b, : lengths[b]] for b in range(len(lengths))]
    np.testing.assert_array_equal(model.predict(seqs, engine=engine), model.predict(x, lengths=lengths, engine=engine))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: f"dtype={d!r}")
def test_two_module_lstm_gru_tagger_with_all_output(tmp_path, engine, dtype):
    net = ChainNet([("lstm", nn.LSTM(3, 5, batch_first=True, bidirectional=True)),
                    ("gru", nn.GRU(10, 4, batch_first=True)), ("fc", nn.Linear(4, 3)), "log_softmax"],
                   output="all", seed=2, scale=2.0)
    model = convert(net, tmp_path, dtype)
    assert len(model.rnns) == 2 and model.returns_steps()
    x, lengths = float_batch(np.random.default_rng(2), 3, B=5, T=7, dtype=dtype)
    check(net, model, x, lengths, dtype, engine)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: f"dtype={d!r}")
def test_max_pool_lstmp(tmp_path, engine, dtype):
    net = ChainNet([("lstm", nn.LSTM(3, 6, proj_size=2, num_layers=2, batch_first=True)), "pool:max",
                    ("fc", nn.Linear(2, 2)), "softmax"], output="all", seed=3, scale=2.0)
    model = convert(net, tmp_path, dtype)
    x, lengths = float_batch(np.random.default_rng(3), 3, B=6, T=8, dtype=dtype)
    check(net, model, x, lengths, dtype, engine)


def test_several_modules_take_and_return_their_own_states(tmp_path, engine):
    """h0/c0 as one entry per module; hn/cn come back the same way and match torch module by module."""
    lstm, gru = nn.LSTM(3, 4, batch_first=True, num_layers=2), nn.GRU(4, 5, batch_first=True)
    net = ChainNet([("lstm", lstm), ("gru", gru)], output="all", seed=4, scale=2.0)
    model = convert(net, tmp_path, "float32")
    rng = np.random.default_rng(4)
    x, lengths = float_batch(rng, 3, B=4, T=5)
    h1, c1 = (rng.standard_normal((2, 4, 4)).astype(np.float32) for _ in range(2))
    h2 = rng.standard_normal((1, 4, 5)).astype(np.float32)
    y, states = model.predict(x, lengths=lengths, h0=[h1, h2], c0=[c1, None], return_state=True, engine=engine)
    packed = nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths), batch_first=True,
                                               enforce_sorted=False)
    with torch.no_grad():
        mid, (hn1, cn1) = lstm(packed, (torch.from_numpy(h1), torch.from_numpy(c1)))
        out, hn2 = gru(mid, torch.from_numpy(h2))
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=5)
    assert max_abs(y, out.numpy()) <= TOL["float32"]
    (got_h1, got_c1), got_h2 = states
    for got, want in ((got_h1, hn1), (got_c1, cn1), (got_h2, hn2)):
        assert max_abs(got, want.numpy()) <= TOL["float32"] * 3
    with pytest.raises(rnnjit.InputError, match="one entry .* per recurrent module"):
        model.predict(x, lengths=lengths, h0=h1, engine=engine)


def test_single_module_state_layout_is_unchanged(tmp_path):
    """One recurrent module keeps PyTorch's plain arrays: (y, (hn, cn)) as before chains."""
    net = ChainNet([("lstm", nn.LSTM(3, 4, batch_first=True)), ("fc", nn.Linear(4, 1))], seed=5)
    model = convert(net, tmp_path, "float32")
    y, (hn, cn) = model.predict(np.zeros((2, 3, 3), np.float32), return_state=True, engine="numpy")
    assert hn.shape == (1, 2, 4) and cn.shape == (1, 2, 4)


def test_all_output_with_per_step_head_is_zero_past_each_length(tmp_path, engine):
    net = ChainNet([("gru", nn.GRU(3, 4, batch_first=True)), ("ln", nn.LayerNorm(4)), ("fc", nn.Linear(4, 2))],
                   output="all", seed=6)
    model = convert(net, tmp_path, "float32")
    x, lengths = float_batch(np.random.default_rng(6), 3, B=4, T=6)
    y = model.predict(x, lengths=lengths, engine=engine)
    pad = np.arange(6)[None, :] >= lengths[:, None]
    assert pad.any() and np.all(y[pad] == 0)


PACKED_CHAINS = {
    "per-step head": lambda: [("gru", nn.GRU(3, 4, batch_first=True)), ("ln", nn.LayerNorm(4)),
                              ("fc", nn.Linear(4, 2))],
    "embedding tagger": lambda: [("emb", nn.Embedding(11, 3)), ("lstm", nn.LSTM(3, 4, batch_first=True,
                                 bidirectional=True)), ("fc1", nn.Linear(8, 4)), "relu", ("fc2", nn.Linear(4, 6))],
    "recurrent last": lambda: [("lstm", nn.LSTM(3, 4, batch_first=True, bidirectional=True)),
                               ("gru", nn.GRU(8, 2, batch_first=True))],
    "pooled": lambda: [("gru", nn.GRU(3, 4, batch_first=True)), "pool:max", ("fc", nn.Linear(4, 2))],
}


@pytest.mark.parametrize("chain", list(PACKED_CHAINS), ids=lambda c: f"chain={c!r}")
def test_packed_output_is_the_valid_steps_of_the_padded_one_bit_for_bit(tmp_path, engine, chain):
    net = ChainNet(PACKED_CHAINS[chain](), output="all", seed=8, scale=2.0)
    model = convert(net, tmp_path, "float32")
    rng = np.random.default_rng(8)
    if model.takes_tokens:
        x, lengths = token_batch(rng, 11, B=5, T=7)
    else:
        x, lengths = float_batch(rng, 3, B=5, T=7)
    padded = model.predict(x, lengths=lengths, engine=engine)
    packed = model.predict(x, lengths=lengths, engine=engine, packed=True)
    if chain == "pooled":  # one vector per sequence: nothing to pack
        np.testing.assert_array_equal(packed, padded)
        return
    assert packed.shape == (lengths.sum(), model.output_dim) and packed.flags.c_contiguous
    np.testing.assert_array_equal(packed, np.concatenate([padded[b, : lengths[b]] for b in range(len(lengths))]))
    full = np.full_like(lengths, 7)  # no padding at all
    np.testing.assert_array_equal(model.predict(x, lengths=full, engine=engine, packed=True),
                                  model.predict(x, lengths=full, engine=engine).reshape(-1, model.output_dim))


def test_pooled_model_refuses_another_output_mode(tmp_path):
    net = ChainNet([("lstm", nn.LSTM(3, 4, batch_first=True)), "pool:mean", ("fc", nn.Linear(4, 1))], output="all")
    model = convert(net, tmp_path, "float32")
    assert model.output == "all"
    with pytest.raises(rnnjit.InputError, match="pools over time .*'last'"):
        model.predict(np.zeros((1, 2, 3), np.float32), output="last")


VERIFY = {
    "emb-bilstm-mean-ln-fc-sigmoid": lambda: ChainNet(
        [("emb", nn.Embedding(20, 4)), ("lstm", nn.LSTM(4, 3, batch_first=True, bidirectional=True)), "pool:mean",
         ("ln", nn.LayerNorm(6)), ("fc", nn.Linear(6, 1)), "sigmoid"], output="all", seed=8),
    "lstm-gru-bn-gelu-conv-all": lambda: ChainNet(
        [("lstm", nn.LSTM(3, 4, batch_first=True)), ("gru", nn.GRU(4, 4, batch_first=True)),
         ("bn", nn.BatchNorm1d(4)), "gelu", ("conv", nn.Conv1d(4, 2, 1))], output="all", seed=9),
    "lstmp-max-elu-fc": lambda: ChainNet(
        [("lstm", nn.LSTM(3, 5, proj_size=2, batch_first=True)), "pool:max", "elu", ("fc", nn.Linear(2, 2))],
        output="all", seed=10),
}


@pytest.mark.parametrize("make", list(VERIFY.values()), ids=list(VERIFY))
def test_verify_against_runs_torch_over_the_whole_chain(tmp_path, make):
    from cli_helpers import run

    net = make()
    convert(net, tmp_path, "float32")
    r = run("verify", tmp_path / "m.npz", "--against", tmp_path / "m.pth", "--engine", "numpy")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "weights: ok" in r.stdout and "torch: ok" in r.stdout


# ------------------------------------------------------------- random chains
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def chains(draw):
    """A random whole model: [embedding], 1-2 recurrent modules, then pooling/normalization/head steps."""
    steps, width = [], 3
    tokens = draw(st.booleans())
    if tokens:
        steps.append(("emb", nn.Embedding(9, 3)))
    for k in range(draw(st.integers(1, 2))):
        cell = draw(st.sampled_from(["lstm", "gru", "rnn"]))
        hidden, bidir = draw(st.integers(1, 4)), draw(st.booleans())
        layers = draw(st.integers(1, 2))
        proj = draw(st.integers(0, hidden - 1)) if cell == "lstm" and hidden > 1 else 0
        cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
        kw = {"proj_size": proj} if cell == "lstm" else {}
        steps.append((f"{cell}{k}", cls(width, hidden, num_layers=layers, bidirectional=bidir, batch_first=True, **kw)))
        width = (2 if bidir else 1) * (proj or hidden)
        if k == 0 and draw(st.booleans()):
            steps.append(("mid", nn.LayerNorm(width)))
    output = draw(st.sampled_from(["last", "final", "all", "pool"]))
    if output == "pool":
        steps.append(f"pool:{draw(st.sampled_from(['last', 'mean', 'max', 'sum']))}")
        output = "all"
    norm = draw(st.sampled_from([None, "ln", "bn"]))
    if norm:
        steps.append((norm, nn.LayerNorm(width) if norm == "ln" else nn.BatchNorm1d(width)))
    out = draw(st.integers(1, 3))
    steps.append(("fc", nn.Linear(width, out)))
    acts = ["sigmoid", "tanh", "relu", "gelu", "elu", "leaky_relu"] + (["softmax", "log_softmax"] if out > 1 else [])
    steps.append(draw(st.sampled_from(acts)))
    return ChainNet(steps, output=output, seed=draw(st.integers(0, 99)), scale=1.5), tokens


@given(case=chains(), dtype=st.sampled_from(DTYPES), data=st.data())
def test_random_chains_match_torch(tmp_path_factory, case, dtype, data):
    net, tokens = case
    tmp = tmp_path_factory.mktemp("chain")
    model = convert(net, tmp, dtype)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    B, T = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 5))
    x, lengths = token_batch(rng, 9, B, T) if tokens else float_batch(rng, 3, B, T, dtype)
    for engine in ENGINES:
        check(net, model, x, lengths, dtype, engine, tol_scale=3.0)
