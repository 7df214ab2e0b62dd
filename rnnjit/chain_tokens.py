"""How ``--chain`` is written: one parser turns a token into ``(name, kind, options)``.

``emb:max_norm=1.0``, ``ln:eps=1e-6``, ``rnn2:relu``, ``linear:fc``,
``pool:mean``, ``relu``, ``fc.weight``: the words, kind prefixes and options
are those the step-kind table declares (`rnnjit.kinds`), so a new kind's
token is read without a change here. `rnnjit.chain` and `rnnjit.infer` (the
``--head`` tokens) both read tokens with `parse_token`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from rnnjit.kinds import KINDS, Option


class Token(NamedTuple):
    """One ``--chain`` token: ``name`` (a module, or the step name of an operation: ``relu``, ``mean``),
    ``kind`` (None for a module whose weights tell it), ``options`` (option name -> value), ``text`` as written."""

    name: str
    kind: str | None
    options: dict[str, Any]
    text: str

    @property
    def operation(self) -> bool:
        """A step without weights (``relu``, ``pool:mean``, ``layernorm``), not a module of the file."""
        return self.kind is not None and not KINDS[self.kind].module(self)


def split_chain(chain: str | Sequence[str] | None) -> list[str] | None:
    """``"emb, lstm,fc"`` (or a list of tokens) -> ``["emb", "lstm", "fc"]``; None stays None."""
    if chain is None:
        return None
    tokens = chain.split(",") if isinstance(chain, str) else list(chain)
    return [t.strip() for t in tokens if t and t.strip()]


def _keyed_options() -> dict[str, Option]:
    out: dict[str, Option] = {}
    for entry in KINDS.values():
        for o in entry.options:
            out.setdefault(o.name, o)
    return out


def parse_token(token: str, modules: Collection[str] = ()) -> Token:
    """Read one ``--chain`` token: trailing options, a kind word, the module or operation it names.

    ``ln:eps=1e-6`` -> ``("ln", None, {"eps": 1e-6})``; ``rnn2:relu`` (``rnn2``
    among ``modules``) -> ``("rnn2", None, {"nonlinearity": "relu"})``;
    ``linear:fc`` -> ``("fc", "linear", {})``; ``pool:mean`` -> ``("mean", "pool", {})``;
    ``fc.weight`` -> ``("fc", None, {})``. A token naming neither a module
    among ``modules`` nor an operation comes back with kind None: the caller
    knows what the file holds and says so. Raises ValueError (the one-line
    message) for an option value that is not valid.
    """
    options = _keyed_options()
    rest, found = token, {}
    while True:  # ``:key=value`` options, last first
        base, sep, opt = rest.rpartition(":")
        key, eq, raw = opt.strip().partition("=")
        option = options.get(key.strip().lower()) if sep and eq else None
        if option is None or option.parse is None:
            break
        try:
            found[option.name] = option.parse(raw)
        except ValueError:
            raise ValueError(
                f"chain step {token!r}: {option.name} must be {option.must}, e.g. {base}:{option.name}={option.example}"
            ) from None
        rest = base
    base, sep, word = rest.rpartition(":")
    bare = next((o for o in options.values() if word.lower() in o.choices), None) if sep else None
    if bare is not None and _module_name(base) in modules:  # ``rnn2:relu``
        found[bare.name], rest = word.lower(), base
    forced = None
    head, sep, tail = rest.partition(":")
    if sep and head.lower() in KINDS and KINDS[head.lower()].kind_word:
        forced, rest = head.lower(), tail
    name = _module_name(rest)
    if forced is None and name not in modules:
        low = rest.lower()
        for entry in KINDS.values():
            if low in entry.words:
                return Token(entry.words[low], entry.kind, found, token)
    return Token(name, forced, found, token)


def with_options(step, tok: Token):
    """``step`` with the option values ``tok`` states; ValueError for an option its kind does not take."""
    entry = KINDS[step.kind]
    values = {}
    for name, value in tok.options.items():
        option = entry.option(name)
        if option is None:
            owners, label = _keyed_options()[name].owners, step.label()
            said = repr(tok.text) if isinstance(value, str) else f"{label!r}:{name}=..."
            article = "an" if name[0] in "aeiou" else "a"
            raise ValueError(f"chain step {said} gives {article} {name}, but {label!r} is not {owners}")
        if option.field is not None:
            values[option.field] = value
    return replace(step, **values) if values else step


def _module_name(text: str) -> str:
    """The module a token names: without ``.weight`` or a trailing dot."""
    return text[: -len(".weight")] if text.endswith(".weight") else text.rstrip(".")
