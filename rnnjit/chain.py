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
from rnnjit.spec import ACTIVATIONS, POOLS, Step, chain_widths, rnn_step

_KIND_WORDS = {"embedding": "embedding", "linear": "linear", "layernorm": "layernorm"}


def module_of(key: str) -> str:
    """The module a state_dict key belongs to (``"encoder.lstm"`` for ``encoder.lstm.weight_ih_l0``)."""
    return key.rsplit(".", 1)[0] if "." in key else ""


def modules(sd: Mapping[str, np.ndarray]) -> dict[str, list[str]]:
    """Module name -> its keys, in file order (``""`` for keys of a module saved by itself)."""
    out: dict[str, list[str]] = {}
    for key in sd:
        out.setdefault(module_of(key), []).append(key)
    return out


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
    for tok in tokens:
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
                    f"chain step {tok!r} is neither a module in the weights ({', '.join(_module_names(sd)) or 'none'}) "
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
    chain = tuple(replace(s, eps=eps_of[i]) if i in eps_of else s for i, s in enumerate(steps))
    check_chain(chain)
    return chain


def split_eps(token: str) -> tuple[str, float | None]:
    """``"ln:eps=1e-6"`` -> ``("ln", 1e-6)``; a token without ``:eps=`` is returned as it is."""
    base, sep, opt = token.rpartition(":")
    if not sep or not opt.strip().lower().startswith("eps="):
        return token, None
    try:
        eps = float(opt.strip()[4:])
    except ValueError:
        eps = -1.0
    if not eps > 0 or eps != eps or eps == float("inf"):
        raise ArchitectureError(f"chain step {token!r}: eps must be a positive number, e.g. {base}:eps=1e-6")
    return base, eps


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
    out = set()
    for tok in tokens or ():
        base, eps = split_eps(tok)
        if eps is not None:
            if ":" in base and base.split(":", 1)[0].lower() in _KIND_WORDS:
                base = base.split(":", 1)[1]
            name = base[: -len(".weight")] if base.endswith(".weight") else base.rstrip(".")
            out.add("layernorm" if name.lower() == "layernorm" else name)
    return out


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


def _module_names(sd) -> list[str]:
    return [m for m in modules(sd) if not all(_non_weight(k) for k in modules(sd)[m])]


def suggest_chain(sd: Mapping[str, np.ndarray], chain: Sequence[Step], extra: Sequence[str] = ()) -> str:
    """An example ``--chain``: the chain's modules and ``extra`` modules in file order,
    parameter-free steps kept after the module they follow."""
    order = {m: i for i, m in enumerate(modules(sd))}
    groups: list[tuple[int, list[str]]] = []
    lead: list[str] = []
    for step in chain:
        if step.kind in ("activation", "pool", "dropout") or (step.kind == "layernorm" and not step.name):
            (groups[-1][1] if groups else lead).append(step.label())
        else:
            groups.append((order.get(step.name, len(order)), [step.label()]))
    names = {g[1][0] for g in groups}
    if not chain:
        extra = [m for m in _module_names(sd)]
    for m in extra:
        if m not in names:
            groups.append((order.get(m, len(order)), [m or "''"]))
    groups.sort(key=lambda g: g[0])
    return ",".join(lead + [t for _, toks in groups for t in toks])


def _non_weight(key: str) -> bool:
    last = key.rsplit(".", 1)[-1]
    return last in ("num_batches_tracked", "n_averaged")


def used_keys(chain: Sequence[Step]) -> list[str]:
    keys: list[str] = []
    for step in chain:
        keys.extend(step.expected_shapes())
    return keys


def _guess(sd, name: str, keys: list[str], chain: Sequence[Step]) -> str:
    p = f"{name}." if name else ""
    if f"{p}weight_ih_l0" in sd:
        try:
            cell = infer_spec(sd, rnn_prefix=p).cell.split("_")[0].upper()
            return f"{'a' if cell == 'GRU' else 'an'} {cell}"
        except ArchitectureError:
            return "a recurrent module"
    if f"{p}running_mean" in sd:
        return "a BatchNorm1d"
    if any(word in name.lower() for word in ("loss", "criterion")):  # nn.CrossEntropyLoss(weight=...) etc.
        return "a loss function's weights, unused at inference"
    w = sd.get(f"{p}weight")
    if w is None:
        return "a buffer"
    if w.ndim == 1:
        return "a LayerNorm" if f"{p}bias" in sd else "a LayerNorm without bias, or a PReLU"
    if w.ndim == 3:
        return "a Conv1d"
    if w.ndim == 2:
        rnn = next((s.rnn for s in chain if s.kind == "rnn"), None)
        if f"{p}bias" not in sd and rnn is not None and w.shape[1] == rnn.input_size and chain[0].kind != "embedding":
            return "an Embedding"
        tail = [s for s in chain if s.kind in ("linear", "rnn")]
        if tail and tail[-1].kind == "linear" and w.shape[1] == tail[-1].out_features:
            return f"a Linear after {tail[-1].name!r}, where the head stops"
        return "a Linear"
    return "an unsupported module"


def _guess_loose(w, chain: Sequence[Step]) -> str:
    """What a tensor registered on the model itself (no module) may be, from its shape."""
    shape = tuple(np.shape(w))
    for s in chain:
        if s.kind == "rnn":
            r = s.rnn
            ld = r.num_layers * r.num_directions
            if shape in ((ld, 1, r.h_out), (ld, r.h_out), (ld, 1, r.hidden_size), (ld, r.hidden_size)):
                return "a learned initial state"
    first = next((s for s in chain if s.kind != "activation"), None)
    if first is not None and first.kind == "rnn" and shape == (first.rnn.input_size,):
        return "input statistics"
    return "a tensor of the model itself"


