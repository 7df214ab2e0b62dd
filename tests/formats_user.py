"""A stand-in for the user's own training module: what real checkpoints pickle next to the weights.

tests/test_formats_checkpoints.py saves these with torch.save; rnnjit must load
the weights without importing this module or calling anything in it.
"""

from __future__ import annotations

import dataclasses
import enum
import os


@dataclasses.dataclass
class TrainConfig:
    hidden: int
    lr: float
    layers: tuple = (1, 2)


class Phase(enum.Enum):
    TRAIN = "train"
    EVAL = "eval"


class Split(enum.Enum):
    """Pickled by name, as getattr(Split, "TRAIN") (stdlib enums such as re.RegexFlag opt in the same way)."""

    TRAIN = 1
    VALID = 2
    __reduce_ex__ = enum.pickle_by_enum_name


class Tracker:
    """A plain class with state, pickled by __dict__ (NEWOBJ + BUILD)."""

    def __init__(self) -> None:
        self.best = 0.25
        self.history = [1.0, 0.5]


def touch(path: str) -> None:
    """What a hostile checkpoint would make the loader call: creates ``path``."""
    with open(path, "w"):
        pass


class Exploit:
    """Pickles as ``os.system(cmd)`` through ``__reduce__``."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class TouchOnReduce:
    """Pickles as ``formats_user.touch(path)``: a user-module function, now a placeholder."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (touch, (self.path,))
