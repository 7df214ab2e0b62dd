"""The table of step kinds: what a chain step of each kind is, declared once.

A model is a chain of `rnnjit.spec.Step`. Everything rnnjit knows about one
kind of step stands in one `StepKind` entry of `KINDS`: how ``--chain``
writes it and its options (with defaults, and which of them are named
guesses), the weights it owns and their shapes, its width rule, its label and
bundle form, its numpy function, how ``verify --against`` builds it in torch,
whether an engine runs it inside a recurrent module's launch, and a slot for
a C emitter. `spec`, `chain`, `keys`, `model`, `bundle`, `assumptions` and the
CLI's torch check look entries up here instead of asking ``if kind == ...``.

Adding a kind: its numpy function in `rnnjit.steps`, one entry below (and its
line in `KINDS`), its tests; for ``rnnjit export-c``, its C emitter in
`rnnjit.export.c_steps` named in ``c_emit``. An entry's functions take the
`Step` itself; this module imports numpy, `rnnjit.steps` and the C emitters
(`rnnjit.export.c_steps`, itself numpy only), so `rnnjit.spec` (where `Step`
lives) can stand on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnnjit import steps
from rnnjit.export import c_steps
from rnnjit.steps import POOLS

ACTIVATIONS = tuple(steps.ACTIVATION_FUNCS)
CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
NONLINEARITIES = ("tanh", "relu")


# --------------------------------------------------------------------------- declarations
@dataclass(frozen=True)
class Option:
    """A setting a chain token may carry: ``ln:eps=1e-6`` (``key=value``), or ``rnn2:relu`` (``choices``, bare).

    ``parse`` turns the text after ``=`` into the value or raises ValueError;
    ``field`` is the `Step` field the value goes to. The default is a named
    guess when the kind's ``guesses`` name the option: ``convert`` records it
    (`rnnjit.assumptions`) unless the chain states it.
    """

    name: str
    default: Any
    parse: Callable[[str], Any] | None = None
    must: str = ""  # what the value must be, for the error ("a positive number")
    example: str = ""  # a value that reads right in an example (``1e-6``)
    choices: tuple[str, ...] = ()  # bare words (``rnn2:relu``) instead of ``key=value``
    owners: str = ""  # the steps that take it, for an error ("a LayerNorm or BatchNorm1d")
    field: str | None = None


@dataclass(frozen=True)
class Fusion:
    """How an engine runs a step inside a recurrent module's launch, per tile, with no array between them.

    ``position``: ``"input"`` when the step comes right before a recurrent
    module (dropout between does not count) and the module reads through it
    (an embedding: the tiles read table rows by token id); ``"output"`` when
    it comes right after one and the module's output pass applies it (a
    pooling: the tiles pool as they write). ``engine_args(step, weights)``
    returns the keywords of the engine's ``run`` that carry the step
    (``select``, ``table``; see `rnnjit.reference` for the contract).
    """

    position: str
    engine_args: Callable[[Any, Mapping[str, np.ndarray]], dict[str, Any]]


@dataclass(frozen=True)
class StepKind:
    """One kind of chain step. Functions take the step; ``weights`` are arrays under PyTorch keys.

    - ``words``: how ``--chain`` writes a step without weights (``relu``,
      ``pool:mean``; word -> step name), ``kind_word``: the prefix that forces
      the kind on a module (``linear:fc``); ``options``: `Option` s.
    - ``module(step)``: the step is a state_dict module (named by its prefix);
      ``shapes(step)``: every key it owns and its PyTorch shape;
      ``alt_shape(key, shape)``: another shape the file may hold (a Conv1d's);
      ``from_weights(sd, prefix)``: the `Step` fields its keys under ``prefix``
      say (the inverse of ``shapes``; a recurrent module's come from `rnnjit.infer`).
    - ``takes(step)``: the width it must receive (None: any, or token ids);
      ``gives(step, width)``: the width it hands on (ValueError when it cannot tell).
    - ``reads_tokens``: consumes integer token ids (first step only);
      ``pools_time``: reduces (B, T, F) to (B, F) (once, after the last
      recurrent module); ``recurrent``: run by an engine (`RNNSpec` in ``step.rnn``);
      ``noop``: does nothing in eval mode (ignored when steps look at their neighbours).
    - ``label(step)``: the token ``--chain`` writes; ``fields``: the `Step`
      fields the bundle stores besides kind and name (None values left out).
    - ``check(step)``: ValueError for a step no file should hold.
    - ``apply(step, weights, y, lengths)``: numpy, keeping y's dtype;
      ``check_input(step, weights, x, lengths, row_name)``: a check of the
      model's input before any engine reads it; ``scoring_weights(step, weights)``:
      arrays that replace the bundle's when scoring (a renormalized table).
    - ``torch(torch, step, sd, y, lens, select)``: the same step with PyTorch's
      own modules (``torch`` is the imported module, so rnnjit never imports it).
    - ``fusion``: a `Fusion`, or None: numpy runs the step between launches.
    - ``per_vector``: maps each vector on its own (no weights shared across
      time, no reduction over steps): a run of such steps is one call of the
      engine's ``run_steps`` on the rows it applies to (valid steps, or one
      per sequence), read and written by index (`rnnjit.model`).
    - ``guesses(step, chain)``: ``(option, record)`` pairs of named guesses; ``option``
      None when no chain token can state it (see `rnnjit.assumptions`).
    - ``c_emit``: the C emitter ``emit(ctx, step, width) -> CStep`` of ``rnnjit export-c``
      (`rnnjit.export.c_steps`), None until one is written.
    """

    kind: str
    label: Callable[[Any], str]
    takes: Callable[[Any], int | None]
    gives: Callable[[Any, int | None], int | None]
    apply: Callable[..., np.ndarray] | None
    torch: Callable[..., Any]
    words: Mapping[str, str] = field(default_factory=dict)
    kind_word: bool = False
    options: tuple[Option, ...] = ()
    module: Callable[[Any], bool] = lambda step: False
    shapes: Callable[[Any], dict[str, tuple[int, ...]]] = lambda step: {}
    from_weights: Callable[[Mapping[str, np.ndarray], str], dict[str, Any]] | None = None
    alt_shape: Callable[[str, tuple[int, ...]], tuple[int, ...] | None] = lambda key, shape: None
    fields: tuple[str, ...] = ()
    reads_tokens: bool = False
    pools_time: bool = False
    recurrent: bool = False
    noop: bool = False
    check: Callable[[Any], None] = lambda step: None
    check_input: Callable[..., None] | None = None
    scoring_weights: Callable[[Any, Mapping[str, np.ndarray]], dict[str, np.ndarray]] = lambda step, w: {}
    fusion: Fusion | None = None
    per_vector: bool = False
    guesses: Callable[[Any, Sequence[Any]], list[tuple[str | None, dict[str, Any]]]] = lambda step, chain: []
    c_emit: Callable[..., Any] | None = None

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)

    def defaults(self) -> dict[str, Any]:
        """`Step` field -> the default of each option stored in one (``{"eps": 1e-12}`` for l2norm)."""
        return {o.field: o.default for o in self.options if o.field is not None}


def record(what: str, assumed: str, label: str, note: str) -> dict[str, Any]:
    """One named guess as the bundle stores it (``assumed``)."""
    return {"what": what, "assumed": assumed, "label": label, "note": note}


def _positive(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value == math.inf:
        raise ValueError(raw)
    return value


def _positive_or_none(raw: str) -> float | None:
    return None if raw.strip().lower() == "none" else _positive(raw)


def _eps(default: float) -> Option:
    return Option("eps", default, _positive, "a positive number", "1e-6", owners="a LayerNorm or BatchNorm1d", field="eps")


def _per_vector(fn):
    """A numpy function of the last axis as an ``apply``: lengths unused, the dtype kept."""
    return lambda step, weights, y, lengths: np.asarray(fn(step, weights, y), dtype=y.dtype)


def _keeps(step, width):
    return width


def _named(step) -> str:
    return step.name or step.kind


def _square(vector) -> dict[str, int]:
    """A per-feature step: as many features out as in, the length of its 1-d weight."""
    return {"in_features": int(vector.shape[0]), "out_features": int(vector.shape[0])}


def _optional(sd, key, present):
    return sd.get(key) if present else None


# --------------------------------------------------------------------------- embedding
def _embedding_check(step) -> None:
    if step.max_norm is not None and not 0 < step.max_norm < math.inf:
        raise ValueError(f"max_norm {step.max_norm!r} of step {step.name!r}: only an embedding has one, a positive number")


def _embedding_scoring(step, weights):
    key = f"{step.prefix}weight"
    if step.max_norm is None or key not in weights:
        return {}
    return {key: steps.renorm_rows(weights[key], step.max_norm)}


def _embedding_torch(torch, step, sd, y, lens, select):
    # max_norm renormalizes the looked-up rows in place: a copy keeps sd as the file holds it
    return torch.nn.functional.embedding(y, sd[f"{step.prefix}weight"].clone(), max_norm=step.max_norm)


def _embedding_guesses(step, chain):
    t = step.label()
    return [("max_norm", record(
        "max_norm", "none", f"embedding {t!r} without max_norm",
        f"embedding {t!r}: assumed no max_norm (nn.Embedding's default; not in the weights); "
        f"if it was built with max_norm=M, write {t}:max_norm=M in chain= ({t}:max_norm=none states the default)",
    ))]


EMBEDDING = StepKind(
    "embedding",
    label=_named,
    takes=lambda step: None,
    gives=lambda step, width: step.out_features,
    apply=lambda step, weights, ids, lengths: steps.embed(step, weights, ids, lengths),
    torch=_embedding_torch,
    kind_word=True,
    options=(Option("max_norm", None, _positive_or_none, "a positive number (nn.Embedding(max_norm=...)) or none",
                    "1.0", owners="an nn.Embedding", field="max_norm"),),
    module=lambda step: True,
    shapes=lambda step: {f"{step.prefix}weight": (step.in_features, step.out_features)},
    from_weights=lambda sd, p: dict(zip(("in_features", "out_features"), map(int, sd[f"{p}weight"].shape[:2]))),
    fields=("in_features", "out_features", "bias", "max_norm"),
    reads_tokens=True,
    check=_embedding_check,
    check_input=lambda step, weights, ids, lengths, row_name: steps.check_token_ids(step, weights, ids, lengths, row_name),
    scoring_weights=_embedding_scoring,
    fusion=Fusion("input", lambda step, weights: {"table": weights[f"{step.prefix}weight"]}),
    guesses=_embedding_guesses,
    c_emit=c_steps.emit_embedding,
)


# --------------------------------------------------------------------------- recurrent module
def _rnn_check(step) -> None:
    spec = step.rnn
    if spec is None:
        raise ValueError(f"recurrent step {step.name!r} has no 'rnn' description")
    if spec.cell not in CELLS:
        raise ValueError(f"cell {spec.cell!r} is not known; expected one of {', '.join(CELLS)}")
    for name in ("input_size", "hidden_size", "num_layers"):
        if getattr(spec, name) < 1:
            raise ValueError(f"rnn.{name} is {getattr(spec, name)}; expected a positive integer")
    if spec.proj_size < 0 or (spec.proj_size and spec.cell != "lstm"):
        raise ValueError(f"rnn.proj_size is {spec.proj_size}; expected 0, or a positive size for an lstm")


def _rnn_torch(torch, step, sd, y, lens, select):
    spec = step.rnn
    kw = dict(num_layers=spec.num_layers, bias=spec.bias, batch_first=True, bidirectional=spec.bidirectional)
    if spec.cell == "lstm":
        net = torch.nn.LSTM(spec.input_size, spec.hidden_size, proj_size=spec.proj_size, **kw)
    elif spec.cell == "gru":
        net = torch.nn.GRU(spec.input_size, spec.hidden_size, **kw)
    else:
        net = torch.nn.RNN(spec.input_size, spec.hidden_size, nonlinearity=spec.cell.split("_")[1], **kw)
    net = net.to(next(iter(sd.values())).dtype)
    net.load_state_dict({k[len(spec.prefix):]: sd[k] for k in spec.expected_shapes()})
    B, T = y.shape[0], y.shape[1]
    packed = torch.nn.utils.rnn.pack_padded_sequence(y, lens, batch_first=True, enforce_sorted=False)
    out, hn = net(packed)
    hn = hn[0] if isinstance(hn, tuple) else hn
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    if select == "all":
        return out
    if select == "last":
        return out[torch.arange(B), lens - 1]
    D = spec.num_directions
    return torch.cat([hn[(spec.num_layers - 1) * D + d] for d in range(D)], dim=1)


def _rnn_guesses(step, chain):
    if step.rnn.cell != "rnn_tanh":
        return []
    who = repr(step.name) if step.name else "(the saved module)"
    several = sum(1 for s in chain if s.kind == "rnn") > 1
    return [("nonlinearity", record(
        "nonlinearity", "tanh", f"nn.RNN {who} nonlinearity tanh",
        f"nn.RNN {who}: nonlinearity assumed tanh (not in the weights); "
        f"if the nn.RNN was built with relu: nonlinearity='relu'"
        f"{f' (or {step.name}:relu in chain= for this module only)' if several else ''}",
    ))]


RNN = StepKind(
    "rnn",
    label=_named,
    takes=lambda step: step.rnn.input_size,
    gives=lambda step, width: step.rnn.output_size,
    apply=None,  # an engine runs it (rnnjit.engines)
    torch=_rnn_torch,
    # nn.RNN only; the cell, and so the default, comes from --nonlinearity (the convert option)
    options=(Option("nonlinearity", None, choices=NONLINEARITIES, owners="an nn.RNN"),),
    module=lambda step: True,
    shapes=lambda step: step.rnn.expected_shapes(),
    fields=("rnn",),
    recurrent=True,
    check=_rnn_check,
    guesses=_rnn_guesses,
    c_emit=c_steps.emit_rnn,
)


# --------------------------------------------------------------------------- pooling over time
def _pool_check(step) -> None:
    if step.name not in POOLS:
        raise ValueError(f"pooling {step.name!r} is not known; expected pool:{'|'.join(POOLS)}")


def _pool_torch(torch, step, sd, y, lens, select):
    m = (torch.arange(y.shape[1])[None, :] < lens[:, None])[:, :, None]
    if step.name == "last":
        return y[torch.arange(y.shape[0]), lens - 1]
    if step.name == "max":
        return y.masked_fill(~m, float("-inf")).max(dim=1).values
    total = (y * m).sum(dim=1)
    return total / lens[:, None].to(y.dtype) if step.name == "mean" else total


POOL = StepKind(
    "pool",
    label=lambda step: f"pool:{step.name}",
    takes=lambda step: None,
    gives=_keeps,
    apply=lambda step, weights, y, lengths: steps.pool_steps(step.name, y, lengths),
    torch=_pool_torch,
    words={f"pool:{m}": m for m in POOLS},
    pools_time=True,
    check=_pool_check,
    fusion=Fusion("output", lambda step, weights: {"select": step.name}),
    c_emit=c_steps.emit_pool,
)


# --------------------------------------------------------------------------- normalization
def _norm_guesses(what):
    def guesses(step, chain):
        t = step.label()
        return [("eps", record(
            "eps", f"{step.eps:g}", f"{what} {t!r} eps {step.eps:g}",
            f"{what} {t!r}: eps assumed {step.eps:g} (PyTorch's default; not in the weights); "
            f"if it was built with another eps, write it in the chain: {t}:eps=1e-6",
        ))]
    return guesses


def _layernorm_shapes(step):
    if not step.name:
        return {}
    shapes = {f"{step.prefix}weight": (step.in_features,)} if step.affine else {}
    if step.bias:
        shapes[f"{step.prefix}bias"] = (step.in_features,)
    return shapes


def _layernorm_gives(step, width):
    if step.name:
        return step.in_features
    if width is None:
        raise ValueError("a parameter-free layernorm cannot come first; its width is unknown")
    return width


def _layernorm_torch(torch, step, sd, y, lens, select):
    p = step.prefix
    return torch.nn.functional.layer_norm(
        y, (y.shape[-1],), _optional(sd, f"{p}weight", step.affine), _optional(sd, f"{p}bias", step.bias), step.eps
    )


LAYERNORM = StepKind(
    "layernorm",
    label=lambda step: step.name or "layernorm",
    takes=lambda step: step.in_features if step.name else None,
    gives=_layernorm_gives,
    apply=_per_vector(steps.layer_norm),
    torch=_layernorm_torch,
    words={"layernorm": ""},  # without weights: F.layer_norm over the last dim
    kind_word=True,
    options=(_eps(1e-5),),
    module=lambda step: bool(step.name),
    shapes=_layernorm_shapes,
    from_weights=lambda sd, p: dict(_square(sd[f"{p}weight"]), bias=f"{p}bias" in sd, affine=True),
    fields=("in_features", "out_features", "bias", "affine", "eps"),
    guesses=_norm_guesses("LayerNorm"),
    per_vector=True,
    c_emit=c_steps.emit_layernorm,
)


def _batchnorm_shapes(step):
    p, n = step.prefix, step.in_features
    shapes = {f"{p}running_mean": (n,), f"{p}running_var": (n,)}
    if step.affine:
        shapes.update({f"{p}weight": (n,), f"{p}bias": (n,)})
    return shapes


def _batchnorm_torch(torch, step, sd, y, lens, select):
    p = step.prefix
    flat = torch.nn.functional.batch_norm(
        y.reshape(-1, y.shape[-1]), sd[f"{p}running_mean"], sd[f"{p}running_var"],
        _optional(sd, f"{p}weight", step.affine), _optional(sd, f"{p}bias", step.affine), False, 0.0, step.eps,
    )
    return flat.reshape(y.shape)


BATCHNORM = StepKind(
    "batchnorm",
    label=_named,
    takes=lambda step: step.in_features,
    gives=lambda step, width: step.in_features,
    apply=_per_vector(steps.batch_norm),
    torch=_batchnorm_torch,
    options=(_eps(1e-5),),
    module=lambda step: True,
    shapes=_batchnorm_shapes,
    from_weights=lambda sd, p: dict(_square(sd[f"{p}running_mean"]), affine=f"{p}weight" in sd),
    fields=("in_features", "out_features", "bias", "affine", "eps"),
    guesses=_norm_guesses("BatchNorm1d"),
    per_vector=True,
    c_emit=c_steps.emit_batchnorm,
)


def _l2norm_guesses(step, chain):
    return [("eps", record(
        "eps", f"{step.eps:g}", f"F.normalize 'l2norm' eps {step.eps:g}",
        f"l2norm: eps assumed {step.eps:g} (F.normalize's default; not in the weights); "
        "if forward() passes another eps, write it in the chain: l2norm:eps=1e-6",
    ))]


L2NORM = StepKind(
    "l2norm",
    label=lambda step: "l2norm",
    takes=lambda step: None,
    gives=_keeps,
    apply=_per_vector(steps.l2_normalize),
    torch=lambda torch, step, sd, y, lens, select: torch.nn.functional.normalize(y, p=2.0, dim=-1, eps=step.eps),
    words={"l2norm": ""},  # F.normalize(y, p=2, dim=-1): y / max(||y||, eps)
    options=(_eps(1e-12),),
    fields=("eps",),
    guesses=_l2norm_guesses,
    per_vector=True,
    c_emit=c_steps.emit_l2norm,
)


# --------------------------------------------------------------------------- linear layer
def _linear_shapes(step):
    shapes = {f"{step.prefix}weight": (step.out_features, step.in_features)}
    if step.bias:
        shapes[f"{step.prefix}bias"] = (step.out_features,)
    return shapes


def _linear_torch(torch, step, sd, y, lens, select):
    w = sd[f"{step.prefix}weight"]
    return torch.nn.functional.linear(y, w.reshape(w.shape[0], w.shape[1]), _optional(sd, f"{step.prefix}bias", step.bias))


LINEAR = StepKind(
    "linear",
    label=_named,
    takes=lambda step: step.in_features,
    gives=lambda step, width: step.out_features,
    apply=_per_vector(steps.linear),
    torch=_linear_torch,
    kind_word=True,
    module=lambda step: True,
    shapes=_linear_shapes,
    from_weights=lambda sd, p: dict(in_features=int(sd[f"{p}weight"].shape[1]),
                                    out_features=int(sd[f"{p}weight"].shape[0]), bias=f"{p}bias" in sd),
    # a Conv1d with kernel size 1 holds its weight as (out, in, 1)
    alt_shape=lambda key, shape: (*shape, 1) if key.endswith("weight") else None,
    fields=("in_features", "out_features", "bias"),
    per_vector=True,
    c_emit=c_steps.emit_linear,
)


# --------------------------------------------------------------------------- activations, dropout
# The parameter each activation runs with; a model's own value is not in its state_dict.
_ACTIVATION_DEFAULTS = {
    "leaky_relu": ("negative_slope=0.01", "nn.LeakyReLU"),
    "elu": ("alpha=1.0", "nn.ELU"),
    "gelu": ("approximate='none' (the exact erf form)", "nn.GELU"),
}


def _activation_check(step) -> None:
    if step.name not in ACTIVATIONS:
        raise ValueError(f"activation {step.name!r} is not known; expected one of {', '.join(ACTIVATIONS)}")


def _activation_torch(torch, step, sd, y, lens, select):
    F = torch.nn.functional
    fn = {
        "sigmoid": torch.sigmoid, "softmax": lambda v: torch.softmax(v, dim=-1),
        "log_softmax": lambda v: torch.log_softmax(v, dim=-1), "tanh": torch.tanh, "relu": torch.relu,
        "identity": lambda v: v, "gelu": F.gelu, "elu": F.elu, "leaky_relu": F.leaky_relu,
    }[step.name]
    return fn(y)


def _activation_guesses(step, chain):
    if step.name not in _ACTIVATION_DEFAULTS:
        return []
    param, module = _ACTIVATION_DEFAULTS[step.name]
    return [(None, record(
        "activation_parameter", param, f"{step.name} {param}",
        f"{step.name} assumed {param} ({module}'s default; not in the weights); rnnjit runs no other "
        f"value, so a model built with another one cannot be scored",
    ))]


ACTIVATION = StepKind(
    "activation",
    label=lambda step: step.name,
    takes=lambda step: None,
    gives=_keeps,
    apply=_per_vector(lambda step, weights, y: steps.ACTIVATION_FUNCS[step.name](y)),
    torch=_activation_torch,
    words={a: a for a in ACTIVATIONS},
    check=_activation_check,
    guesses=_activation_guesses,
    per_vector=True,
    c_emit=c_steps.emit_activation,
)

DROPOUT = StepKind(
    "dropout",
    label=lambda step: "dropout",
    takes=lambda step: None,
    gives=_keeps,
    apply=lambda step, weights, y, lengths: y,  # a no-op in eval mode
    torch=lambda torch, step, sd, y, lens, select: y,
    words={"dropout": "dropout"},
    noop=True,
    per_vector=True,
    c_emit=c_steps.emit_dropout,
)


KINDS: dict[str, StepKind] = {k.kind: k for k in (
    EMBEDDING, RNN, POOL, LAYERNORM, BATCHNORM, LINEAR, ACTIVATION, DROPOUT, L2NORM,
)}


def apply(step, weights: Mapping[str, np.ndarray], y: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Run one non-recurrent step in numpy (``y`` token ids for an embedding, floats otherwise)."""
    return KINDS[step.kind].apply(step, weights, y, lengths)
