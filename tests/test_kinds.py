"""The step-kind table (`rnnjit.kinds`): every entry keeps its own promises.

One sample step per kind (per activation and pooling method) is run through
what its entry declares: the bundle form round-trips, the label reads back as
the same step, the weights it owns are the ones its numpy function reads, and
the numpy function equals the entry's own torch builder (the one ``verify
--against`` uses). `Model` takes which steps the engine runs from the table.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from rnnjit.chain_tokens import parse_token
from rnnjit.kinds import ACTIVATIONS, KINDS, POOLS
from rnnjit.model import Model
from rnnjit.spec import STEP_KINDS, RNNSpec, Step, chain_widths, check_step, input_width, rnn_step

F = 4  # feature width of the samples
SPEC = RNNSpec("gru", F, 3, prefix="rnn.")

SAMPLES = {
    "embedding": Step("embedding", "emb", 9, F),
    "embedding-max_norm": Step("embedding", "emb", 9, F, max_norm=0.7),
    "rnn": rnn_step(SPEC),
    **{f"pool-{m}": Step("pool", m) for m in POOLS},
    "layernorm": Step("layernorm", "ln", F, F, bias=True, affine=True, eps=1e-4),
    "layernorm-parameter-free": Step("layernorm", "", eps=1e-3),
    "batchnorm": Step("batchnorm", "bn", F, F, affine=True, eps=1e-3),
    "linear": Step("linear", "fc", F, 2, bias=True),
    "linear-no-bias": Step("linear", "fc", F, 3),
    **{f"activation-{a}": Step("activation", a) for a in ACTIVATIONS},
    "dropout": Step("dropout", "dropout"),
    "l2norm": Step("l2norm", "", eps=1e-12),
}


def weights_for(step, seed=0) -> dict[str, np.ndarray]:
    """Random weights of the shapes the step's entry declares (variances positive)."""
    rng = np.random.default_rng(seed)
    return {k: (rng.uniform(0.5, 2.0, size=s) if k.endswith("running_var") else rng.normal(size=s)).astype(np.float64)
            for k, s in step.expected_shapes().items()}


def batch(step, seed=1):
    rng = np.random.default_rng(seed)
    lengths = np.array([5, 1, 3])
    if KINDS[step.kind].reads_tokens:
        return rng.integers(0, step.in_features, size=(3, 5)), lengths
    return rng.normal(size=(3, 5, F)), lengths


def test_the_table_names_each_kind_once():
    assert STEP_KINDS == tuple(KINDS) and all(entry.kind == kind for kind, entry in KINDS.items())
    assert {s.kind for s in SAMPLES.values()} == set(KINDS)  # a new kind gets a sample here


@pytest.mark.parametrize("sample", list(SAMPLES))
def test_bundle_form_round_trips_through_json(sample):
    step = SAMPLES[sample]
    d = json.loads(json.dumps(step.to_dict()))
    assert set(d) <= {"kind", "name", *KINDS[step.kind].fields}
    assert Step.from_dict(d) == step
    check_step(Step.from_dict(d))


@pytest.mark.parametrize("sample", list(SAMPLES))
def test_label_reads_back_as_the_same_step(sample):
    step = SAMPLES[sample]
    modules = {step.name} if KINDS[step.kind].module(step) else set()
    tok = parse_token(step.label(), modules)
    if KINDS[step.kind].module(step):
        assert (tok.name, tok.kind) == (step.name, None)  # the weights say what the module is
    else:
        assert (tok.name, tok.kind) == (step.name, step.kind)


@pytest.mark.parametrize("sample", [s for s in SAMPLES if KINDS[SAMPLES[s].kind].apply is not None])
def test_numpy_apply_equals_the_entrys_torch_builder(sample):
    step = SAMPLES[sample]
    entry = KINDS[step.kind]
    w = weights_for(step)
    y, lengths = batch(step)
    got = entry.apply(step, {**w, **entry.scoring_weights(step, w)}, y, lengths)  # as Model scores
    sd = {k: torch.from_numpy(v) for k, v in w.items()}
    want = entry.torch(torch, step, sd, torch.from_numpy(y), torch.from_numpy(lengths), "all").numpy()
    assert got.dtype == (sd[f"{step.prefix}weight"].numpy().dtype if entry.reads_tokens else y.dtype)
    assert got.shape == want.shape
    if got.ndim == 3:  # per step: torch computes padded steps too, rnnjit leaves them to the caller
        valid = np.arange(got.shape[1])[None, :] < lengths[:, None]
        got, want = got[valid], want[valid]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sample", [s for s, step in SAMPLES.items() if KINDS[step.kind].from_weights is not None
                                    and KINDS[step.kind].module(step)])
