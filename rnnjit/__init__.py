"""rnnjit: score PyTorch-trained recurrent models without PyTorch.

>>> import rnnjit
>>> rnnjit.convert("model.pth", "bundle.npz", head="fc,sigmoid")   # doctest: +SKIP
>>> model = rnnjit.load("bundle.npz")                              # doctest: +SKIP
>>> scores = model.predict(x, lengths=lengths)                     # doctest: +SKIP
"""

from rnnjit._version import __version__
from rnnjit.errors import (
    ArchitectureError,
    BundleError,
    InputError,
    RnnjitError,
    UnsafePickleError,
    WeightFileError,
)
from rnnjit.model import Model
from rnnjit.spec import HeadStep, RNNSpec

__all__ = [
    "ArchitectureError",
    "BundleError",
    "HeadStep",
    "InputError",
    "Model",
    "RNNSpec",
    "RnnjitError",
    "UnsafePickleError",
    "WeightFileError",
    "__version__",
    "convert",
    "load",
]


def load(path, *, dtype=None, precision="float32", memory_limit=None) -> Model:
    """Load and validate a bundle written by `convert`; see `rnnjit.bundle.load`.

    ``precision``: "float32" (default), "bf16" or "int8" (`rnnjit.spec.PRECISIONS`).
    ``memory_limit`` (bytes, or ``"4G"``): what the file may make rnnjit allocate;
    default ``$RNNJIT_MEMORY_LIMIT`` or 1 GiB (`rnnjit.memory`).
    """
    from rnnjit.bundle import load as _load

    return _load(path, dtype=dtype, precision=precision, memory_limit=memory_limit)


def convert(src, out, *, memory_limit=None, **kwargs):
    """Convert a PyTorch weight file to a bundle; see `rnnjit.converter.convert`.

    ``memory_limit`` (bytes, or ``"4G"``): what the weight file may make rnnjit
    allocate; default ``$RNNJIT_MEMORY_LIMIT`` or 1 GiB (`rnnjit.memory`).
    """
    from rnnjit.converter import convert as _convert
    from rnnjit.memory import limited

    with limited(memory_limit):
        return _convert(src, out, **kwargs)
