"""Inert stand-ins for the pickle globals rnnjit does not know.

A training checkpoint pickles more than tensors: ``argparse.Namespace``, numpy
scalars, ``pathlib`` paths, the user's own dataclasses and enums. rnnjit cannot
import or call any of them (that is how a pickle runs code), so each such
global becomes a `Placeholder` subclass that only records the ``module.name``
it stands for. What pickle does with it stays plain data:

- REDUCE ``cls(*args)`` and NEWOBJ ``cls.__new__(cls, *args)`` build an
  instance that keeps ``args``/``kwargs`` and calls nothing;
- BUILD ``__setstate__(state)`` keeps ``state``;
- APPENDS/SETITEMS (``append``/``extend``/``__setitem__``) keep the items.

An instance is not callable, not iterable, not a mapping and has no numeric
conversions, so no allow-listed stand-in (``OrderedDict(x)``, ``set(x)``,
``_rebuild_tensor_v2(x, ...)``) can turn it into anything; in particular it
never becomes a weight: `rnnjit.formats.checkpoint` refuses a placeholder that
sits among the tensors of a state_dict. `find` lists where placeholders sit,
for ``info["placeholders"]``.

Safety does not depend on the module names: a placeholder for ``os.system``
would be as inert as one for ``argparse.Namespace``. Globals that only an
attack uses (`is_hostile`) are still refused outright, so such a file fails
loudly instead of loading with a note.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rnnjit.errors import WeightFileError
from rnnjit.formats.guard import printable

# Modules (and their submodules) that run code, spawn processes or touch
# files: never part of an honest checkpoint. Not ``types`` or ``io``:
# ``types.SimpleNamespace`` is a common config object.
HOSTILE_MODULES = (
    "os", "posix", "nt", "subprocess", "sys", "importlib", "shutil", "socket",
    "pickle", "_pickle", "cPickle", "marshal", "ctypes", "_ctypes", "runpy",
    "code", "codeop", "pty", "webbrowser", "commands", "multiprocessing",
    "asyncio", "signal", "tempfile",
)  # fmt: skip
# Not getattr: enum.pickle_by_enum_name pickles a member as getattr(cls, name),
# and a placeholder for it is as inert as any other.
HOSTILE_BUILTINS = frozenset(
    "eval exec compile open __import__ setattr delattr globals locals vars "
    "input breakpoint exit quit help apply execfile file reload".split()
)
# A pickle names each global once; thousands of distinct ones is an attack
# on memory, not a checkpoint.
MAX_PLACEHOLDER_TYPES = 10_000


def is_hostile(module: str, name: str) -> bool:
    """True for globals only an attack pickles (``os.system``, ``builtins.eval``, ...)."""
    if module == "builtins":
        return name in HOSTILE_BUILTINS
    return any(module == m or module.startswith(m + ".") for m in HOSTILE_MODULES)


class Placeholder:
    """An object rnnjit did not build: the global it stood for and the plain data pickle gave it."""

    # Underscored: allow-listed stand-ins probe protocol names (OrderedDict(x)
    # looks for x.keys and x.items and calls them), so no data sits under one.
    __slots__ = ("_args", "_kwargs", "_state", "_items")
    qualname = "?"  # ``module.name`` of the global, set on each subclass

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:
        self = object.__new__(cls)
        self._args, self._kwargs, self._state, self._items = args, kwargs, None, []
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # REDUCE calls cls(*args): everything was kept by __new__

    def __setstate__(self, state: Any) -> None:
        self._state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self._items.append((key, value))

    def append(self, value: Any) -> None:
        self._items.append(value)

    def extend(self, values: Any) -> None:
        if not isinstance(values, (list, tuple)):
            raise WeightFileError("the pickle extends a placeholder with a non-list (corrupt file?)")
        self._items.extend(values)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise WeightFileError(
            f"the pickle calls an instance of {self.qualname}, which rnnjit does not build; "
            "nothing from a weight file is executed (corrupt or hostile file?)"
        )

    def __repr__(self) -> str:
        return f"<placeholder for {self.qualname}>"


class PlaceholderTypes:
    """One `Placeholder` subclass per global, created on first use (never imported)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.types: dict[str, type[Placeholder]] = {}

    def get(self, module: str, name: str) -> type[Placeholder]:
        qualname = printable(f"{module}.{name}")  # STACK_GLOBAL names may hold newlines
        cls = self.types.get(qualname)
        if cls is None:
            if len(self.types) >= MAX_PLACEHOLDER_TYPES:
                raise WeightFileError(
                    f"{self.source}: the pickle names more than {MAX_PLACEHOLDER_TYPES} unknown globals (corrupt file?)"
                )
            # The class name is for repr only; nothing resolves it.
            cls = self.types[qualname] = type("Placeholder", (Placeholder,), {"__slots__": (), "qualname": qualname})
        return cls


