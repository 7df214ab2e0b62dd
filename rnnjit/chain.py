"""The model's chain from a state_dict: parse ``--chain``, infer it when the weights leave no doubt.

``--chain "emb,lstm1,lstm2,pool:mean,ln,fc,relu,out,sigmoid"`` names state_dict
modules (by prefix) and parameter-free operations (activations, ``pool:M``,
``dropout``, ``layernorm``, ``l2norm``: the words of `rnnjit.kinds`, which
also reads each token). What each module is comes from its keys and
shapes: ``weight_ih_l0`` a recurrent module, ``running_mean`` a BatchNorm1d,
a 1-d ``weight`` a LayerNorm, a 2-d ``weight`` a Linear (3-d with kernel 1: a
Conv1d) or, first in the chain and as wide as what follows, an Embedding
(``embedding:NAME`` / ``linear:NAME`` decide when both fit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import takewhile

import numpy as np

from rnnjit.chain_tokens import Token, parse_token, split_chain, with_options
from rnnjit.errors import ArchitectureError
from rnnjit.infer import infer_head, infer_spec, rnn_prefixes
from rnnjit.keys import module_names, modules, suggest_chain
from rnnjit.kinds import ACTIVATIONS, KINDS, POOLS
from rnnjit.spec import Step, chain_widths, input_width, rnn_step


def _keys_under(sd, name: str) -> list[str]:
    p = f"{name}." if name else ""
    return [k for k in sd if k.startswith(p) and "." not in k[len(p):]]


def parse_chain(chain: str | Sequence[str], sd: Mapping[str, np.ndarray]) -> list[Token]:
    """``--chain`` read into tokens (`Token`) against the modules the weights hold; `ArchitectureError` for a bad option."""
    names = set(modules(sd)) | {p[:-1] if p else "" for p in rnn_prefixes(sd)}
    try:
        return [parse_token(t, names) for t in split_chain(chain) or ()]
    except ValueError as exc:
        raise ArchitectureError(str(exc)) from None


def build_chain(sd: Mapping[str, np.ndarray], tokens: Sequence[Token], *, nonlinearity: str | None = None) -> tuple[Step, ...]:
    """Steps for explicit ``--chain`` tokens (`parse_chain`), checked against the weights' shapes."""
    kinds = [_module_kind(sd, tok) for tok in tokens]
    steps: list[Step | None] = []
    for tok, kind in zip(tokens, kinds):
        steps.append(None if kind in ("2d", "embedding", "linear") else _step(sd, tok, kind, nonlinearity))
    for i, (tok, kind) in enumerate(zip(tokens, kinds)):
        if steps[i] is None:  # a matrix: an embedding or a linear layer, told by the width the steps after it take
            known = list(takewhile(lambda s: s is not None, steps[i + 1:]))
            steps[i] = _matrix_step(sd, tok, kind, i, input_width(known))
    try:
        chain = tuple(with_options(step, tok) for step, tok in zip(steps, tokens))
    except ValueError as exc:
        raise ArchitectureError(str(exc)) from None
    check_chain(chain)
    return chain


def _module_kind(sd, tok: Token) -> str:
    """The kind of the step a token names ("2d" for a bias-free matrix that may be an embedding or a linear layer)."""
    if tok.operation:
        return tok.kind
    mods = modules(sd)
    rnns = {p[:-1] if p else "" for p in rnn_prefixes(sd)}
    name, forced = tok.name, tok.kind
    if forced is None and name not in mods and name not in rnns:
        ops = [w for e in KINDS.values() for w in e.words if not w.startswith("pool:")]
        raise ArchitectureError(
            f"chain step {tok.text!r} is neither a module in the weights ({', '.join(module_names(sd)) or 'none'}) "
            f"nor an operation ({', '.join(ACTIVATIONS)}, pool:{'|'.join(POOLS)}, "
            f"{', '.join(w for w in ops if w not in ACTIVATIONS)}); "
            "a module without weights (nn.Dropout, nn.ReLU, ...) is written as its operation"
        )
    if name in rnns:
        return "rnn"
    p = f"{name}." if name else ""
    w = sd.get(f"{p}weight")
    if f"{p}running_mean" in sd:
        return "batchnorm"
    if w is not None and w.ndim == 1 and forced in (None, "layernorm"):
        # a 1-d weight with a bias is a LayerNorm; alone it may as well be an nn.PReLU (weights (1,) or
        # (C,)), which would score as a LayerNorm with no word: the user says which
        if f"{p}bias" not in sd and forced is None:
            raise ArchitectureError(
                f"chain step {tok.text!r}: {p}weight {tuple(w.shape)} with no bias could be an nn.LayerNorm(bias=False) "
                f"or an nn.PReLU, which rnnjit does not run; if it is the LayerNorm, write layernorm:{name}"
            )
        return "layernorm"
    if forced == "layernorm":
        raise ArchitectureError(f"chain step 'layernorm:{name}': module {name!r} has no 1-d weight; it is not a LayerNorm")
    if w is not None and (w.ndim == 2 or (w.ndim == 3 and w.shape[2] == 1)):
        return forced or ("linear" if w.ndim == 3 or f"{p}bias" in sd else "2d")
    shapes = ", ".join(f"{k} {tuple(sd[k].shape)}" for k in _keys_under(sd, name)) or "no tensors"
    raise ArchitectureError(
        f"chain step {tok.text!r}: module {name!r} ({shapes}) is not an embedding, recurrent module, "
        "LayerNorm, BatchNorm1d, Linear or kernel-1 Conv1d; rnnjit cannot run it "
        "(attention, transformers and CNN front-ends are not supported)"
    )


