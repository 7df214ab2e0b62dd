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


def load(path, *, dtype=None, precision="float32") -> Model:
    """Load and validate a bundle written by `convert`; see `rnnjit.bundle.load`."""
    from rnnjit.bundle import load as _load

    return _load(path, dtype=dtype, precision=precision)


def convert(src, out, **kwargs):
    """Convert a PyTorch weight file to a bundle; see `rnnjit.converter.convert`."""
    from rnnjit.converter import convert as _convert

    return _convert(src, out, **kwargs)
