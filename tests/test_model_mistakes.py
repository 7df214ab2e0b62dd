"""The model mistakes users make, one line each: convert refuses and says what to do.

Each row is a weight file as ``torch.save(model.state_dict())`` writes it,
the convert flags a user would try, and what the one-line error must say.
Before chains, every "dropped" row converted with exit code 0 and scores up to
0.2 away from torch. Add the next case as one more row.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from cli_helpers import flag, run
from torch_models import LSTM, modules


def with_tensors(m: nn.Module, params=(), **tensors) -> nn.Module:
    """``m`` with tensors registered on itself: nn.Parameter for names in ``params``, buffers for the rest."""
    for name, t in tensors.items():
        if name in params:
            m.register_parameter(name, nn.Parameter(t))
        else:
            m.register_buffer(name, t)
    return m

CASES = [
    # (id, model, convert flags, what the error must say)
    ("layernorm-dropped", lambda: modules(lstm=LSTM(), ln=nn.LayerNorm(4), fc=nn.Linear(4, 1)), [],
     r"ln\.weight, ln\.bias \(a LayerNorm\?\).*--chain 'lstm,ln,fc'.*--ignore ln"),
    ("batchnorm-dropped", lambda: modules(lstm=LSTM(), bn=nn.BatchNorm1d(4), fc=nn.Linear(4, 1)), [],
     r"bn\.weight, bn\.bias, bn\.running_mean, bn\.running_var \(a BatchNorm1d\?\).*--ignore bn"),
    ("embedding-registered-after-the-rnn", lambda: modules(lstm=LSTM(), fc=nn.Linear(4, 1), emb=nn.Embedding(9, 3)),
     [], r"emb\.weight \(an Embedding\?\).*--chain 'lstm,fc,emb'.*--ignore emb"),
    ("second-lstm-dropped", lambda: modules(lstm1=LSTM(), lstm2=LSTM(4, 4), fc=nn.Linear(4, 1)),
     ["--rnn-prefix", "lstm1"], r"lstm2\.weight_ih_l0.* \(an LSTM\?\).*--chain 'lstm1,lstm2,fc'.*--ignore lstm2"),
    ("two-rnns-no-choice", lambda: modules(lstm1=LSTM(), gru=nn.GRU(4, 4), fc=nn.Linear(4, 1)), [],
     r"found 2 recurrent modules: 'lstm1', 'gru'.*--chain 'lstm1,gru,fc'"),
    ("softmax-over-one-value", lambda: modules(lstm=LSTM(), fc=nn.Linear(4, 1)), ["--head", "fc,softmax"],
     r"softmax over a single value gives 1\.0 .*use sigmoid"),
    ("log-softmax-over-one-value", lambda: modules(lstm=LSTM(), fc=nn.Linear(4, 1)), ["--head", "fc,log_softmax"],
     r"log_softmax over a single value gives 0\.0"),
    ("head-stops-before-the-last-linear", lambda: modules(lstm=LSTM(), fc1=nn.Linear(4, 6), fc2=nn.Linear(6, 1)),
     ["--head", "fc1,relu"], r"fc2\.weight, fc2\.bias \(a Linear after 'fc1', where the head stops\?\)"),
    ("no-head-but-linear-layers", lambda: modules(lstm=LSTM(), fc=nn.Linear(8, 1)), [],
     r"has no head, so raw recurrent outputs would be scored.*fc\.weight, fc\.bias.*--head fc .*--ignore fc$"),
    ("ignore-names-nothing", lambda: modules(lstm=LSTM(), fc=nn.Linear(4, 1)), ["--ignore", "ln"],
     r"--ignore ln matches no tensor; modules in m\.pth: lstm, fc"),
    ("ignore-a-used-module", lambda: modules(lstm=LSTM(), fc=nn.Linear(4, 1)), ["--ignore", "fc"],
     r"--ignore fc would drop 'fc\.weight', which the chain uses; remove it from --ignore or the chain"),
    ("chain-with-unknown-step", lambda: modules(lstm=LSTM(), fc=nn.Linear(4, 1)), ["--chain", "lstm,attn,fc"],
     r"chain step 'attn' is neither a module in the weights \(lstm, fc\) nor an operation"),
    ("chain-with-attention", lambda: modules(lstm=LSTM(), attn=nn.MultiheadAttention(4, 1), fc=nn.Linear(4, 1)),
     ["--chain", "lstm,attn,fc"], r"module 'attn' is attention \(nn\.MultiheadAttention or a transformer layer\)"),
    ("chain-widths-disagree", lambda: modules(lstm=LSTM(), fc=nn.Linear(4, 1), ln=nn.LayerNorm(4)),
     ["--chain", "lstm,fc,ln"], r"'ln' takes 4 values but 'fc' gives 1"),
    ("chain-and-head-together", lambda: modules(lstm=LSTM(), fc=nn.Linear(4, 1)), ["--chain", "lstm,fc", "--head", "fc"],
     r"--head and --chain were both given"),
    ("pooling-with-last-output", lambda: modules(lstm=LSTM(), fc=nn.Linear(4, 1)),
     ["--chain", "lstm,pool:mean,fc", flag("convert", "--output-mode", "--output"), "last"], r"pools over time \(pool:mean\).*'last' does not apply"),
    ("square-matrix-before-the-rnn-is-not-guessed", lambda: modules(emb=nn.Embedding(3, 3), lstm=LSTM(), fc=nn.Linear(4, 1)),
     [], r"emb\.weight \(an Embedding\?\).*--chain 'emb,lstm,fc'"),
    ("prelu-written-in-the-chain-is-not-a-layernorm", lambda: modules(lstm=LSTM(), act=nn.PReLU(4), fc=nn.Linear(4, 1)),
     ["--chain", "lstm,act,fc"], r"act\.weight \(4,\) with no bias could be an nn\.LayerNorm\(bias=False\) or an nn\.PReLU"),
    ("prelu-after-the-head", lambda: modules(lstm=LSTM(), fc=nn.Linear(4, 1), a=nn.PReLU()),
     ["--chain", "lstm,fc,a"], r"a\.weight \(1,\) with no bias .*write layernorm:a"),
    ("unused-prelu-is-not-called-a-layernorm", lambda: modules(lstm=LSTM(), fc=nn.Linear(4, 1), a=nn.PReLU()),
     [], r"a\.weight \(a LayerNorm without bias, or a PReLU\?\)"),
    ("learned-initial-state", lambda: with_tensors(modules(lstm=LSTM(), fc=nn.Linear(4, 1)), ("h0", "c0"),
                                                   h0=torch.randn(1, 1, 4), c0=torch.randn(1, 1, 4)), [],
     r"h0 \(1, 1, 4\) \(a learned initial state\?\); c0 .*as the h0/c0 columns.*--ignore h0 --ignore c0"),
    ("input-statistics-buffers", lambda: with_tensors(modules(lstm=LSTM(), fc=nn.Linear(4, 1)),
                                                      mean=torch.zeros(3), std=torch.ones(3)), [],
     r"mean \(3,\) \(input statistics\?\); std .*apply input statistics to the data.*--ignore mean --ignore std"),
    ("loss-class-weights-in-a-lightning-module", lambda: modules(lstm=LSTM(), fc=nn.Linear(4, 3),
                                                                criterion=nn.CrossEntropyLoss(weight=torch.ones(3))),
     ["--head", "fc,softmax"], r"criterion\.weight \(a loss function's weights, unused at inference\?\).*--ignore criterion"),
    ("square-embedding-or-linear", lambda: modules(emb=nn.Linear(3, 3, bias=False), lstm=LSTM()),
     ["--chain", "emb,lstm"], r"could be an nn\.Embedding or a bias-free nn\.Linear.*'embedding:emb"),
]


@pytest.mark.parametrize("make, flags, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_convert_refuses_with_one_line(tmp_path, make, flags, message):
    torch.manual_seed(0)
    torch.save(make().state_dict(), tmp_path / "m.pth")
    r = run("convert", tmp_path / "m.pth", "-o", tmp_path / "b.npz", *flags, "--overwrite")
    assert r.exit_code == 2, r.stdout
    err = r.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert re.search(message, err), err
    assert not (tmp_path / "b.npz").exists()


def test_ignore_accepts_the_drop_and_records_it(tmp_path):
    torch.save(modules(lstm=LSTM(), ln=nn.LayerNorm(4), fc=nn.Linear(4, 1)).state_dict(), tmp_path / "m.pth")
    r = run("convert", tmp_path / "m.pth", "-o", tmp_path / "b.npz", "--ignore", "ln")
    assert r.exit_code == 0, r.stderr
    assert "ignored on purpose (--ignore): ln" in r.stdout
    r = run("inspect", tmp_path / "b.npz", "--json")
    assert '"ignored": [\n    "ln"\n  ]' in r.stdout


def test_ignore_repeated_or_comma_separated(tmp_path):
    torch.save(modules(lstm=LSTM(), ln=nn.LayerNorm(4), bn=nn.BatchNorm1d(4), fc=nn.Linear(4, 1)).state_dict(),
               tmp_path / "m.pth")
    for flags in (["--ignore", "ln", "--ignore", "bn"], ["--ignore", "ln,bn"]):
        r = run("convert", tmp_path / "m.pth", "-o", tmp_path / "b.npz", *flags, "--overwrite")
        assert r.exit_code == 0 and "ignored on purpose (--ignore): ln, bn" in r.stdout, r.stderr


def test_batchnorm_counter_is_not_an_unused_weight(tmp_path):
    """num_batches_tracked is a counter, not a weight: a chain with the BatchNorm converts without --ignore."""
    torch.save(modules(lstm=LSTM(), bn=nn.BatchNorm1d(4), fc=nn.Linear(4, 1)).state_dict(), tmp_path / "m.pth")
    r = run("convert", tmp_path / "m.pth", "-o", tmp_path / "b.npz", "--chain", "lstm,bn,fc")
    assert r.exit_code == 0, r.stderr


def test_verify_against_fails_on_a_model_with_unused_tensors(tmp_path):
    """A bundle made from a file whose LayerNorm it does not hold: verify --against names the tensors."""
    net = modules(lstm=LSTM(), ln=nn.LayerNorm(4), fc=nn.Linear(4, 1))
    torch.save(net.state_dict(), tmp_path / "m.pth")
    sd = {k: v for k, v in net.state_dict().items() if not k.startswith("ln.")}
    torch.save(sd, tmp_path / "without_ln.pth")
    assert run("convert", tmp_path / "without_ln.pth", "-o", tmp_path / "b.npz").exit_code == 0
    r = run("verify", tmp_path / "b.npz", "--against", tmp_path / "m.pth")
    assert r.exit_code == 1
    assert "weights: MISMATCH (unused: ln.weight, ln.bias)" in r.stdout
    ok = run("verify", tmp_path / "b.npz", "--against", tmp_path / "without_ln.pth")
    assert ok.exit_code == 0, ok.stdout + ok.stderr


UNSUPPORTED = [
    ("attention", lambda: modules(lstm=LSTM(), attn=nn.MultiheadAttention(4, 1), fc=nn.Linear(4, 1)),
     r"module 'attn' is attention .*which rnnjit does not run.*--ignore attn"),
    ("cnn-front-end", lambda: modules(conv=nn.Conv1d(3, 3, 5), lstm=LSTM(), fc=nn.Linear(4, 1)),
     r"module 'conv' is a convolution with kernel size 5, which rnnjit does not run"),
    ("transformer-encoder", lambda: modules(lstm=LSTM(), enc=nn.TransformerEncoderLayer(4, 1, 8), fc=nn.Linear(4, 1)),
     r"module 'enc\.self_attn' is attention"),
]


@pytest.mark.parametrize("make, message", [c[1:] for c in UNSUPPORTED], ids=[c[0] for c in UNSUPPORTED])
def test_unsupported_modules_are_named(tmp_path, make, message):
    """What the README lists as not supported: the error the user sees."""
    torch.manual_seed(0)
    torch.save(make().state_dict(), tmp_path / "m.pth")
    r = run("convert", tmp_path / "m.pth", "-o", tmp_path / "b.npz")
    assert r.exit_code == 2 and re.search(message, r.stderr), r.stderr
