"""Which state_dict keys belong to which module, which a chain uses, and what the others probably are.

`account` is how ``convert`` refuses a tensor no chain step uses (unless its
module was ``--ignore``d): one line naming the module, a guess of what it is
("ln.weight, ln.bias (a LayerNorm?)") and the ``--chain``/``--ignore`` that
fixes it. `check_supported` refuses modules rnnjit never runs (attention,
convolutions with a kernel wider than 1) before any chain is built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rnnjit.errors import ArchitectureError
from rnnjit.infer import infer_spec
from rnnjit.kinds import KINDS
from rnnjit.spec import Step, input_width


def module_of(key: str) -> str:
    """The module a state_dict key belongs to (``"encoder.lstm"`` for ``encoder.lstm.weight_ih_l0``)."""
    return key.rsplit(".", 1)[0] if "." in key else ""


def modules(sd: Mapping[str, np.ndarray]) -> dict[str, list[str]]:
    """Module name -> its keys, in file order (``""`` for keys of a module saved by itself)."""
    out: dict[str, list[str]] = {}
    for key in sd:
        out.setdefault(module_of(key), []).append(key)
    return out


def module_names(sd) -> list[str]:
    return [m for m in modules(sd) if not all(_non_weight(k) for k in modules(sd)[m])]


def suggest_chain(sd: Mapping[str, np.ndarray], chain: Sequence[Step], extra: Sequence[str] = ()) -> str:
    """An example ``--chain``: the chain's modules and ``extra`` modules in file order,
    parameter-free steps kept after the module they follow."""
    order = {m: i for i, m in enumerate(modules(sd))}
    groups: list[tuple[int, list[str]]] = []
    lead: list[str] = []
    for step in chain:
        if not KINDS[step.kind].module(step):
            (groups[-1][1] if groups else lead).append(step.label())
        else:
            groups.append((order.get(step.name, len(order)), [step.label()]))
    names = {g[1][0] for g in groups}
    if not chain:
        extra = [m for m in module_names(sd)]
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
        rnn = next((s.rnn for s in chain if KINDS[s.kind].recurrent), None)
        if f"{p}bias" not in sd and rnn is not None and w.shape[1] == rnn.input_size \
                and not KINDS[chain[0].kind].reads_tokens:
            return "an Embedding"
        tail = [s for s in chain if s.kind == "linear" or KINDS[s.kind].recurrent]
        if tail and tail[-1].kind == "linear" and w.shape[1] == tail[-1].out_features:
            return f"a Linear after {tail[-1].name!r}, where the head stops"
        return "a Linear"
    return "an unsupported module"


def _guess_loose(w, chain: Sequence[Step]) -> str:
    """What a tensor registered on the model itself (no module) may be, from its shape."""
    shape = tuple(np.shape(w))
    for r in (s.rnn for s in chain if KINDS[s.kind].recurrent):
        ld = r.num_layers * r.num_directions
        if shape in ((ld, 1, r.h_out), (ld, r.h_out), (ld, 1, r.hidden_size), (ld, r.hidden_size)):
            return "a learned initial state"
    if shape == (input_width(chain),):
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
        drop = f"ignore={_enclosing_modules(sd, list(found))!r}"
        raise ArchitectureError(
            f"{source}: module {name!r} is {what}{more}, which rnnjit does not run: it scores embeddings, "
            "RNN/LSTM/GRU, pooling, LayerNorm/BatchNorm1d, linear layers and kernel-1 Conv1d; if the model's "
            f"forward() does not use it, drop it with {drop}"
        )


def _enclosing_modules(sd: Mapping[str, np.ndarray], modules: Sequence[str]) -> list[str]:
    """The fewest modules to ``--ignore`` that hold ``modules``: a top-level module (a CNN front-end with its
    convolutions and norms) when it holds no recurrent module, else each module itself."""
    out: dict[str, None] = {}
    for m in modules:
        top = m.split(".")[0]
        rnn_inside = any(k.startswith(f"{top}.") and "weight_ih_l" in k for k in sd)
        out[m if rnn_inside else top] = None
    return list(out)


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
                f"ignore={name!r} matches no tensor; modules in {source}: {', '.join(module_names(sd)) or 'none'}"
            )
        clash = [k for k in keys if k in used]
        if clash:
            raise ArchitectureError(
                f"ignore={name!r} would drop {clash[0]!r}, which the chain uses; remove it from ignore= or the chain"
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
        drop = f"ignore={list(unused)!r}"
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
    drop = f"ignore={names!r}"
    has_linear_unused = any("Linear" in _guess(sd, m, k, chain) for m, k in by_module.items())
    if not any(s.kind == "linear" for s in chain) and has_linear_unused:
        raise ArchitectureError(
            f"{source}: the chain {shown!r} has no head, so raw recurrent outputs would be scored, but the file "
            f"holds {'; '.join(parts)}; add the head, e.g. head='{names[0]}' (with its activation, e.g. "
            f"head='{names[0]},sigmoid'), or score raw outputs on purpose with {drop}"
        )
    raise ArchitectureError(
        f"{source}: {len(unused)} tensor{'s are' if len(unused) != 1 else ' is'} not used by the chain {shown!r}: "
        f"{'; '.join(parts)}; scores would differ from the PyTorch model; add them to the chain, e.g. "
        f"chain='{suggest_chain(sd, chain, names)}', or drop them on purpose with {drop}"
    )
