"""The schema of a bundle's ``__rnnjit__`` document, checked once at load, before anything reads it.

A bundle is a file someone may hand you. `check_document` walks the whole JSON
document against `SCHEMA` and raises one `BundleError` naming the first key
that is missing or has the wrong JSON type or an impossible value
(``chain[0].rnn.input_size`` of ``Infinity``, a norm's ``eps`` of ``-1``, a
``provenance`` that is a string, a ``reference`` whose ``x`` is not a
rectangular array of numbers). Keys the schema does not name are left alone,
so a newer writer's additions still load. `check_values` refuses weights that
would score NaN without being non-finite themselves (a negative
``running_var``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from rnnjit.errors import BundleError

Check = Callable[[Any], "str | None"]  # None when fine, else what was expected


def _int(lo: int) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= lo
        return None if ok else f"an integer >= {lo}"

    return check


def _is(*types: type, what: str) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, types) and not (isinstance(v, bool) and bool not in types)
        return None if ok else what

    return check


def _positive_number(v: Any) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
    return None if ok else "a positive finite number"


def _optional(check: Check) -> Check:
    def inner(v: Any) -> str | None:
        return None if v is None else check(v)

    return inner


def _list_of(check: Check, what: str) -> Check:
    def inner(v: Any) -> str | None:
        if not isinstance(v, list) or any(check(x) for x in v):
            return f"a list of {what}"
        return None

    return inner


_str = _is(str, what="a string")
_bool = _is(bool, what="true or false")
_strings = _list_of(_str, "strings")

RNN: dict[str, tuple[bool, Check]] = {  # key: (required, check)
    "cell": (True, _str),
    "input_size": (True, _int(1)),
    "hidden_size": (True, _int(1)),
    "num_layers": (False, _int(1)),
    "bidirectional": (False, _bool),
    "bias": (False, _bool),
    "proj_size": (False, _int(0)),
    "prefix": (False, _str),
}
STEP: dict[str, tuple[bool, Check]] = {
    "kind": (True, _str),
    "name": (True, _str),
    "in_features": (False, _int(0)),
    "out_features": (False, _int(0)),
    "bias": (False, _bool),
    "affine": (False, _bool),
    "eps": (False, _positive_number),
    "max_norm": (False, _optional(_positive_number)),
}
PROVENANCE: dict[str, tuple[bool, Check]] = {
    "source": (False, _optional(_str)),
    "sha256": (False, _optional(_str)),
    "source_format": (False, _optional(_str)),
    "unwrapped": (False, _optional(_str)),
    "stripped_prefix": (False, _optional(_str)),
    "dropped_keys": (False, _strings),
    "ignored_keys": (False, _strings),
    "non_weight_keys": (False, _strings),
    "skipped": (False, _strings),
    "placeholders": (False, _strings),
    "rnnjit_version": (False, _optional(_str)),
    "created": (False, _optional(_str)),
}


def _numbers(v: Any) -> str | None:
    try:
        arr = np.asarray(v, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        return "a rectangular array of numbers"
    return None if np.isfinite(arr).all() else "a rectangular array of finite numbers"


REFERENCE: dict[str, tuple[bool, Check]] = {
    "x": (True, _numbers),
    "lengths": (True, _list_of(_int(0), "non-negative integers")),
    "y": (True, _numbers),
    "output": (False, _str),
}
TOP: dict[str, tuple[bool, Check]] = {
    "format": (True, _str),
    "format_version": (True, _int(1)),
    "output": (False, _str),
    "dtype": (False, _str),
    "feature_names": (False, _optional(_strings)),
    "ignored": (False, _strings),
}


def _fail(path, key: str, value: Any, expected: str) -> BundleError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return BundleError(
        f"{path}: {CONFIG} key {key!r} is {shown}; expected {expected}; "
        "the bundle is damaged or was not written by rnnjit, re-create it with `rnnjit convert`"
    )


CONFIG = "__rnnjit__"


def _object(doc: Any, schema: Mapping[str, tuple[bool, Check]], where: str, path) -> Mapping[str, Any]:
    if not isinstance(doc, dict):
        raise _fail(path, where, doc, "a JSON object")
    for key, (required, check) in schema.items():
        name = f"{where}.{key}" if where else key
        if key not in doc:
            if required:
                raise BundleError(
                    f"{path}: {CONFIG} has no key {name!r}; the bundle is damaged, re-create it with `rnnjit convert`"
                )
            continue
        expected = check(doc[key])
        if expected:
            raise _fail(path, name, doc[key], expected)
    return doc


def _step(doc: Any, where: str, path) -> None:
    _object(doc, STEP, where, path)
    if doc.get("rnn") is not None:
        _object(doc["rnn"], RNN, f"{where}.rnn", path)


def check_document(config: Any, path) -> None:
    """Check the whole ``__rnnjit__`` document's structure and value types; raise `BundleError` naming the key."""
    _object(config, TOP, "", path)
    if config["format_version"] == 1:
        _object(config.get("rnn"), RNN, "rnn", path)
        head = config.get("head", [])
        if not isinstance(head, list):
            raise _fail(path, "head", head, "a list of steps")
        for i, s in enumerate(head):
            _step(s, f"head[{i}]", path)
    else:
        chain = config.get("chain")
        if not isinstance(chain, list) or not chain:
            raise _fail(path, "chain", chain, "a non-empty list of steps")
        for i, s in enumerate(chain):
            _step(s, f"chain[{i}]", path)
    if config.get("provenance") is not None:
        _object(config["provenance"], PROVENANCE, "provenance", path)
    if config.get("reference"):
        ref = _object(config["reference"], REFERENCE, "reference", path)
        x, lengths, y = np.asarray(ref["x"]), ref["lengths"], np.asarray(ref["y"])
        if x.ndim < 2 or x.shape[0] != len(lengths) or any(n > x.shape[1] for n in lengths) or (
            y.ndim < 1 or y.shape[0] != len(lengths)
        ):
            raise _fail(path, "reference", f"x {x.shape}, lengths {len(lengths)}, y {y.shape}",
                        "x (sequences, steps, ...), lengths (sequences,) and y (sequences, ...) that agree")


def check_values(chain, weights: Mapping[str, np.ndarray], path) -> None:
    """Weights that are finite but make the model score NaN: a BatchNorm's negative ``running_var``."""
    for step in chain:
        if step.kind != "batchnorm":
            continue
        key = f"{step.prefix}running_var"
        var = weights.get(key)
        if var is not None and (var < 0).any():
            i = int(np.flatnonzero(var < 0)[0])
            raise BundleError(
                f"{path}: key {key!r} holds a negative variance ({float(var[i]):.4g} at {i}); a BatchNorm's "
                "running_var is never negative, so the weights are damaged: re-convert the model"
            )
