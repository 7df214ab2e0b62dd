"""Find the state_dict inside a training checkpoint, and strip wrapper prefixes.

Checkpoints often wrap the weights: ``{"model": sd, "optimizer": ..., "epoch": 7}``,
``{"state_dict": sd}``, ``{"model_state_dict": sd}``, sometimes nested. The
rules, in order, at each level of dicts:

1. tensors directly in the dict: this is the state_dict (other values are
   skipped), unless they are all 0-d (``"loss": tensor(0.3)`` in PyTorch's
   checkpoint tutorial) and a conventional key holds tensors;
2. a conventional key (`CONVENTIONAL_KEYS`) holding tensors: descend into it;
3. exactly one value that is a dict of tensors only, or else exactly one dict
   holding tensors somewhere (optimizer/scheduler state aside): descend into it;
4. otherwise flatten every nested dict of tensors with dotted keys, leaving out
   optimizer/scheduler state.

Objects rnnjit did not build (`rnnjit.formats.placeholder`) are skipped like
any other non-tensor value, except inside a state_dict, where one would stand
for a tensor saved in a form rnnjit cannot read: that is an error, never a
silently missing weight.

Then wrapper prefixes are removed while every key has one: ``module.``
(DataParallel, DistributedDataParallel, ``torch.optim.swa_utils.AveragedModel``),
``_orig_mod.`` (``torch.compile``) and ``model.``; an ``AveragedModel``'s
``n_averaged`` counter is not a weight and is dropped with its prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rnnjit.errors import WeightFileError
from rnnjit.formats.guard import printable
from rnnjit.formats.placeholder import PICKLED_MODULE, is_placeholder, looks_like_module, qualname
from rnnjit.formats.numpy_pickle import NumpyArray
from rnnjit.formats.torch_pickle import LazyTensor
from rnnjit.memory import MemoryBudget

CONVENTIONAL_KEYS = (
    "state_dict", "model_state_dict", "model_state", "model", "net", "network",
    "module", "weights", "params",
)  # fmt: skip
# Values under keys containing these are training state, never model weights.
TRAINING_STATE = ("optim", "sched", "scaler")
PREFIXES = ("module.", "_orig_mod.", "model.")
# AveragedModel(model).state_dict() is {"n_averaged": tensor(k), "module.<key>": ...}.
AVERAGED_MODEL_COUNTER = "n_averaged"
# Flattening visits each dict once per path to it; shared dicts (a pickle's
# memo) could make that exponential, so the walk is bounded.
MAX_FLAT_ENTRIES = 200_000


def is_tensor(value: Any) -> bool:
    return isinstance(value, (np.ndarray, LazyTensor, NumpyArray))


class _Holders:
    """Which dicts hold a tensor at any depth, each dict examined once (pickles share and loop dicts)."""

    def __init__(self) -> None:
        self.memo: dict[int, bool] = {}

    def __call__(self, value: Any) -> bool:
        if is_tensor(value):
            return True
        if not isinstance(value, Mapping):
            return False
        if id(value) in self.memo:
            return self.memo[id(value)]
        # Iterative post-order walk: a dict nested 100,000 deep must not hit the recursion limit.
        stack: list[tuple[Mapping, bool]] = [(value, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                self.memo[id(node)] = any(
                    is_tensor(v) or (isinstance(v, Mapping) and self.memo.get(id(v), False)) for v in node.values()
                )
                continue
            if id(node) in self.memo:
                continue
            self.memo[id(node)] = False  # in progress: a loop back counts as holding nothing
            stack.append((node, True))
            stack.extend((v, False) for v in node.values() if isinstance(v, Mapping) and id(v) not in self.memo)
        return self.memo[id(value)]


def _is_state_dict(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(k, str) and is_tensor(v) for k, v in value.items())
    )


def _is_training_state(key: Any) -> bool:
    return isinstance(key, str) and any(t in key.lower() for t in TRAINING_STATE)


def _check_no_placeholder(node: Mapping, prefix: str, source: str) -> None:
    """A placeholder next to tensors stands for a weight rnnjit cannot read: refuse, never drop it."""
    for key, value in node.items():
        if is_placeholder(value) and not (isinstance(key, str) and key.endswith("_extra_state")):
            raise WeightFileError(
                f"{source}: entry {printable(f'{prefix}{key}', 80)} of the state_dict is pickled as {qualname(value)}, "
                "not as a plain tensor, and rnnjit does not run code from a weight file; "
                "save plain tensors: torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, path)"
            )


def _flatten(
    node: Mapping,
    prefix: str,
    out: dict[str, Any],
    skipped: list[str],
    source: str,
    holds: _Holders,
    seen: set[int],
    budget: MemoryBudget,
) -> None:
    # A dict met again (pickles share objects) is flattened once: shared
    # levels would otherwise multiply into 2**depth keys.
    seen.add(id(node))
    if any(is_tensor(v) for v in node.values()):
        _check_no_placeholder(node, prefix, source)
    for key, value in node.items():
        name = f"{prefix}{key}"
        # dotted names grow with depth, and a pickle can repeat one long key at every level
        budget.take(len(name), "the checkpoint's key names")
        if len(out) + len(skipped) > MAX_FLAT_ENTRIES:
            raise WeightFileError(f"{source}: the checkpoint holds more than {MAX_FLAT_ENTRIES} entries (corrupt file?)")
        nested_training_state = isinstance(value, Mapping) and _is_training_state(key)
        if not isinstance(key, str) or nested_training_state or not holds(value) or id(value) in seen:
            skipped.append(name)
        elif is_tensor(value):
            if name in out:
                raise WeightFileError(
                    f"{source}: flattening nested dicts gives the key {printable(name, 120)!r} twice; "
                    "save the state_dict itself with torch.save(model.state_dict(), path)"
                )
            out[name] = value
        else:
            _flatten(value, name + ".", out, skipped, source, holds, seen, budget)


def _conventional_child(node: Mapping, holds: _Holders) -> str | None:
    return next((k for k in CONVENTIONAL_KEYS if isinstance(node.get(k), Mapping) and holds(node[k])), None)


def _ndim(value: Any) -> int:
    return len(value.size) if isinstance(value, LazyTensor) else value.ndim


def _only_scalars(node: Mapping) -> bool:
    tensors = [v for v in node.values() if is_tensor(v)]
    return bool(tensors) and all(_ndim(v) == 0 for v in tensors)


_MODEL_MODULES = ("torch.nn.", "__main__.", "__torch__.", "torch.jit.")


def _no_tensors(obj: Any, source: str, placeholders: list[str]) -> WeightFileError:
    models = [p for p in placeholders if p.startswith(_MODEL_MODULES) or PICKLED_MODULE in p]
    if is_placeholder(obj):
        what = f"a pickled {qualname(obj)} object, not a dict of tensors"
        if qualname(obj).startswith(_MODEL_MODULES) or looks_like_module(obj):
            what = f"a whole pickled model ({qualname(obj)}), not a state_dict"
    elif isinstance(obj, Mapping):
        keys = ", ".join(printable(repr(k), 60) for k in list(obj)[:8])
        what = f"no tensors (top-level keys: {keys or 'none'})"
        if models:
            what += f"; it holds a whole pickled model: {models[0]}"
        elif placeholders:
            what += f"; objects set aside: {', '.join(placeholders[:3])}"
    else:
        what = f"a {type(obj).__name__}, not a dict of tensors"
    fix = "save with torch.save(model.state_dict(), path)"
    if any("multiarray._reconstruct" in p for p in placeholders):
        fix += "; numpy arrays pickled into a .pth are not read, save those with np.savez(path, **arrays)"
    return WeightFileError(f"{source} holds {what}; expected a state_dict, {fix}")


def unwrap(
    obj: Any, source: str, placeholders: list[str] | None = None, budget: MemoryBudget | None = None
) -> tuple[dict[str, Any], str | None, list[str]]:
    """Return ``(flat, unwrapped, skipped)``.

    ``flat`` maps dotted string keys to tensors in file order, ``unwrapped`` is the
    dotted key path descended into (``"model"``) or None, ``skipped`` lists what
    was dropped (sibling keys such as ``"optimizer"``, non-tensor values).
    ``placeholders`` (as `rnnjit.formats.placeholder.find` lists them) only
    make the error for a file without tensors more precise.
    """
    placeholders = placeholders or []
    budget = budget or MemoryBudget(source)
    if not isinstance(obj, Mapping):
        raise _no_tensors(obj, source, placeholders)
    holds = _Holders()
    path: list[str] = []
    skipped: list[str] = []
    node: Mapping = obj
    seen = {id(obj)}
    while not any(is_tensor(v) for v in node.values()) or (_only_scalars(node) and _conventional_child(node, holds)):
        child = _conventional_child(node, holds)
        if child is None:
            holders = [
                k
                for k, v in node.items()
                if isinstance(k, str) and isinstance(v, Mapping) and not _is_training_state(k) and holds(v)
            ]
            state_dicts = [k for k in holders if _is_state_dict(node[k])]
            if len(state_dicts) == 1:
                child = state_dicts[0]
            elif len(holders) == 1:
                child = holders[0]
            else:
                break
        prefix = ".".join(path + [""])
        budget.take(len(prefix) * len(node), "the checkpoint's key names")
        skipped += [f"{prefix}{k}" for k in node if k != child]
        path.append(child)
        node = node[child]
        if id(node) in seen:
            raise WeightFileError(
                f"{source}: the checkpoint's dicts loop back at {printable('.'.join(path), 120)!r} (corrupt file?)"
            )
        seen.add(id(node))

    flat: dict[str, Any] = {}
    _flatten(node, "", flat, skipped, source, holds, set(), budget)
    if not flat:
        raise _no_tensors(obj, source, placeholders)
    return flat, (".".join(path) or None), skipped


def _is_averaged_model(sd: dict[str, Any]) -> bool:
    counter = sd.get(AVERAGED_MODEL_COUNTER)
    rest = [k for k in sd if k != AVERAGED_MODEL_COUNTER]
    return is_tensor(counter) and _ndim(counter) == 0 and bool(rest) and all(k.startswith("module.") for k in rest)


def strip_prefix(sd: dict[str, Any]) -> tuple[dict[str, Any], str | None, list[str]]:
    """Remove wrapper prefixes while every key starts with one (``module._orig_mod.`` too).

    Returns ``(state_dict, stripped, dropped)``: ``dropped`` is ``["n_averaged"]``
    for an ``AveragedModel``'s state_dict, else empty.
    """
    dropped: list[str] = []
    if _is_averaged_model(sd):
        sd = {k: v for k, v in sd.items() if k != AVERAGED_MODEL_COUNTER}
        dropped.append(AVERAGED_MODEL_COUNTER)
    stripped = ""
    while True:
        p = next((p for p in PREFIXES if all(k.startswith(p) and len(k) > len(p) for k in sd)), None)
        if p is None or not sd:
            break
        sd = {k[len(p) :]: v for k, v in sd.items()}
        stripped += p
    return sd, (stripped or None), dropped
