"""The model's chain from a state_dict: parse ``--chain``, infer it when the weights leave no doubt.

``--chain "emb,lstm1,lstm2,pool:mean,ln,fc,relu,out,sigmoid"`` names state_dict
modules (by prefix) and parameter-free operations (activations, ``pool:M``,
``dropout``, ``layernorm``). What each module is comes from its keys and
shapes: ``weight_ih_l0`` a recurrent module, ``running_mean`` a BatchNorm1d,
a 1-d ``weight`` a LayerNorm, a 2-d ``weight`` a Linear (3-d with kernel 1: a
Conv1d) or, first in the chain and as wide as what follows, an Embedding
(``embedding:NAME`` / ``linear:NAME`` decide when both fit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from rnnjit.errors import ArchitectureError
from rnnjit.infer import infer_head, infer_spec, parse_head, rnn_prefixes
from rnnjit.keys import module_names, modules, suggest_chain
from rnnjit.spec import ACTIVATIONS, POOLS, Step, chain_widths, rnn_step

_KIND_WORDS = {"embedding": "embedding", "linear": "linear", "layernorm": "layernorm"}


def _keys_under(sd, name: str) -> list[str]:
    p = f"{name}." if name else ""
    return [k for k in sd if k.startswith(p) and "." not in k[len(p):]]


def parse_chain(chain: str | Sequence[str] | None) -> list[str] | None:
    return parse_head(chain)


def build_chain(sd: Mapping[str, np.ndarray], tokens: Sequence[str], *, nonlinearity: str | None = None) -> tuple[Step, ...]:
    """Steps for explicit ``--chain`` tokens, checked against the weights' shapes."""
    mods = modules(sd)
    rnns = set(p[:-1] if p else "" for p in rnn_prefixes(sd))
    raw: list[tuple[str, str, str]] = []  # (kind or "2d", name, token)
    eps_of: dict[int, float] = {}  # raw index -> eps stated as ``ln:eps=1e-6``
    act_of: dict[int, str] = {}  # raw index -> an nn.RNN's nonlinearity stated as ``rnn2:relu``
    max_norm_of: dict[int, float | None] = {}  # raw index -> max_norm stated as ``emb:max_norm=1.0`` (or ``=none``)
    for tok in tokens:
        tok, stated, max_norm = split_max_norm(tok)
        if stated:
            max_norm_of[len(raw)] = max_norm
        tok, eps = split_eps(tok)
        if eps is not None:
            eps_of[len(raw)] = eps
        base, sep, act = tok.rpartition(":")
        if sep and act.lower() in ("tanh", "relu") and base.rstrip(".") in rnns:
            act_of[len(raw)], tok = act.lower(), base
        low = tok.lower()
        forced = None
        if ":" in tok and tok.split(":", 1)[0].lower() in _KIND_WORDS:
            forced, tok = tok.split(":", 1)
            forced = _KIND_WORDS[forced.lower()]
        name = tok[: -len(".weight")] if tok.endswith(".weight") else tok.rstrip(".")
        if forced is None and name not in mods and name not in rnns:
            if low in ACTIVATIONS:
                raw.append(("activation", low, tok))
            elif low.startswith("pool:") and low[5:] in POOLS:
                raw.append(("pool", low[5:], tok))
            elif low in ("dropout", "layernorm"):
                raw.append((low, "", tok))
            else:
                raise ArchitectureError(
                    f"chain step {tok!r} is neither a module in the weights ({', '.join(module_names(sd)) or 'none'}) "
                    f"nor an operation ({', '.join(ACTIVATIONS)}, pool:{'|'.join(POOLS)}, dropout, layernorm); "
                    "a module without weights (nn.Dropout, nn.ReLU, ...) is written as its operation"
                )
            continue
        if name in rnns:
            raw.append(("rnn", name, tok))
            continue
        p = f"{name}." if name else ""
        w = sd.get(f"{p}weight")
        if f"{p}running_mean" in sd:
            kind = "batchnorm"
        elif w is not None and w.ndim == 1 and forced in (None, "layernorm"):
            # a 1-d weight with a bias is a LayerNorm; alone it may as well be an nn.PReLU (weights (1,) or
            # (C,)), which would score as a LayerNorm with no word: the user says which
            if f"{p}bias" not in sd and forced is None:
                raise ArchitectureError(
                    f"chain step {tok!r}: {p}weight {tuple(w.shape)} with no bias could be an nn.LayerNorm(bias=False) "
                    f"or an nn.PReLU, which rnnjit does not run; if it is the LayerNorm, write layernorm:{name}"
                )
            kind = "layernorm"
        elif forced == "layernorm":
            raise ArchitectureError(
                f"chain step 'layernorm:{tok}': module {name!r} has no 1-d weight; it is not a LayerNorm"
            )
        elif w is not None and (w.ndim == 2 or (w.ndim == 3 and w.shape[2] == 1)):
            kind = forced or ("linear" if w.ndim == 3 or f"{p}bias" in sd else "2d")
        else:
            shapes = ", ".join(f"{k} {tuple(sd[k].shape)}" for k in _keys_under(sd, name)) or "no tensors"
            raise ArchitectureError(
                f"chain step {tok!r}: module {name!r} ({shapes}) is not an embedding, recurrent module, "
                "LayerNorm, BatchNorm1d, Linear or kernel-1 Conv1d; rnnjit cannot run it "
                "(attention, transformers and CNN front-ends are not supported)"
            )
        raw.append((kind, name, tok))

    for i in eps_of:
        if raw[i][0] not in ("layernorm", "batchnorm"):
            raise ArchitectureError(
                f"chain step {raw[i][2]!r}:eps=... gives an eps, but {raw[i][2]!r} is not a LayerNorm or BatchNorm1d"
            )
    steps: list[Step | None] = []
    for i, (kind, name, tok) in enumerate(raw):
        p = f"{name}." if name else ""
        if kind == "rnn":
            spec = infer_spec(sd, rnn_prefix=p)
            act = act_of.get(i, nonlinearity)
            if i in act_of and not spec.cell.startswith("rnn_"):
                raise ArchitectureError(
                    f"chain step '{tok}:{act_of[i]}' gives a nonlinearity, but {name!r} is an nn.{spec.cell.upper()}; "
                    "only nn.RNN has one"
                )
            if spec.cell.startswith("rnn_") and act:
                spec = infer_spec(sd, rnn_prefix=p, nonlinearity=act)
            steps.append(rnn_step(spec))
        elif kind in ("activation", "pool", "dropout"):
            steps.append(Step(kind, name or "dropout"))
        elif kind == "layernorm" and not name:
            steps.append(Step("layernorm", "", affine=False))
        elif kind == "layernorm":
            n = int(sd[f"{p}weight"].shape[0])
            steps.append(Step("layernorm", name, n, n, bias=f"{p}bias" in sd, affine=True))
        elif kind == "batchnorm":
            n = int(sd[f"{p}running_mean"].shape[0])
            steps.append(Step("batchnorm", name, n, n, affine=f"{p}weight" in sd))
        else:
            steps.append(None)  # linear / embedding: resolved below with the widths around them
    for i, (kind, name, tok) in enumerate(raw):
        if steps[i] is not None:
            continue
        p = f"{name}." if name else ""
        w = sd[f"{p}weight"]
        rows, cols = int(w.shape[0]), int(w.shape[1])
        if kind == "2d" and i == 0:
            nxt = _next_width(steps, i)
            emb_fits, lin_fits = nxt in (None, cols), nxt in (None, rows)
            if emb_fits and lin_fits:
                raise ArchitectureError(
                    f"chain step {tok!r} ({p}weight {tuple(w.shape)}, no bias) could be an nn.Embedding or a "
                    f"bias-free nn.Linear; say which: --chain 'embedding:{name},...' or 'linear:{name},...'"
                )
            kind = "embedding" if emb_fits else "linear"
        if kind == "embedding":
            if i:
                raise ArchitectureError(f"embedding {name!r} must come first in the chain (it reads token ids)")
            steps[i] = Step("embedding", name, rows, cols)
        else:
            steps[i] = Step("linear", name, cols, rows, bias=f"{p}bias" in sd)
    for i in max_norm_of:
        if steps[i].kind != "embedding":
            raise ArchitectureError(
                f"chain step {raw[i][2]!r}:max_norm=... gives a max_norm, but {raw[i][2]!r} is not an nn.Embedding"
            )
    chain = tuple(replace(s, eps=eps_of[i]) if i in eps_of else s for i, s in enumerate(steps))
    chain = tuple(replace(s, max_norm=max_norm_of[i]) if i in max_norm_of else s for i, s in enumerate(chain))
    check_chain(chain)
    return chain


