"""Architecture inference: recover RNNSpec and the head from state_dict keys and shapes.

What weights cannot tell (nn.RNN's nonlinearity, activations in the head, the
output mode, which of several recurrent modules to use) comes from arguments;
when a choice is ambiguous the error lists the candidates.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from rnnjit.chain_tokens import parse_token, split_chain, with_options
from rnnjit.errors import ArchitectureError
from rnnjit.kinds import KINDS
from rnnjit.spec import ACTIVATIONS, HeadStep, RNNSpec

_CELL_BY_GATES = {4: "lstm", 3: "gru", 1: "rnn"}
_RNN_KEY = re.compile(r"^(?P<prefix>.*?)weight_ih_l0$")


def rnn_prefixes(sd: Mapping[str, np.ndarray]) -> list[str]:
    """Prefixes (with trailing dot, or "") of every recurrent module in the state_dict."""
    return [m.group("prefix") for k in sd if (m := _RNN_KEY.match(k))]


def _normalize_prefix(prefix: str) -> str:
    prefix = prefix.strip()
    return prefix if prefix == "" or prefix.endswith(".") else prefix + "."


def _shape(sd, key):
    return tuple(sd[key].shape)


def infer_spec(
    sd: Mapping[str, np.ndarray], *, rnn_prefix: str | None = None, nonlinearity: str | None = None
) -> RNNSpec:
    """Infer the recurrent module's constructor arguments from its weights.

    Raises `ArchitectureError` when no recurrent module is found, when several
    are and ``rnn_prefix`` does not pick one, or when the shapes disagree with
    any PyTorch module.
    """
    found = rnn_prefixes(sd)
    if rnn_prefix is not None:
        prefix = _normalize_prefix(rnn_prefix)
        if prefix not in found:
            raise ArchitectureError(
                f"no recurrent module with prefix {prefix!r}; found {_list_prefixes(found)}; "
                "pass one of these as rnn_prefix"
            )
    elif not found:
        sample = ", ".join(list(sd)[:6]) or "none"
        raise ArchitectureError(
            f"no nn.RNN/nn.LSTM/nn.GRU weights found (no key ending in 'weight_ih_l0'; keys: {sample}); "
            "save the state_dict of a model that contains a recurrent module"
        )
    elif len(found) > 1:
        raise ArchitectureError(
            f"found {len(found)} recurrent modules: {_list_prefixes(found)}; "
            "choose one with rnn_prefix"
        )
    else:
        prefix = found[0]

    w_ih0 = sd[f"{prefix}weight_ih_l0"]
    w_hh0_key = f"{prefix}weight_hh_l0"
    if w_hh0_key not in sd:
        raise ArchitectureError(f"missing key {w_hh0_key!r} next to {prefix}weight_ih_l0; the state_dict is incomplete")
    w_hh0 = sd[w_hh0_key]
    if w_ih0.ndim != 2 or w_hh0.ndim != 2:
        raise ArchitectureError(
            f"{prefix}weight_ih_l0 has shape {w_ih0.shape} and {w_hh0_key} {w_hh0.shape}; expected 2-d matrices"
        )
    hr_key = f"{prefix}weight_hr_l0"
    if hr_key in sd:
        proj_size, hidden = _shape(sd, hr_key)
    else:
        proj_size, hidden = 0, w_hh0.shape[1]
    rows = w_hh0.shape[0]
    if hidden == 0 or rows % hidden or rows // hidden not in _CELL_BY_GATES:
        raise ArchitectureError(
            f"{w_hh0_key} has shape {w_hh0.shape}: {rows} rows is not 4, 3 or 1 times the hidden size {hidden} "
            "(LSTM, GRU, RNN); this is not a PyTorch recurrent module"
        )
    cell = _CELL_BY_GATES[rows // hidden]
    if proj_size and cell != "lstm":
        raise ArchitectureError(f"{hr_key} (proj_size) is only valid for nn.LSTM, but the gates say {cell}")
    if cell == "rnn":
        nl = (nonlinearity or "tanh").lower()
        if nl not in ("tanh", "relu"):
            raise ArchitectureError(f"nonlinearity {nonlinearity!r} is not known; expected 'tanh' or 'relu'")
        cell = f"rnn_{nl}"
    elif nonlinearity is not None:
        raise ArchitectureError(
            f"nonlinearity={nonlinearity!r} was given but the weights are an nn.{cell.upper()}; "
            "nonlinearity applies to nn.RNN only, drop it"
        )

    num_layers = 0
    while f"{prefix}weight_ih_l{num_layers}" in sd:
        num_layers += 1
    spec = RNNSpec(
        cell=cell,
        input_size=int(w_ih0.shape[1]),
        hidden_size=int(hidden),
        num_layers=num_layers,
        bidirectional=f"{prefix}weight_ih_l0_reverse" in sd,
        bias=f"{prefix}bias_ih_l0" in sd,
        proj_size=int(proj_size),
        prefix=prefix,
    )
    check_rnn_weights(spec, sd, error=ArchitectureError)
    return spec


def check_rnn_weights(spec: RNNSpec, sd: Mapping[str, np.ndarray], *, error=ArchitectureError) -> None:
    """Every key the spec needs exists with PyTorch's shape, and no stray key sits under the prefix."""
    expected = spec.expected_shapes()
    for key, shape in expected.items():
        if key not in sd:
            raise error(f"missing key {key!r} (expected shape {shape}) for {_describe(spec)}")
        if tuple(sd[key].shape) != shape:
            raise error(f"key {key!r} has shape {tuple(sd[key].shape)}; expected {shape} for {_describe(spec)}")
    pat = re.compile(re.escape(spec.prefix) + r"(weight|bias)_(ih|hh|hr)_l\d+(_reverse)?$")
    stray = [k for k in sd if pat.match(k) and k not in expected]
    if stray:
        raise error(
            f"unexpected keys {stray[:4]} next to {_describe(spec)}; the layers or directions are not contiguous"
        )