def test_from_weights_reads_back_what_shapes_declare(sample):
    step = SAMPLES[sample]
    fields = KINDS[step.kind].from_weights(weights_for(step), step.prefix)
    assert Step(step.kind, step.name, **fields).expected_shapes() == step.expected_shapes()


@pytest.mark.parametrize("sample", list(SAMPLES))
def test_widths_follow_the_entry(sample):
    step = SAMPLES[sample]
    entry = KINDS[step.kind]
    takes = entry.takes(step)
    gives = entry.gives(step, F if takes is None else takes)
    if not entry.pools_time and entry.apply is not None and not entry.reads_tokens:
        y, lengths = batch(step)
        w = weights_for(step)
        assert entry.apply(step, w, y[:, :, :takes] if takes else y, lengths).shape[-1] == gives


def test_options_that_are_named_guesses_are_declared_options():
    for kind, entry in KINDS.items():
        for sample in (s for s in SAMPLES.values() if s.kind == kind):
            for option, record in entry.guesses(sample, [sample]):
                assert option is None or entry.option(option) is not None, (kind, option)
                assert set(record) == {"what", "assumed", "label", "note"}
        assert set(entry.defaults()) <= set(Step.__dataclass_fields__), kind


def test_l2norm_default_eps_is_f_normalize_default():
    assert KINDS["l2norm"].defaults() == {"eps": 1e-12}
    assert KINDS["layernorm"].defaults() == KINDS["batchnorm"].defaults() == {"eps": 1e-5}


@pytest.mark.parametrize("step, message", [
    (Step("conv", "c"), r"step kind 'conv' is not known; expected one of embedding, rnn, "),
    (Step("activation", "swish"), r"activation 'swish' is not known"),
    (Step("pool", "median"), r"pooling 'median' is not known; expected pool:last\|mean\|max\|sum"),
    (Step("rnn", "r"), r"recurrent step 'r' has no 'rnn' description"),
    (rnn_step(replace(SPEC, cell="lstmp")), r"cell 'lstmp' is not known"),
    (Step("linear", "fc", 2, 2, max_norm=1.0), r"max_norm 1.0 of step 'fc': only an embedding has one"),
    (Step("embedding", "emb", 3, 2, max_norm=-1.0), r"max_norm -1.0 of step 'emb': only an embedding has one"),
])
def test_check_step_refuses_what_no_entry_allows(step, message):
    with pytest.raises(ValueError, match=message):
        check_step(step)


def test_input_width_is_the_first_step_that_fixes_it():
    lin = Step("linear", "proj", 6, F, bias=True)
    assert input_width([Step("activation", "relu"), Step("l2norm", ""), lin, rnn_step(SPEC)]) == 6
    assert input_width([Step("dropout", "dropout"), rnn_step(SPEC)]) == F
    assert input_width([Step("embedding", "emb", 9, F), rnn_step(SPEC)]) is None
    assert chain_widths([Step("l2norm", ""), rnn_step(SPEC), Step("layernorm", "")]) == SPEC.output_size
    with pytest.raises(ValueError, match="a parameter-free layernorm cannot come first"):
        chain_widths([Step("layernorm", ""), rnn_step(SPEC)])
    with pytest.raises(ValueError, match=r"'fc' takes 5 values but 'rnn' gives 3"):
        chain_widths([rnn_step(SPEC), Step("linear", "fc", 5, 1)])


# --------------------------------------------------------------------------- fusion
def _pooled_classifier():
    emb, pool, fc = Step("embedding", "emb", 9, F), Step("pool", "mean"), Step("linear", "fc", 3, 1, bias=True)
    chain = (emb, Step("dropout", "dropout"), rnn_step(SPEC), pool, Step("l2norm", ""), fc)
    w = {**weights_for(emb), **weights_for(chain[2]), **weights_for(fc)}
    return chain, w


def test_model_fuses_what_the_table_says():
    chain, w = _pooled_classifier()
    model = Model(chain, w, output="all", dtype="float64")
    assert model._fused == {0, 3}  # the embedding before, the pooling after the recurrent module
    assert model._fused_into == {2: (0, 3)}


@pytest.mark.parametrize("kind", ["embedding", "pool"])
def test_a_kind_without_fusion_runs_in_numpy_with_the_same_numbers(monkeypatch, kind):
    chain, w = _pooled_classifier()
    ids, lengths = batch(chain[0])
    fused = Model(chain, w, output="all", dtype="float64").predict(ids, lengths, engine="numpy")
    monkeypatch.setitem(KINDS, kind, replace(KINDS[kind], fusion=None))
    model = Model(chain, w, output="all", dtype="float64")
    assert model._fused == ({0, 3} - {0 if kind == "embedding" else 3})
    np.testing.assert_allclose(model.predict(ids, lengths, engine="numpy"), fused, rtol=1e-12, atol=1e-12)