def _step(sd, tok: Token, kind: str, nonlinearity: str | None) -> Step:
    """The step of a token whose kind is settled (not a bare matrix)."""
    name, p = tok.name, f"{tok.name}." if tok.name else ""
    if kind == "rnn":
        act = tok.options.get("nonlinearity", nonlinearity)
        spec = infer_spec(sd, rnn_prefix=p)
        if "nonlinearity" in tok.options and not spec.cell.startswith("rnn_"):
            raise ArchitectureError(
                f"chain step {tok.text!r} gives a nonlinearity, but {name!r} is an nn.{spec.cell.upper()}; "
                "only nn.RNN has one"
            )
        if spec.cell.startswith("rnn_") and act:
            spec = infer_spec(sd, rnn_prefix=p, nonlinearity=act)
        return rnn_step(spec)
    if tok.operation:
        return Step(kind, name, **KINDS[kind].defaults())
    return Step(kind, name, **KINDS[kind].from_weights(sd, p))


def _matrix_step(sd, tok: Token, kind: str, i: int, next_width: int | None) -> Step:
    """An embedding or a linear layer; a bias-free first matrix is told apart by the width of the step after it."""
    name, p = tok.name, f"{tok.name}." if tok.name else ""
    w = sd[f"{p}weight"]
    rows, cols = int(w.shape[0]), int(w.shape[1])
    if kind == "2d" and i == 0:
        emb_fits, lin_fits = next_width in (None, cols), next_width in (None, rows)
        if emb_fits and lin_fits:
            raise ArchitectureError(
                f"chain step {tok.text!r} ({p}weight {tuple(w.shape)}, no bias) could be an nn.Embedding or a "
                f"bias-free nn.Linear; say which: chain='embedding:{name},...' or chain='linear:{name},...'"
            )
        kind = "embedding" if emb_fits else "linear"
    elif kind == "2d":  # only the first step reads token ids
        kind = "linear"
    if KINDS[kind].reads_tokens and i:
        raise ArchitectureError(f"{kind} {name!r} must come first in the chain (it reads token ids)")
    return Step(kind, name, **KINDS[kind].from_weights(sd, p))


def check_chain(chain: Sequence[Step]) -> int:
    """Widths agree and the head makes sense; returns the output width."""
    try:
        chain_widths(chain)
    except ValueError as exc:
        raise ArchitectureError(f"{exc}; check the order of chain= / head=") from exc
    for i, step in enumerate(chain):
        if step.kind == "activation" and step.name in ("softmax", "log_softmax"):
            w = chain_widths(chain[:i]) if any(KINDS[s.kind].recurrent for s in chain[:i]) else None
            if w == 1:
                always = "1.0" if step.name == "softmax" else "0.0"
                raise ArchitectureError(
                    f"{step.name} over a single value gives {always} for every input; "
                    "for one logit use sigmoid (e.g. head='fc,sigmoid')"
                )
    return chain_widths(chain)


def infer_chain(
    sd: Mapping[str, np.ndarray],
    *,
    rnn_prefix: str | None = None,
    nonlinearity: str | None = None,
    head=None,
) -> tuple[Step, ...]:
    """The chain when the weights leave no doubt: [embedding], one recurrent module, the head.

    Raises `ArchitectureError` listing the candidates and an example ``--chain``
    when the file holds several recurrent modules (and ``rnn_prefix`` does not
    pick one) or several embeddings could feed the recurrent module.
    """
    found = rnn_prefixes(sd)
    if rnn_prefix is None and len(found) > 1:
        raise ArchitectureError(
            f"found {len(found)} recurrent modules: {', '.join(repr(p[:-1]) for p in found)}; say how the model "
            f"chains them, e.g. chain='{suggest_chain(sd, [])}' (file order; add activations and pooling "
            "as the forward() does), or pick one with rnn_prefix"
        )
    spec = infer_spec(sd, rnn_prefix=rnn_prefix, nonlinearity=nonlinearity)
    pos = {k: i for i, k in enumerate(sd)}
    rnn_pos = pos[f"{spec.prefix}weight_ih_l0"]
    embs = []
    for name, mkeys in modules(sd).items():
        w = sd[mkeys[0]]
        # a lone (rows, input_size) matrix registered before the recurrent module; a square
        # one could as well be a bias-free nn.Linear, so it is left to --chain
        if (mkeys == [f"{name}.weight"] and w.ndim == 2 and w.shape[1] == spec.input_size
                and w.shape[0] != w.shape[1] and pos[mkeys[0]] < rnn_pos):
            embs.append(name)
    if len(embs) > 1:
        raise ArchitectureError(
            f"several modules could be the embedding that feeds {spec.prefix[:-1]!r}: {', '.join(embs)}; "
            f"pick one with chain='{embs[0]},{spec.prefix[:-1]},...'"
        )
    tail = infer_head(sd, spec, head, exclude=embs)
    lead = (Step("embedding", embs[0], **KINDS["embedding"].from_weights(sd, f"{embs[0]}.")),) if embs else ()
    chain = (*lead, rnn_step(spec), *tail)
    check_chain(chain)
    return chain