def _describe(spec: RNNSpec) -> str:
    parts = [f"{spec.cell}(input_size={spec.input_size}, hidden_size={spec.hidden_size}"]
    if spec.proj_size:
        parts.append(f", proj_size={spec.proj_size}")
    parts.append(f", num_layers={spec.num_layers}, bidirectional={spec.bidirectional}, bias={spec.bias})")
    pre = f" at prefix {spec.prefix!r}" if spec.prefix else ""
    return "".join(parts) + pre


def _list_prefixes(found: Sequence[str]) -> str:
    return ", ".join(repr(p) for p in found) if found else "none"


def linear_layers(sd: Mapping[str, np.ndarray], exclude_prefix: str = "") -> dict[str, tuple[int, int, bool]]:
    """Candidate head layers: name -> (in_features, out_features, has_bias).

    A ``name.weight`` of shape (out, in), or (out, in, 1) for a Conv1d with
    kernel size 1. Keys of the recurrent module itself are excluded.
    """
    found = {}
    for key, w in sd.items():
        if not key.endswith(".weight") or (exclude_prefix and key.startswith(exclude_prefix)):
            continue
        if not np.issubdtype(w.dtype, np.floating):
            continue
        if w.ndim == 2 or (w.ndim == 3 and w.shape[2] == 1):
            name = key[: -len(".weight")]
            bias = sd.get(f"{name}.bias")
            has_bias = bias is not None and bias.shape == (w.shape[0],)
            found[name] = (int(w.shape[1]), int(w.shape[0]), has_bias)
    return found


def infer_head(
    sd: Mapping[str, np.ndarray], spec: RNNSpec, head=None, *, exclude: Sequence[str] = ()
) -> tuple[HeadStep, ...]:
    """Build the head chain, from ``head`` tokens or, when None, from the weights.

    Without ``head``, a single linear layer that takes the RNN's output is used
    as it is (no activation: the weights cannot tell). Several chained linear
    layers need an explicit ``head`` because activations between them cannot be
    read from weights.
    """
    layers = {n: v for n, v in linear_layers(sd, exclude_prefix=spec.prefix).items() if n not in exclude}
    tokens = split_chain(head)
    width = spec.output_size
    if tokens is None:
        takers = [n for n, (i, _, _) in layers.items() if i == width]
        if not takers:
            return ()
        if len(takers) > 1:
            raise ArchitectureError(
                f"several linear layers take the recurrent output (width {width}): {', '.join(takers)}; "
                f"pick the head with head=, e.g. head='{takers[0]},sigmoid'"
            )
        name = takers[0]
        follow = [n for n, (i, _, _) in layers.items() if i == layers[name][1] and n != name]
        if follow:
            raise ArchitectureError(
                f"linear layers {name} -> {follow[0]} look chained, and activations between them cannot be "
                f"read from the weights; spell the head out, e.g. head='{name},relu,{follow[0]},sigmoid'"
            )
        tokens = [name]

    steps: list[HeadStep] = []
    for text in tokens:
        try:
            tok = parse_token(text, layers)
        except ValueError as exc:
            raise ArchitectureError(str(exc)) from None
        if tok.operation and not KINDS[tok.kind].pools_time:  # an activation, dropout, l2norm
            steps.append(_with_options(HeadStep(tok.kind, tok.name, **KINDS[tok.kind].defaults()), tok))
            continue
        name = tok.name
        if tok.kind not in (None, "linear") or name not in layers:
            cand = ", ".join(layers) or "none"
            raise ArchitectureError(
                f"head step {text!r} is neither an activation ({', '.join(ACTIVATIONS)}) nor a linear layer "
                f"in the weights (linear layers: {cand})"
            )
        i, o, b = layers[name]
        if i != width:
            raise ArchitectureError(
                f"head layer {name!r} takes {i} inputs but receives {width} "
                f"({'the recurrent output' if not any(s.kind == 'linear' for s in steps) else 'the previous layer'}); "
                "check the order of head=, or the output mode"
            )
        steps.append(_with_options(HeadStep("linear", name, i, o, b), tok))
        width = o
    return tuple(steps)


def _with_options(step, tok):
    try:
        return with_options(step, tok)
    except ValueError as exc:
        raise ArchitectureError(str(exc)) from None


def infer_dtype(specs: RNNSpec | Sequence[RNNSpec], sd: Mapping[str, np.ndarray]) -> str:
    """float64 when every recurrent weight is float64 (a .double() model), else float32."""
    specs = [specs] if isinstance(specs, RNNSpec) else list(specs)
    keys = [k for spec in specs for k in spec.expected_shapes()]
    return "float64" if all(sd[k].dtype == np.float64 for k in keys) else "float32"
