"""What convert must assume, it names (issue #7): one ``note:`` line per unstated default, recorded in the bundle.

``GUESSES`` rows are ``(id, model, convert flags, notes that must appear,
assumption kinds that must not)``. Before this, each row converted silently
and ``verify --against`` said an unqualified "torch: ok" because torch was
built from the bundle's own config. Add the next guess as one more row.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from cli_helpers import run
from torch import nn
from torch_models import LSTM, modules

import rnnjit

RELU_RNN = lambda: modules(rnn=nn.RNN(3, 5, batch_first=True, nonlinearity="relu"), fc=nn.Linear(5, 1))  # noqa: E731

GUESSES = [
    # (id, model, flags, notes that must appear (regex), kinds that must not be assumed)
    ("rnn-nonlinearity", RELU_RNN, ["--head", "fc,sigmoid", "--output-mode", "last"],
     [r"nn\.RNN 'rnn': nonlinearity assumed tanh .*--nonlinearity relu"], ["head_activation", "output_mode"]),
    ("rnn-nonlinearity-stated", RELU_RNN, ["--nonlinearity", "relu", "--head", "fc", "--output-mode", "last"],
     [], ["nonlinearity", "head_activation", "output_mode"]),
    ("inferred-head-has-no-activation", lambda: modules(lstm=LSTM(), fc=nn.Linear(4, 1)), ["--output-mode", "last"],
     [r"chain inferred as 'lstm,fc': head 'fc' assumed to have no activation .*raw outputs \(logits\).*--head 'fc,sigmoid'"], ["output_mode"]),
    ("output-mode-unidirectional", lambda: modules(lstm=LSTM(), fc=nn.Linear(4, 1)), ["--head", "fc,sigmoid"],
     [r"output mode assumed last: .*equal to hn\[-1\].*--output-mode all.*--chain 'lstm,pool:mean,fc,sigmoid'"],
     ["head_activation"]),
    ("output-mode-bidirectional", lambda: modules(lstm=LSTM(bidirectional=True), fc=nn.Linear(8, 1)),
     ["--head", "fc"],
     [r"output mode assumed last: \[forward, backward\].*torch\.cat\(\(hn\[-2\], hn\[-1\]\), 1\).*--output-mode final"],
     ["head_activation"]),
    ("pooling-chain-states-its-mode", lambda: modules(lstm=LSTM(), fc=nn.Linear(4, 1)),
     ["--chain", "lstm,pool:mean,fc,sigmoid"], [], ["output_mode", "head_activation"]),
    ("explicit-chain-states-the-head", lambda: modules(lstm=LSTM(), fc=nn.Linear(4, 1)),
     ["--chain", "lstm,fc", "--output-mode", "final"], [], ["head_activation", "output_mode"]),
    ("layernorm-eps", lambda: modules(lstm=LSTM(), ln=nn.LayerNorm(4), fc=nn.Linear(4, 1)),
     ["--chain", "lstm,ln,fc,sigmoid", "--output-mode", "last"],
     [r"LayerNorm 'ln': eps assumed 1e-05 .*ln:eps=1e-6"], ["head_activation", "output_mode"]),
    ("layernorm-eps-stated", lambda: modules(lstm=LSTM(), ln=nn.LayerNorm(4), fc=nn.Linear(4, 1)),
     ["--chain", "lstm,ln:eps=1e-6,fc,sigmoid", "--output-mode", "last"], [], ["eps"]),
    ("batchnorm-eps", lambda: modules(lstm=LSTM(), bn=nn.BatchNorm1d(4), fc=nn.Linear(4, 1)),
     ["--chain", "lstm,bn,fc", "--output-mode", "last"], [r"BatchNorm1d 'bn': eps assumed 1e-05"], []),
    ("float16-weights", lambda: modules(lstm=LSTM(), fc=nn.Linear(4, 1)).half(),
     ["--head", "fc", "--output-mode", "last"],
     [r"the weights are float16 \(model\.half\(\)\); rnnjit computes in float32"], ["head_activation"]),
    ("bfloat16-weights", lambda: modules(lstm=LSTM(), fc=nn.Linear(4, 1)).bfloat16(),
     ["--head", "fc", "--output-mode", "last"],
     [r"the weights are bfloat16 \(model\.bfloat16\(\)\); rnnjit computes in float32"], ["head_activation"]),
    ("float32-weights-say-nothing-of-dtype", lambda: modules(lstm=LSTM(), fc=nn.Linear(4, 1)),
     ["--head", "fc", "--output-mode", "last"], [], ["dtype"]),
    ("leaky-relu-slope", lambda: modules(lstm=LSTM(), fc=nn.Linear(4, 2)),
     ["--head", "leaky_relu,fc,softmax", "--output-mode", "last"],
     [r"leaky_relu assumed negative_slope=0\.01 \(nn\.LeakyReLU's default; not in the weights\)"], []),
    ("gelu-form", lambda: modules(lstm=LSTM(), fc=nn.Linear(4, 2)),
     ["--chain", "lstm,fc,gelu", "--output-mode", "last"],
     [r"gelu assumed approximate='none'"], []),
    ("embedding-max-norm", lambda: modules(emb=nn.Embedding(20, 3), lstm=LSTM(), fc=nn.Linear(4, 1)),
     ["--head", "fc", "--output-mode", "last"],
     [r"embedding 'emb': assumed no max_norm .*write emb:max_norm=M in --chain \(emb:max_norm=none states"],
     ["head_activation"]),
    ("embedding-max-norm-stated", lambda: modules(emb=nn.Embedding(20, 3), lstm=LSTM(), fc=nn.Linear(4, 1)),
     ["--chain", "emb:max_norm=none,lstm,fc", "--output-mode", "last"], [], ["max_norm"]),
    ("raw-outputs-no-linear-in-file", lambda: modules(lstm=LSTM()), ["--output-mode", "all"], [],
     ["head_activation", "output_mode"]),
]


@pytest.mark.parametrize("make, flags, notes, absent", [c[1:] for c in GUESSES], ids=[c[0] for c in GUESSES])
def test_convert_names_each_guess(tmp_path, make, flags, notes, absent):
    torch.manual_seed(0)
    torch.save(make().state_dict(), tmp_path / "m.pth")
    r = run("convert", tmp_path / "m.pth", "-o", tmp_path / "b.npz", *flags)
    assert r.exit_code == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert all(ln.startswith("note: ") for ln in lines), r.stderr
    assert len(lines) == len(notes), r.stderr
    for pattern in notes:
        assert any(re.search(pattern, ln) for ln in lines), (pattern, r.stderr)
    cfg = rnnjit.bundle.read_config(tmp_path / "b.npz")
    kinds = [a["what"] for a in cfg["assumed"]]
    assert len(kinds) == len(notes)
    assert not set(kinds) & set(absent), kinds
    info = json.loads(run("inspect", tmp_path / "b.npz", "--json").stdout)
    assert info["assumed"] == cfg["assumed"]


def test_verify_against_qualifies_ok_with_what_was_assumed(tmp_path):
    """A relu nn.RNN converted without --nonlinearity: torch agrees with the bundle, but only as converted."""
    torch.manual_seed(0)
    torch.save(RELU_RNN().state_dict(), tmp_path / "m.pth")
    assert run("convert", tmp_path / "m.pth", "-o", tmp_path / "b.npz").exit_code == 0
    r = run("verify", tmp_path / "b.npz", "--against", tmp_path / "m.pth")
    assert r.exit_code == 0, r.stdout + r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("torch:"))
    assert line.startswith("torch: ok for the model as converted,")
    assert line.endswith("; not checkable from weights: nn.RNN 'rnn' nonlinearity tanh, "
                         "no activation around 'fc', output mode last")
    out = run("inspect", tmp_path / "b.npz").stdout
    assert re.search(r"^assumed +nn\.RNN 'rnn' nonlinearity tanh, ", out, re.M), out

    assert run("convert", tmp_path / "m.pth", "-o", tmp_path / "s.npz", "--nonlinearity", "relu", "--head", "fc",
               "--output-mode", "last").exit_code == 0
    r = run("verify", tmp_path / "s.npz", "--against", tmp_path / "m.pth")
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("torch:"))
    assert line.startswith("torch: ok, max abs error") and "checkable" not in line, line


def test_stated_relu_gives_torch_numbers_and_the_default_does_not(tmp_path):
    """The note is not noise: the assumed tanh really scores another model than the relu one saved."""
    torch.manual_seed(0)
    net = RELU_RNN().eval()
    torch.save(net.state_dict(), tmp_path / "m.pth")
    x = np.random.default_rng(0).standard_normal((4, 6, 3)).astype(np.float32)
    with torch.no_grad():
        out, _ = net.rnn(torch.from_numpy(x))
        want = net.fc(out[:, -1]).numpy()
    stated = rnnjit.convert(tmp_path / "m.pth", tmp_path / "s.npz", nonlinearity="relu", head="fc", output="last")
    assumed = rnnjit.convert(tmp_path / "m.pth", tmp_path / "a.npz")
    np.testing.assert_allclose(stated.predict(x, engine="numpy"), want, atol=1e-5)
    assert np.max(np.abs(assumed.predict(x, engine="numpy") - want)) > 1e-3
    assert stated.assumed == [] and [a["what"] for a in assumed.assumed] == [
        "nonlinearity", "head_activation", "output_mode"]


@pytest.mark.parametrize("kind", ["layernorm", "batchnorm"])
def test_stated_eps_gives_torch_numbers(tmp_path, kind):
    torch.manual_seed(0)
    norm = nn.LayerNorm(4, eps=1e-2) if kind == "layernorm" else nn.BatchNorm1d(4, eps=1e-2)
    net = modules(lstm=LSTM(), norm=norm, fc=nn.Linear(4, 1)).eval()
    if kind == "batchnorm":
        net.norm.running_mean.uniform_(-0.2, 0.2)
        net.norm.running_var.uniform_(0.001, 0.01)  # small variance: eps matters
    torch.save(net.state_dict(), tmp_path / "m.pth")
    x = np.random.default_rng(1).standard_normal((5, 4, 3)).astype(np.float32)
    with torch.no_grad():
        out, _ = net.lstm(torch.from_numpy(x))
        want = net.fc(net.norm(out[:, -1])).numpy()
    m = rnnjit.convert(tmp_path / "m.pth", tmp_path / "b.npz", chain="lstm,norm:eps=0.01,fc", output="last")
    np.testing.assert_allclose(m.predict(x, engine="numpy"), want, atol=1e-5)
    assert m.assumed == []


@pytest.mark.parametrize("chain, message", [
    ("lstm:eps=1e-6,fc", r"'lstm':eps=\.\.\. gives an eps, but 'lstm' is not a LayerNorm or BatchNorm1d"),
    ("lstm,ln:eps=-1,fc", r"eps must be a positive number, e.g\. ln:eps=1e-6"),
    ("lstm,ln:eps=x,fc", r"eps must be a positive number"),
])
def test_eps_mistakes_are_one_line(tmp_path, chain, message):
    torch.save(modules(lstm=LSTM(), ln=nn.LayerNorm(4), fc=nn.Linear(4, 1)).state_dict(), tmp_path / "m.pth")
    r = run("convert", tmp_path / "m.pth", "-o", tmp_path / "b.npz", "--chain", chain)
    assert r.exit_code == 2 and re.search(message, r.stderr) and "\n" not in r.stderr.strip(), r.stderr


def test_a_bias_free_layernorm_is_stated_and_gives_torch_numbers(tmp_path):
    """nn.LayerNorm(bias=False) has a lone 1-d weight, like nn.PReLU: convert needs layernorm:NAME, then matches."""
    torch.manual_seed(0)
    net = modules(lstm=LSTM(), ln=nn.LayerNorm(4, bias=False, eps=1e-3), fc=nn.Linear(4, 1)).eval()
    with torch.no_grad():
        net.ln.weight.uniform_(0.5, 2.0)
    torch.save(net.state_dict(), tmp_path / "m.pth")
    x = np.random.default_rng(2).standard_normal((3, 5, 3)).astype(np.float32)
    with torch.no_grad():
        out, _ = net.lstm(torch.from_numpy(x))
        want = net.fc(net.ln(out[:, -1])).numpy()
    m = rnnjit.convert(tmp_path / "m.pth", tmp_path / "b.npz", chain="lstm,layernorm:ln:eps=1e-3,fc", output="last")
    np.testing.assert_allclose(m.predict(x, engine="numpy"), want, atol=1e-5)
    assert m.assumed == []


def test_a_bundle_from_before_assumptions_were_recorded_says_so(tmp_path):
    """No 'assumed' key: verify cannot claim an unqualified ok, inspect says it was not recorded."""
    torch.manual_seed(0)
    torch.save(RELU_RNN().state_dict(), tmp_path / "m.pth")
    assert run("convert", tmp_path / "m.pth", "-o", tmp_path / "b.npz").exit_code == 0
    with np.load(tmp_path / "b.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    cfg = json.loads(str(arrays.pop("__rnnjit__")[()]))
    del cfg["assumed"]
    rnnjit.bundle.write(tmp_path / "old.npz", arrays, cfg)
    r = run("verify", tmp_path / "old.npz", "--against", tmp_path / "m.pth")
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("torch:"))
    assert line.startswith("torch: ok for the model as converted,")
    assert line.endswith("; an older bundle: what convert assumed is not recorded")
    assert re.search(r"^assumed +not recorded", run("inspect", tmp_path / "old.npz").stdout, re.M)


@pytest.mark.parametrize("bad", ["tanh", [1], [{"what": "x"}]], ids=["a-string", "a-number", "no-note"])
def test_a_malformed_assumed_section_is_a_bundle_error(tmp_path, bad):
    torch.save(RELU_RNN().state_dict(), tmp_path / "m.pth")
    rnnjit.convert(tmp_path / "m.pth", tmp_path / "b.npz")
    with np.load(tmp_path / "b.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    cfg = json.loads(str(arrays.pop("__rnnjit__")[()]))
    cfg["assumed"] = bad
    rnnjit.bundle.write(tmp_path / "bad.npz", arrays, cfg)
    r = run("inspect", tmp_path / "bad.npz")
    assert r.exit_code == 2 and "'assumed' is not a list" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_two_rnns_with_different_nonlinearities_are_stated_per_module(tmp_path):
    """--nonlinearity applies to every nn.RNN; ``name:relu`` in the chain states one module's."""
    torch.manual_seed(0)
    net = modules(r1=nn.RNN(3, 5, batch_first=True, nonlinearity="relu"), r2=nn.RNN(5, 4, batch_first=True),
                  fc=nn.Linear(4, 1)).eval()
    torch.save(net.state_dict(), tmp_path / "m.pth")
    x = np.random.default_rng(4).standard_normal((3, 6, 3)).astype(np.float32)
    with torch.no_grad():
        want = net.fc(net.r2(net.r1(torch.from_numpy(x))[0])[0][:, -1]).numpy()
    m = rnnjit.convert(tmp_path / "m.pth", tmp_path / "b.npz", chain="r1:relu,r2:tanh,fc", output="last")
    np.testing.assert_allclose(m.predict(x, engine="numpy"), want, atol=1e-5)
    assert m.assumed == []
    r = run("convert", tmp_path / "m.pth", "-o", tmp_path / "h.npz", "--chain", "r1:relu,r2,fc",
            "--output-mode", "last")
    assert r.exit_code == 0, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("note: nn.RNN 'r2': nonlinearity assumed tanh") and "r2:relu in --chain" in line, line