def check_supported(sd: Mapping[str, np.ndarray], ignore: Sequence[str] = (), *, source: str = "the file") -> None:
    """Refuse modules rnnjit cannot run (attention, convolutions wider than one step) unless ignored."""
    ignored = set(ignored_keys(sd, ignore))
    found: dict[str, str] = {}
    for key, w in sd.items():
        if key in ignored:
            continue
        if key.endswith("in_proj_weight"):
            found.setdefault(module_of(key), "attention (nn.MultiheadAttention or a transformer layer)")
        elif key.endswith(".weight") and getattr(w, "ndim", 0) >= 3 and not (w.ndim == 3 and w.shape[2] == 1):
            k = "x".join(str(n) for n in w.shape[2:])
            found.setdefault(module_of(key), f"a convolution with kernel size {k}")
    if found:
        name, what = next(iter(found.items()))
        more = f" (and {', '.join(list(found)[1:])})" if len(found) > 1 else ""
        raise ArchitectureError(
            f"{source}: module {name!r} is {what}{more}, which rnnjit does not run: it scores embeddings, "
            "RNN/LSTM/GRU, pooling, LayerNorm/BatchNorm1d, linear layers and kernel-1 Conv1d; if the model's "
            f"forward() does not use it, drop it with --ignore {name}"
        )


def unused_keys(sd: Mapping[str, np.ndarray], chain: Sequence[Step], ignored_keys=()) -> tuple[list[str], list[str]]:
    """``(unused, non_weight)``: tensors no step uses and that are not ignored; entries that are no weights."""
    used = set(used_keys(chain))
    non_weight = [k for k in sd if _non_weight(k) and k not in used]
    skip = used | set(ignored_keys) | set(non_weight)
    return [k for k in sd if k not in skip], non_weight


def ignored_keys(sd: Mapping[str, np.ndarray], names: Sequence[str]) -> list[str]:
    """Keys under the modules ``names`` (state_dict prefixes)."""
    names = [n.strip().rstrip(".") for n in names]
    return [k for k in sd if any(k == n or k.startswith(f"{n}.") for n in names)]


def account(sd: Mapping[str, np.ndarray], chain: Sequence[Step], ignore: Sequence[str] = (), *, source: str = "the file"):
    """Every tensor is used by a step, ignored on purpose, or not a weight; else `ArchitectureError`.

    Returns ``(ignored_keys, non_weight_keys)``.
    """
    used = set(used_keys(chain))
    ignored: list[str] = []
    for name in ignore:
        name = name.strip().rstrip(".")
        keys = [k for k in sd if k == name or k.startswith(f"{name}.")]
        if not keys:
            raise ArchitectureError(
                f"--ignore {name!r} matches no tensor; modules in {source}: {', '.join(_module_names(sd)) or 'none'}"
            )
        clash = [k for k in keys if k in used]
        if clash:
            raise ArchitectureError(
                f"--ignore {name!r} would drop {clash[0]!r}, which the chain uses; remove it from --ignore or the chain"
            )
        ignored.extend(keys)
    unused, non_weight = unused_keys(sd, chain, ignored)
    if not unused:
        return ignored, non_weight
    shown = ",".join(s.label() for s in chain)
    loose = [k for k in unused if "." not in k]  # nn.Parameter / register_buffer on the model itself
    if loose:
        parts = [f"{k} {tuple(np.shape(sd[k]))} ({_guess_loose(sd[k], chain)}?)" for k in loose]
        in_modules = [k for k in unused if "." in k]
        drop = " ".join(f"--ignore {k}" for k in unused)
        raise ArchitectureError(
            f"{source}: {len(unused)} tensor{'s are' if len(unused) != 1 else ' is'} not used by the chain {shown!r}: "
            f"{'; '.join(parts)}{' and ' + ', '.join(in_modules) if in_modules else ''}; "
            "tensors of the model itself are used by forward() in ways the weights do not show: give a learned "
            "initial state as the h0/c0 columns, apply input statistics to the data before scoring; if forward() "
            f"does not use them, drop them with {drop}"
        )
    by_module: dict[str, list[str]] = {}
    for k in unused:
        by_module.setdefault(module_of(k), []).append(k)
    parts = [f"{', '.join(keys)} ({_guess(sd, m, keys, chain)}?)" for m, keys in by_module.items()]
    names = [m for m in by_module]
    drop = " ".join(f"--ignore {m or repr('')}" for m in names)
    has_linear_unused = any("Linear" in _guess(sd, m, k, chain) for m, k in by_module.items())
    if not any(s.kind == "linear" for s in chain) and has_linear_unused:
        raise ArchitectureError(
            f"{source}: the chain {shown!r} has no head, so raw recurrent outputs would be scored, but the file "
            f"holds {'; '.join(parts)}; add the head, e.g. --head '{names[0]}' (with its activation, e.g. "
            f"'{names[0]},sigmoid'), or score raw outputs on purpose with {drop}"
        )
    raise ArchitectureError(
        f"{source}: {len(unused)} tensor{'s are' if len(unused) != 1 else ' is'} not used by the chain {shown!r}: "
        f"{'; '.join(parts)}; scores would differ from the PyTorch model; add them to the chain, e.g. "
        f"--chain '{suggest_chain(sd, chain, names)}', or drop them on purpose with {drop}"
    )
