"""A cheap walk over a pickle's opcodes before the real unpickler sees it.

The walk simulates the unpickler's stack with one small record per object (its
kind and nesting depth), in time linear in the number of opcodes, and refuses
before anything is built:

- a memo index larger than the number of opcodes (the C unpickler grows its
  memo table to the index and zero-fills it);
- containers nested deeper than `MAX_DEPTH` (CPython hashes a tuple
  recursively without a limit: a 1,000,000-deep tuple used as a dict key
  crashes the interpreter);
- dict keys and set members that are not strings or integers (a state_dict's
  keys are strings, an optimizer state's are integers);
- more objects than the memory budget allows: each opcode builds at most one
  object (`OBJECT_BYTES` charged) plus the bytes of its argument.
"""

from __future__ import annotations

import io
import pickletools

from rnnjit.errors import WeightFileError
from rnnjit.formats.guard import guarded
from rnnjit.memory import MemoryBudget

MAX_DEPTH = 100
# What one opcode's object may cost the unpickler (a dict entry, a small str, a list slot), charged per opcode.
OBJECT_BYTES = 100

_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_MEMO_GETS = {"GET", "BINGET", "LONG_BINGET"}
_KEY_KINDS = {"int", "str"}
# pickletools stack types -> the kinds that matter here
_KIND = {
    "int": "int", "int_or_bool": "int", "bool": "int", "str": "str", "bytes_or_str": "str",
}  # fmt: skip
_MARK, _SLICE = pickletools.markobject, pickletools.stackslice
# Opcodes that add the items above their MARK (or the two above them) to the object below.
_KEYED = {"SETITEM", "SETITEMS"}
_MEMBERS = {"ADDITEMS", "FROZENSET"}


class _Scan:
    """The simulated stack: ``(kind, depth)`` per object, MARK positions, and the memo."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.stack: list[tuple[str, int]] = []
        self.marks: list[int] = []
        self.memo: dict[int, tuple[str, int]] = {}

    def bad(self, what: str) -> WeightFileError:
        return WeightFileError(f"{self.source}: the pickle {what} (corrupt or hostile file?)")

    def pop(self, n: int) -> list[tuple[str, int]]:
        if n > len(self.stack) - (self.marks[-1] if self.marks else 0):
            raise self.bad("pops an object it never pushed")
        if not n:
            return []
        out = self.stack[-n:]
        del self.stack[-n:]
        return out

    def pop_mark(self) -> list[tuple[str, int]]:
        if not self.marks:
            raise self.bad("closes a MARK it never opened")
        at = self.marks.pop()
        out = self.stack[at:]
        del self.stack[at:]
        return out

    def step(self, op: pickletools.OpcodeInfo, arg, n: int) -> None:
        name = op.name
        if name == "MARK":
            self.marks.append(len(self.stack))
            return
        if name in _MEMO_PUTS or name == "MEMOIZE":
            index = len(self.memo) if name == "MEMOIZE" else arg
            if index > n:
                raise self.bad(f"stores memo entry {index} after {n} opcodes; a pickler numbers them from 0")
            if not self.stack:
                raise self.bad("memoizes an empty stack")
            self.memo[index] = self.stack[-1]
            return
        if name in _MEMO_GETS:
            if arg not in self.memo:
                raise self.bad(f"reads memo entry {arg}, never stored")
            self.stack.append(self.memo[arg])
            return
        before = op.stack_before
        sliced: list[tuple[str, int]] = []
        if _MARK in before:
            sliced = self.pop_mark()
            below = self.pop(before.index(_MARK))
        else:
            below = self.pop(len(before))
        if name in _KEYED:
            keys = sliced[0::2] if name == "SETITEMS" else below[1:2]
            self._check_keys(keys, "dict key")
        elif name in _MEMBERS:
            self._check_keys(sliced, "set member")
        parts = below + sliced
        depth = max((d for _, d in parts), default=0) + (1 if parts else 0)
        if depth > MAX_DEPTH:
            raise self.bad(f"nests containers {depth} deep; a checkpoint nests a few levels, at most {MAX_DEPTH}")
        for t in op.stack_after:
            kind = _KIND.get(t.name, "other")
            self.stack.append((kind, depth if kind == "other" else 0))

    def _check_keys(self, items: list[tuple[str, int]], what: str) -> None:
        for kind, _ in items:
            if kind not in _KEY_KINDS:
                raise self.bad(f"uses a {kind if kind != 'other' else 'container or object'} as a {what}; "
                               "a checkpoint's keys are strings or integers")


def check_opcodes(f: io.BufferedIOBase, source: str, budget: MemoryBudget | None = None) -> None:
    """Walk one pickle's opcodes (to its STOP) without building anything, then rewind ``f``.

    `pickletools.genops` reads every counted argument, so a length that runs
    past the end of the data fails here; `_Scan` refuses what the module
    docstring lists. ``budget`` is charged for the objects the pickle would build.
    """
    start = f.tell()
    budget = budget or MemoryBudget(source)
    scan = _Scan(source)

    def walk() -> None:
        cost = 0
        for n, (op, arg, _) in enumerate(pickletools.genops(f)):
            scan.step(op, arg, n)
            cost += OBJECT_BYTES + (len(arg) if isinstance(arg, (bytes, bytearray, str)) else 0)
            if cost > 1 << 20:  # charge in steps: one call per opcode would double the walk's time
                budget.take(cost, "the pickle's objects")
                cost = 0
        budget.take(cost, "the pickle's objects")

    guarded("the pickled state_dict", source, walk)
    f.seek(start)
