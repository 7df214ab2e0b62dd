"""Find the state_dict inside a training checkpoint, and strip wrapper prefixes.

Checkpoints often wrap the weights: ``{"model": sd, "optimizer": ..., "epoch": 7}``,
``{"state_dict": sd}``, ``{"model_state_dict": sd}``, sometimes nested. The
rules, in order, at each level of dicts:

1. tensors directly in the dict: this is the state_dict (other values are skipped);
2. a conventional key (`CONVENTIONAL_KEYS`) holding tensors: descend into it;
3. exactly one value that is a dict of tensors only, or else exactly one dict
   holding tensors somewhere (optimizer/scheduler state aside): descend into it;
4. otherwise flatten every nested dict of tensors with dotted keys, leaving out
   optimizer/scheduler state.

Then a ``module.`` (DataParallel) or ``model.`` prefix is removed when every key has it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rnnjit.errors import WeightFileError
from rnnjit.formats.torch_pickle import LazyTensor

CONVENTIONAL_KEYS = (
    "state_dict", "model_state_dict", "model_state", "model", "net", "network",
    "module", "weights", "params",
)  # fmt: skip
# Values under keys containing these are training state, never model weights.
TRAINING_STATE = ("optim", "sched", "scaler")
PREFIXES = ("module.", "model.")


def is_tensor(value: Any) -> bool:
    return isinstance(value, (np.ndarray, LazyTensor))


def _holds_tensors(value: Any) -> bool:
    if is_tensor(value):
        return True
    return isinstance(value, Mapping) and any(_holds_tensors(v) for v in value.values())


def _is_state_dict(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(k, str) and is_tensor(v) for k, v in value.items())
    )


def _is_training_state(key: Any) -> bool:
    return isinstance(key, str) and any(t in key.lower() for t in TRAINING_STATE)


def _flatten(node: Mapping, prefix: str, out: dict[str, Any], skipped: list[str], source: str) -> None:
    for key, value in node.items():
        name = f"{prefix}{key}"
        nested_training_state = isinstance(value, Mapping) and _is_training_state(key)
        if not isinstance(key, str) or nested_training_state or not _holds_tensors(value):
            skipped.append(name)
        elif is_tensor(value):
            if name in out:
                raise WeightFileError(
                    f"{source}: flattening nested dicts gives the key {name!r} twice; "
                    "save the state_dict itself with torch.save(model.state_dict(), path)"
                )
            out[name] = value
        else:
            _flatten(value, name + ".", out, skipped, source)


def unwrap(obj: Any, source: str) -> tuple[dict[str, Any], str | None, list[str]]:
    """Return ``(flat, unwrapped, skipped)``.

    ``flat`` maps dotted string keys to tensors in file order, ``unwrapped`` is the
    dotted key path descended into (``"model"``) or None, ``skipped`` lists what
    was dropped (sibling keys such as ``"optimizer"``, non-tensor values).
    """
    if not isinstance(obj, Mapping):
        raise WeightFileError(
            f"{source} holds a {type(obj).__name__}, not a dict of tensors; "
            "save with torch.save(model.state_dict(), path)"
        )
    path: list[str] = []
    skipped: list[str] = []
    node: Mapping = obj
    seen = {id(obj)}
    while not any(is_tensor(v) for v in node.values()):
        child = next(
            (k for k in CONVENTIONAL_KEYS if isinstance(node.get(k), Mapping) and _holds_tensors(node[k])),
            None,
        )
        if child is None:
            holders = [
                k
                for k, v in node.items()
                if isinstance(k, str) and isinstance(v, Mapping) and not _is_training_state(k) and _holds_tensors(v)
            ]
            state_dicts = [k for k in holders if _is_state_dict(node[k])]
            if len(state_dicts) == 1:
                child = state_dicts[0]
            elif len(holders) == 1:
                child = holders[0]
            else:
                break
        prefix = ".".join(path + [""])
        skipped += [f"{prefix}{k}" for k in node if k != child]
        path.append(child)
        node = node[child]
        if id(node) in seen:
            raise WeightFileError(f"{source}: the checkpoint's dicts loop back at {'.'.join(path)!r} (corrupt file?)")
        seen.add(id(node))

    flat: dict[str, Any] = {}
    _flatten(node, "", flat, skipped, source)
    if not flat:
        keys = ", ".join(repr(k) for k in list(obj)[:8])
        raise WeightFileError(
            f"{source} holds no tensors (top-level keys: {keys or 'none'}); "
            "expected a state_dict, save with torch.save(model.state_dict(), path)"
        )
    return flat, (".".join(path) or None), skipped


def strip_prefix(sd: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Remove ``module.``/``model.`` while every key starts with it (``module.model.`` too)."""
    stripped = ""
    while True:
        p = next((p for p in PREFIXES if all(k.startswith(p) and len(k) > len(p) for k in sd)), None)
        if p is None or not sd:
            break
        sd = {k[len(p) :]: v for k, v in sd.items()}
        stripped += p
    return sd, (stripped or None)
