"""The bundle: one ``.npz`` with every weight under its PyTorch key, plus ``__rnnjit__``.

``__rnnjit__`` is a JSON document (format, format_version, chain, output,
dtype, feature_names, ignored, reference, provenance). Version 1 had ``rnn``
(one recurrent module) and ``head`` instead of ``chain``; such bundles still
load, as the chain ``[rnn, *head]``. The file loads with
``np.load(path, allow_pickle=False)``; `load` validates everything before any
kernel can see it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rnnjit import bundle_schema
from rnnjit.errors import BundleError, WeightFileError
from rnnjit.formats.npz import arrays as npz_arrays
from rnnjit.files import regular_file
from rnnjit.memory import BundleMemoryError, MemoryBudget
from rnnjit.infer import check_rnn_weights
from rnnjit.model import Model
from rnnjit.kinds import KINDS
from rnnjit.spec import OUTPUT_MODES, RNNSpec, Step, chain_widths, check_step, rnn_step

CONFIG_KEY = "__rnnjit__"
FORMAT = "rnnjit-bundle"
FORMAT_VERSION = 2
DTYPES = ("float32", "float64")


def write(path: str | os.PathLike, weights: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> None:
    """Write a bundle atomically: a temporary file in the same folder, renamed when complete."""
    path = Path(path)
    arrays = {k: np.ascontiguousarray(v) for k, v in weights.items()}
    arrays[CONFIG_KEY] = np.array(json.dumps(config, sort_keys=True))
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise BundleError(f"cannot write {path}: folder {folder} does not exist; create it first")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a bundle is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_config(path: str | os.PathLike, *, memory_limit: int | str | None = None) -> dict[str, Any]:
    """The bundle's JSON document, without loading or checking the weights."""
    config, _ = _read(path, weights=False, memory_limit=memory_limit)
    return config


def load(
    path: str | os.PathLike, *, dtype: str | None = None, precision: str = "float32", memory_limit: int | str | None = None
) -> Model:
    """Load and validate a bundle.

    Parameters
    ----------
    path : the ``.npz`` written by `rnnjit.convert`.
    dtype : "float32" or "float64", optional
        Compute dtype; default is the bundle's own (float32 unless the model
        was float64 in PyTorch).
    precision : "float32", "bf16" or "int8"
        What the recurrent products compute in (`rnnjit.spec.PRECISIONS`):
        "float32" is the dtype's own; "bf16" rounds weights and each step's
        input and state to bfloat16 for the products (AVX512_BF16); "int8"
        quantizes weights per row and each step's input and state per sequence
        (AVX512_VNNI). Everything else stays float32. The bundle's weights are
        unchanged.
    memory_limit : int or str, optional
        What the file may make rnnjit allocate (inflated members, in total),
        e.g. ``"4G"``; default ``$RNNJIT_MEMORY_LIMIT`` or 1 GiB (`rnnjit.memory`).

    Raises
    ------
    BundleError
        For anything wrong with the file, naming the key and both shapes.
    """
    config, weights = _read(path, weights=True, memory_limit=memory_limit)
    chain, output, bundle_dtype = validate(config, weights, path)
    if dtype is not None and str(dtype) not in DTYPES:
        raise BundleError(f"dtype {dtype!r} is not supported; expected one of {', '.join(DTYPES)}")
    return Model(chain, weights, output=output, dtype=str(dtype or bundle_dtype), config=config, precision=precision)


def validate(config: Mapping[str, Any], weights: Mapping[str, np.ndarray], path="bundle"):
    """Check a bundle's JSON document against its weights; returns ``(chain, output, dtype)``.

    `rnnjit.convert` runs this before writing, so a bundle that would not load
    is never written.
    """
    chain, output, dtype = _check_config(dict(config), path)
    weights = dict(weights)
    for spec in (s.rnn for s in chain if KINDS[s.kind].recurrent):
        _check_sizes(spec, weights, path)
    _check_weights(chain, weights, path)
    bundle_schema.check_values(chain, weights, path)
    return chain, output, dtype


def _read(path, *, weights: bool, memory_limit=None):
    path = Path(path)
    if not path.exists():
        raise BundleError(f"bundle {path} does not exist; create one with `rnnjit convert model.pth --output {path}`")
    regular_file(path, "bundle", BundleError)
    # Members are read by rnnjit.formats.npz, which checks every .npy header's
    # claimed size against the file before allocating (np.load does not).
    try:
        with open(path, "rb") as fh:
            if fh.read(6) == b"\x93NUMPY":
                raise BundleError(f"{path} holds a single array, not a bundle; re-create it with `rnnjit convert`")
            fh.seek(0)
            config, arrays = None, {}
            budget = MemoryBudget(str(path), memory_limit, BundleMemoryError)
            for key, arr in npz_arrays(fh, str(path), budget):
                if key == CONFIG_KEY:
                    config = _parse_config(arr, path)
                    if not weights:
                        break
                elif weights:
                    arrays[key] = arr
    except WeightFileError as exc:
        raise BundleError(f"{exc}; re-create the bundle with `rnnjit convert`") from None
    except OSError as exc:
        raise BundleError(f"{path} cannot be read ({exc}); check the path and its permissions") from None
    if config is None:
        raise BundleError(
            f"{path} has no {CONFIG_KEY!r} key, so it is not an rnnjit bundle; convert weights with `rnnjit convert`"
        )
    return config, arrays