def _split_option(token: str, key: str) -> tuple[str, str | None]:
    """``("ln:eps=1e-6", "eps")`` -> ``("ln", "1e-6")``; a token without ``:key=`` -> ``(token, None)``."""
    base, sep, opt = token.rpartition(":")
    opt = opt.strip()
    if not sep or not opt.lower().startswith(f"{key}="):
        return token, None
    return base, opt[len(key) + 1 :]


def _positive(token: str, raw: str, what: str) -> float:
    """``raw`` as a positive finite number, else the one-line error ``chain step TOKEN: WHAT``."""
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise ArchitectureError(f"chain step {token!r}: {what}")
    return value


def _module_name(base: str) -> str:
    """The module a chain token names: without a ``linear:``-style kind word, ``.weight`` or a trailing dot."""
    if ":" in base and base.split(":", 1)[0].lower() in _KIND_WORDS:
        base = base.split(":", 1)[1]
    return base[: -len(".weight")] if base.endswith(".weight") else base.rstrip(".")


def split_eps(token: str) -> tuple[str, float | None]:
    """``"ln:eps=1e-6"`` -> ``("ln", 1e-6)``; a token without ``:eps=`` is returned as it is."""
    base, raw = _split_option(token, "eps")
    if raw is None:
        return token, None
    return base, _positive(token, raw, f"eps must be a positive number, e.g. {base}:eps=1e-6")