def is_placeholder(value: Any) -> bool:
    """A placeholder instance, or a placeholder class stored as a value (``{"cls": MyModel}``)."""
    return isinstance(value, Placeholder) or (isinstance(value, type) and issubclass(value, Placeholder))


def qualname(value: Any) -> str:
    return value.qualname


PICKLED_MODULE = "a pickled nn.Module"


def looks_like_module(value: Any) -> bool:
    """A placeholder whose pickled ``__dict__`` is an ``nn.Module``'s: ``torch.save(model)``."""
    state = value._state if isinstance(value, Placeholder) else None
    return isinstance(state, dict) and "_parameters" in state and "_modules" in state


# Enough to tell the user what was set aside; the rest is counted.
MAX_LISTED = 50


def _worth_a_look(value: Any) -> bool:
    # Only containers and placeholders: a list of a million ints gets no paths built.
    return is_placeholder(value) or isinstance(value, (Mapping, list, tuple, set, frozenset))


# A path is built only for a listed placeholder, from links (parent link, piece):
# building every container's dotted path would cost depth x key length each.
_Link = tuple  # (parent _Link | None, piece: str)


def _path(link: _Link | None, limit: int = 160) -> str:
    pieces: list[str] = []
    while link is not None:
        link, piece = link
        pieces.append(printable(piece, 40))
        if sum(map(len, pieces)) > limit:
            pieces.append("...")
            break
    return "".join(reversed(pieces)).lstrip(".")


def find(obj: Any) -> list[str]:
    """``"argparse.Namespace (at 'args')"`` for each placeholder reachable through dicts, lists, tuples, sets.

    Iterative (a hostile pickle can nest past the recursion limit) and each
    container is visited once (pickles can share and loop objects). The
    inside of a placeholder is not searched: it is one object set aside.
    Time and memory are linear in the number of containers, whatever the
    length of their keys.
    """
    found: list[str] = []
    total = 0
    seen: set[int] = set()
    stack: list[tuple[_Link | None, Any]] = [(None, obj)]
    while stack:
        link, value = stack.pop()
        if is_placeholder(value):
            total += 1
            if len(found) < MAX_LISTED:
                where = f"at {_path(link)!r}" if link else "the whole file"
                if looks_like_module(value):
                    where += f", {PICKLED_MODULE}"
                found.append(f"{qualname(value)} ({where})")
            continue
        if id(value) in seen:
            continue
        if isinstance(value, Mapping):
            seen.add(id(value))
            children = [((link, f".{k}"), v) for k, v in value.items() if _worth_a_look(v)]
            children += [((link, "[key]"), k) for k in value if is_placeholder(k)]
        elif isinstance(value, (list, tuple)):
            seen.add(id(value))
            children = [((link, f"[{i}]"), v) for i, v in enumerate(value) if _worth_a_look(v)]
        elif isinstance(value, (set, frozenset)):
            seen.add(id(value))
            children = [((link, "{...}"), v) for v in value if _worth_a_look(v)]
        else:
            continue
        stack.extend(reversed(children))
    if total > len(found):
        found.append(f"... and {total - len(found)} more")
    return found
