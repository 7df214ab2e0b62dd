"""Exceptions a user can act on.

Every message says what was found, what was expected and how to fix it, on one
line. The CLI prints ``str(exc)`` and exits with code 2 for any `RnnjitError`.
"""

from __future__ import annotations


class RnnjitError(ValueError):
    """Base class for every user-facing error raised by rnnjit."""


class WeightFileError(RnnjitError):
    """A weight file (.pth, .pt, .safetensors, .npz) could not be read."""


class UnsafePickleError(WeightFileError):
    """A pickle in a weight file asked for a global outside the allow-list."""


class ArchitectureError(RnnjitError):
    """The architecture cannot be inferred from the weights, or overrides disagree."""


class BundleError(RnnjitError):
    """A bundle is missing a key, has a mis-shaped or non-finite weight, or an unknown version."""


class InputError(RnnjitError):
    """Input to ``Model.predict`` (x, lengths, h0, c0, options) is malformed."""


class InputTypeError(InputError, TypeError):
    """Input has the wrong type or dtype."""


class PrecisionUnavailableError(InputError):
    """A reduced precision was asked for on a CPU (or compile target) without the instructions it needs."""
