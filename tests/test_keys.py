"""`rnnjit.keys`: which state_dict keys a chain uses, and what the others probably are."""

from __future__ import annotations

import numpy as np
import pytest

from rnnjit.errors import ArchitectureError
from rnnjit.keys import (
    account, check_supported, ignored_keys, module_names, module_of, modules, suggest_chain, unused_keys, used_keys,
)
from rnnjit.spec import RNNSpec, Step, rnn_step

SPEC = RNNSpec("lstm", 4, 3, prefix="lstm.")


def _sd(**extra):
    """emb (9x4), lstm (4->3), ln, fc (3->1), in file order, plus ``extra`` name -> shape."""
    shapes = {"emb.weight": (9, 4), **SPEC.expected_shapes(), "ln.weight": (3,), "ln.bias": (3,),
              "fc.weight": (1, 3), "fc.bias": (1,)}
    shapes.update(extra)
    return {k: np.zeros(s, np.float32) for k, s in shapes.items()}


CHAIN = (Step("embedding", "emb", 9, 4), rnn_step(SPEC), Step("pool", "mean"),
         Step("layernorm", "ln", 3, 3, bias=True, affine=True), Step("linear", "fc", 3, 1, bias=True),
         Step("activation", "sigmoid"))


def test_module_of_and_modules():
    assert module_of("encoder.lstm.weight_ih_l0") == "encoder.lstm" and module_of("weight_ih_l0") == ""
    sd = _sd(**{"bn.num_batches_tracked": ()})
    assert list(modules(sd)) == ["emb", "lstm", "ln", "fc", "bn"]
    assert modules(sd)["fc"] == ["fc.weight", "fc.bias"]
    assert module_names(sd) == ["emb", "lstm", "ln", "fc"]  # a counter alone is no module with weights


def test_used_and_unused_keys():
    sd = _sd(**{"out.weight": (2, 3), "bn.num_batches_tracked": ()})
    assert used_keys(CHAIN) == [k for k in sd if not k.startswith(("out.", "bn."))]
    assert unused_keys(sd, CHAIN) == (["out.weight"], ["bn.num_batches_tracked"])
    assert unused_keys(sd, CHAIN, ignored_keys(sd, ["out."])) == ([], ["bn.num_batches_tracked"])


def test_ignored_keys_match_whole_module_names():
    sd = _sd(**{"fc2.weight": (1, 3)})
    assert ignored_keys(sd, ["fc"]) == ["fc.weight", "fc.bias"]
    assert ignored_keys(sd, [" fc2. "]) == ["fc2.weight"]


def test_suggest_chain_keeps_operations_after_the_module_they_follow():
    sd = _sd(**{"out.weight": (1, 3)})
    assert suggest_chain(sd, CHAIN) == "emb,lstm,pool:mean,ln,fc,sigmoid"
    assert suggest_chain(sd, CHAIN, ["out"]) == "emb,lstm,pool:mean,ln,fc,sigmoid,out"
    assert suggest_chain(sd, []) == "emb,lstm,ln,fc,out"
    lead = (Step("l2norm", ""), *CHAIN[1:])
    assert suggest_chain(sd, lead).startswith("l2norm,lstm,pool:mean")


def test_account_returns_ignored_and_non_weight_keys():
    sd = _sd(**{"aux.weight": (2, 3), "bn.num_batches_tracked": ()})
    assert account(sd, CHAIN, ["aux"]) == (["aux.weight"], ["bn.num_batches_tracked"])


@pytest.mark.parametrize("extra, chain, ignore, message", [
    ({"out.weight": (2, 1), "out.bias": (2,)}, CHAIN, (),
     r"out\.weight, out\.bias \(a Linear after 'fc', where the head stops\?\).*chain='emb,lstm,pool:mean,ln,fc,"
     r"sigmoid,out'.*ignore=\['out'\]$"),
    ({"gate.weight": (3,)}, CHAIN, (), r"gate\.weight \(a LayerNorm without bias, or a PReLU\?\)"),
    ({"bn.running_mean": (3,), "bn.running_var": (3,)}, CHAIN, (), r"\(a BatchNorm1d\?\)"),
    ({"criterion.weight": (5,)}, CHAIN, (), r"\(a loss function's weights, unused at inference\?\)"),
    ({"h0": (1, 1, 3)}, CHAIN, (), r"h0 \(1, 1, 3\) \(a learned initial state\?\).*ignore=\['h0'\]$"),
    ({"mean": (4,)}, CHAIN[1:], (), r"mean \(4,\) \(input statistics\?\)"),
    ({}, CHAIN[:3], (), r"the chain 'emb,lstm,pool:mean' has no head.*head='ln'"),
    ({}, CHAIN, ("nothing",), r"^ignore='nothing' matches no tensor; modules in the file: emb, lstm, ln, fc$"),
    ({}, CHAIN, ("fc",), r"^ignore='fc' would drop 'fc\.weight', which the chain uses"),
])
def test_account_names_each_unused_tensor_and_the_fix(extra, chain, ignore, message):
    with pytest.raises(ArchitectureError, match=message):
        account(_sd(**extra), chain, ignore)


@pytest.mark.parametrize("extra, message", [
    ({"attn.in_proj_weight": (9, 3)}, r"module 'attn' is attention \(nn\.MultiheadAttention"),
    ({"conv.weight": (4, 4, 3)}, r"module 'conv' is a convolution with kernel size 3.*ignore=\['conv'\]$"),
])
def test_check_supported_refuses_modules_rnnjit_never_runs(extra, message):
    sd = _sd(**extra)
    with pytest.raises(ArchitectureError, match=message):
        check_supported(sd)
    check_supported(sd, [next(iter(extra)).split(".")[0]])  # unless ignored
    check_supported(_sd(**{"proj.weight": (4, 4, 1)}))  # a kernel-1 Conv1d is a linear layer