def test_a_nonlinearity_on_a_module_that_has_none_is_refused(tmp_path):
    torch.save(modules(lstm=LSTM(), fc=nn.Linear(4, 1)).state_dict(), tmp_path / "m.pth")
    r = run("convert", tmp_path / "m.pth", "-o", tmp_path / "b.npz", "--chain", "lstm:relu,fc")
    assert r.exit_code == 2 and "'lstm' is an nn.LSTM; only nn.RNN has one" in r.stderr, r.stderr


def test_stated_max_norm_gives_torch_numbers_and_the_default_does_not(tmp_path):
    """nn.Embedding(max_norm=1.0) renormalizes the rows it looks up; stated in the chain, rnnjit does the same."""
    torch.manual_seed(0)
    net = modules(emb=nn.Embedding(30, 6, max_norm=1.0), lstm=LSTM(6, 4), fc=nn.Linear(4, 1)).eval()
    torch.save(net.state_dict(), tmp_path / "m.pth")  # rows of norm ~2.4, before any lookup renormalized them
    ids = np.random.default_rng(3).integers(0, 30, (5, 7))
    with torch.no_grad():
        out, _ = net.lstm(net.emb(torch.from_numpy(ids)))
        want = net.fc(out[:, -1]).numpy()
    stated = rnnjit.convert(tmp_path / "m.pth", tmp_path / "s.npz", chain="emb:max_norm=1.0,lstm,fc", output="last")
    assumed = rnnjit.convert(tmp_path / "m.pth", tmp_path / "a.npz", chain="emb,lstm,fc", output="last")
    for engine in ("numpy", "numba"):
        np.testing.assert_allclose(stated.predict(ids, engine=engine), want, atol=1e-5)
    assert np.max(np.abs(assumed.predict(ids, engine="numpy") - want)) > 1e-3
    assert stated.assumed == [] and [a["what"] for a in assumed.assumed] == ["max_norm"]
    assert rnnjit.load(tmp_path / "s.npz").chain[0].max_norm == 1.0
    r = run("verify", tmp_path / "s.npz", "--against", tmp_path / "m.pth")
    assert r.exit_code == 0 and "torch: ok, max abs error" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("chain, message", [
    ("emb,lstm:max_norm=1,fc", r"'lstm':max_norm=\.\.\. gives a max_norm, but 'lstm' is not an nn\.Embedding"),
    ("emb:max_norm=0,lstm,fc", r"max_norm must be a positive number \(nn\.Embedding\(max_norm=\.\.\.\)\) or none"),
    ("emb:max_norm=big,lstm,fc", r"max_norm must be a positive number"),
])
def test_max_norm_mistakes_are_one_line(tmp_path, chain, message):
    torch.save(modules(emb=nn.Embedding(20, 3), lstm=LSTM(), fc=nn.Linear(4, 1)).state_dict(), tmp_path / "m.pth")
    r = run("convert", tmp_path / "m.pth", "-o", tmp_path / "b.npz", "--chain", chain)
    assert r.exit_code == 2 and re.search(message, r.stderr) and "\n" not in r.stderr.strip(), r.stderr