def split_max_norm(token: str) -> tuple[str, bool, float | None]:
    """``"emb:max_norm=1.5"`` -> ``("emb", True, 1.5)``; ``"emb:max_norm=none"`` -> ``("emb", True, None)``
    (stated: no max_norm); a token without ``:max_norm=`` -> ``(token, False, None)``."""
    base, raw = _split_option(token, "max_norm")
    if raw is None:
        return token, False, None
    if raw.lower() == "none":
        return base, True, None
    what = f"max_norm must be a positive number (nn.Embedding(max_norm=...)) or none, e.g. {base}:max_norm=1.0"
    return base, True, _positive(token, raw, what)


def explicit_max_norm(tokens: Sequence[str] | None) -> set[str]:
    """Names of the chain's embeddings whose max_norm the tokens state (``emb:max_norm=1.0`` or ``=none``)."""
    return {_module_name(base) for base, stated, _ in map(split_max_norm, tokens or ()) if stated}


def explicit_nonlinearity(tokens: Sequence[str] | None) -> set[str]:
    """Names of the chain's modules whose nonlinearity the tokens state (``rnn2:relu``)."""
    out = set()
    for tok in tokens or ():
        base, sep, act = split_eps(tok)[0].rpartition(":")
        if sep and act.lower() in ("tanh", "relu"):
            out.add(base.rstrip("."))
    return out


def explicit_eps(tokens: Sequence[str] | None) -> set[str]:
    """Names of the chain's norm steps whose eps the tokens state (``layernorm`` for the parameter-free one)."""
    names = {_module_name(base) for base, eps in map(split_eps, tokens or ()) if eps is not None}
    return {"layernorm" if name.lower() == "layernorm" else name for name in names}


def _next_width(steps, i):
    for s in steps[i + 1 :]:
        if s is None:
            return None
        if s.kind == "rnn":
            return s.rnn.input_size
        if s.kind in ("linear", "batchnorm") or (s.kind == "layernorm" and s.name):
            return s.in_features
    return None


def check_chain(chain: Sequence[Step]) -> int:
    """Widths agree and the head makes sense; returns the output width."""
    try:
        chain_widths(chain)
    except ValueError as exc:
        raise ArchitectureError(f"{exc}; check the order of --chain / --head") from exc
    for i, step in enumerate(chain):
        if step.kind == "activation" and step.name in ("softmax", "log_softmax"):
            w = chain_widths(chain[:i]) if any(s.kind == "rnn" for s in chain[:i]) else None
            if w == 1:
                always = "1.0" if step.name == "softmax" else "0.0"
                raise ArchitectureError(
                    f"{step.name} over a single value gives {always} for every input; "
                    "for one logit use sigmoid (e.g. --head 'fc,sigmoid')"
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
            f"chains them, e.g. --chain '{suggest_chain(sd, [])}' (file order; add activations and pooling "
            "as the forward() does), or pick one with --rnn-prefix"
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
            f"pick one with --chain '{embs[0]},{spec.prefix[:-1]},...'"
        )
    tail = infer_head(sd, spec, head, exclude=embs)
    lead = (Step("embedding", embs[0], *(int(n) for n in sd[f"{embs[0]}.weight"].shape)),) if embs else ()
    chain = (*lead, rnn_step(spec), *tail)
    check_chain(chain)
    return chain