def _parse_config(raw: np.ndarray, path) -> dict:
    try:
        if raw.dtype.kind != "U" or raw.shape != ():
            raise ValueError(f"an array of {raw.dtype} and shape {raw.shape}, not a string")
        config = json.loads(str(raw[()]))
    except (ValueError, RecursionError) as exc:  # bad JSON, wrong dtype, absurd nesting
        raise BundleError(f"{path}: {CONFIG_KEY!r} is not a JSON document ({exc}); re-create the bundle") from None
    if not isinstance(config, dict):
        raise BundleError(f"{path}: {CONFIG_KEY!r} is not a JSON object; re-create the bundle")
    return config


def _check_config(config: dict, path):
    def bad(msg):
        return BundleError(f"{path}: {msg}")

    if config.get("format") != FORMAT:
        raise bad(f"format is {config.get('format')!r}; expected {FORMAT!r}; re-create it with `rnnjit convert`")
    version = config.get("format_version")
    if not isinstance(version, int) or version < 1 or version > FORMAT_VERSION:
        raise bad(
            f"format_version {version!r} is not supported by rnnjit (knows 1..{FORMAT_VERSION}); "
            "upgrade rnnjit or re-convert the model"
        )
    bundle_schema.check_document(config, path)  # every key's JSON type and range, before anything reads them
    try:
        if version == 1:
            chain = (rnn_step(RNNSpec.from_dict(config["rnn"])),
                     *(Step.from_dict(s) for s in config.get("head", [])))
        else:
            chain = tuple(Step.from_dict(s) for s in config["chain"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = "'rnn' or 'head'" if version == 1 else "'chain'"
        raise bad(f"the {what} section is malformed ({exc!r}); re-create the bundle") from exc
    for step in chain:  # kinds, names and what each kind's entry checks here; widths once the weights are checked
        try:
            check_step(step)
        except ValueError as exc:
            raise bad(f"the chain is malformed: {exc}; re-create the bundle") from exc
    output = config.get("output", "last")
    if output not in OUTPUT_MODES:
        raise bad(f"output mode {output!r} is not known; expected one of {', '.join(OUTPUT_MODES)}")
    assumed = config.get("assumed", [])
    if not isinstance(assumed, list) or not all(
        isinstance(a, dict) and isinstance(a.get("note"), str) and isinstance(a.get("label"), str) for a in assumed
    ):
        raise bad("'assumed' is not a list of {what, assumed, label, note} records; re-create the bundle")
    dtype = config.get("dtype", "float32")
    if dtype not in DTYPES:
        raise bad(f"dtype {dtype!r} is not supported; expected one of {', '.join(DTYPES)}")
    return chain, output, dtype


def _check_sizes(spec: RNNSpec, weights: dict, path) -> None:
    """Sizes the weights in the file could back, before anything loops over layers or allocates states.

    A damaged config can say ``num_layers: 1e308``: checking key by key would
    then never end. Each layer and direction needs two arrays, and no size
    exceeds the number of weight elements in the file.
    """
    arrays = sum(1 for k in weights if k.startswith(spec.prefix))
    elements = sum(int(a.size) for a in weights.values())
    if spec.num_layers * (2 if spec.bidirectional else 1) * 2 > arrays:
        raise BundleError(
            f"{path}: rnn.num_layers is {spec.num_layers:.6g} but the file holds {arrays} arrays under "
            f"{spec.prefix!r}; the config and weights disagree, re-create the bundle"
        )
    for name in ("input_size", "hidden_size", "proj_size"):
        if getattr(spec, name) > elements:
            raise BundleError(
                f"{path}: rnn.{name} is {getattr(spec, name):.6g}, more than the {elements} weight values "
                "in the file; the config is corrupt, re-create the bundle"
            )


def _check_weights(chain, weights: dict, path) -> None:
    def error(msg):
        return BundleError(f"{path}: {msg}")

    for step in chain:
        entry = KINDS[step.kind]
        if entry.recurrent:  # also refuses stray layers or directions under the module's prefix
            check_rnn_weights(step.rnn, weights, error=error)
            continue
        for key, shape in step.expected_shapes().items():
            if key not in weights:
                raise error(f"missing key {key!r} ({step.kind} {step.name!r}, expected shape {shape})")
            found = weights[key].shape
            if found != shape and found != entry.alt_shape(key, shape):
                raise error(f"key {key!r} has shape {found}; expected {shape}")
    try:
        chain_widths(chain)
    except ValueError as exc:
        raise error(f"the chain is inconsistent: {exc}; re-create the bundle") from exc
    for key, arr in weights.items():
        if not np.issubdtype(arr.dtype, np.floating):
            raise error(f"key {key!r} has dtype {arr.dtype}; expected floating-point weights")
        if not np.all(np.isfinite(arr)):
            n = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise error(f"key {key!r} has {n} non-finite values (NaN or inf); the model's weights are broken")
