"""The ``--chain`` token parser (`rnnjit.chain_tokens`): one token in, ``(name, kind, options)`` out."""

from __future__ import annotations

import pytest

from rnnjit.chain_tokens import Token, parse_token, split_chain, with_options
from rnnjit.spec import RNNSpec, Step, rnn_step

MODULES = {"emb", "lstm", "rnn2", "ln", "fc", "decoder.2", "relu", ""}


@pytest.mark.parametrize("text, name, kind, options", [
    # modules: the weights tell the kind, unless a kind word forces it
    ("lstm", "lstm", None, {}),
    ("fc.weight", "fc", None, {}),
    ("decoder.2.", "decoder.2", None, {}),
    ("linear:fc", "fc", "linear", {}),
    ("embedding:emb", "emb", "embedding", {}),
    ("layernorm:ln", "ln", "layernorm", {}),
    ("LINEAR:fc", "fc", "linear", {}),
    # operations: the words of the table
    ("sigmoid", "sigmoid", "activation", {}),
    ("Log_Softmax", "log_softmax", "activation", {}),
    ("pool:mean", "mean", "pool", {}),
    ("dropout", "dropout", "dropout", {}),
    ("layernorm", "", "layernorm", {}),
    ("l2norm", "", "l2norm", {}),
    # a module named like an operation is the module
    ("relu", "relu", None, {}),
    # options, in any order
    ("ln:eps=1e-6", "ln", None, {"eps": 1e-6}),
    ("layernorm:eps=1e-3", "", "layernorm", {"eps": 1e-3}),
    ("l2norm:eps=1e-8", "", "l2norm", {"eps": 1e-8}),
    ("emb:max_norm=1.5", "emb", None, {"max_norm": 1.5}),
    ("emb:max_norm=none", "emb", None, {"max_norm": None}),
    ("emb:max_norm=2:eps=1e-6", "emb", None, {"max_norm": 2.0, "eps": 1e-6}),
    ("rnn2:relu", "rnn2", None, {"nonlinearity": "relu"}),
    ("rnn2:TANH", "rnn2", None, {"nonlinearity": "tanh"}),
    # ``X:relu`` is a nonlinearity only when X is a module; otherwise it names nothing
    ("nowhere:relu", "nowhere:relu", None, {}),
    ("attn", "attn", None, {}),
])
def test_parse_token(text, name, kind, options):
    assert parse_token(text, MODULES) == Token(name, kind, options, text)


@pytest.mark.parametrize("text, message", [
    ("ln:eps=-1", r"^chain step 'ln:eps=-1': eps must be a positive number, e\.g\. ln:eps=1e-6$"),
    ("ln:eps=x", r"eps must be a positive number"),
    ("l2norm:eps=inf", r"eps must be a positive number, e\.g\. l2norm:eps=1e-6"),
    ("emb:max_norm=0", r"max_norm must be a positive number \(nn\.Embedding\(max_norm=\.\.\.\)\) or none, "
                       r"e\.g\. emb:max_norm=1\.0"),
])
def test_bad_option_values_are_one_line_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_token(text, MODULES)


def test_split_chain():
    assert split_chain(" emb, lstm ,,pool:mean,fc ") == ["emb", "lstm", "pool:mean", "fc"]
    assert split_chain(["emb ", "", "fc"]) == ["emb", "fc"]
    assert split_chain("") == [] and split_chain(None) is None


def test_an_operation_is_no_module():
    assert parse_token("layernorm", MODULES).operation and parse_token("pool:max", MODULES).operation
    assert not parse_token("layernorm:ln", MODULES).operation and not parse_token("fc", MODULES).operation


def test_with_options_sets_the_fields_the_kind_declares():
    ln = Step("layernorm", "ln", 4, 4, affine=True)
    assert with_options(ln, parse_token("ln:eps=1e-6", MODULES)).eps == 1e-6
    emb = Step("embedding", "emb", 9, 4)
    assert with_options(emb, parse_token("emb:max_norm=2", MODULES)).max_norm == 2.0
    rnn = rnn_step(RNNSpec("rnn_relu", 3, 4, prefix="rnn2."))
    assert with_options(rnn, parse_token("rnn2:relu", MODULES)) == rnn  # the cell carries it, not a field


@pytest.mark.parametrize("step, text, message", [
    (Step("linear", "fc", 4, 1), "fc:eps=1e-6", r"^chain step 'fc':eps=\.\.\. gives an eps, but 'fc' is not a LayerNorm"),
    (Step("linear", "fc", 4, 1), "fc:max_norm=1", r"'fc':max_norm=\.\.\. gives a max_norm, but 'fc' is not an nn\.Embedding"),
    (Step("linear", "fc", 4, 1), "fc:relu", r"^chain step 'fc:relu' gives a nonlinearity, but 'fc' is not an nn\.RNN$"),
    (Step("activation", "relu"), "relu:eps=1", r"'relu':eps=\.\.\. gives an eps"),
])
def test_with_options_refuses_an_option_the_kind_does_not_take(step, text, message):
    with pytest.raises(ValueError, match=message):
        with_options(step, parse_token(text, MODULES))
