"""`convert`: a PyTorch weight file in, a validated bundle out. No torch needed."""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rnnjit import bundle
from rnnjit._version import __version__
from rnnjit.errors import ArchitectureError
from rnnjit.infer import infer_dtype, infer_head, infer_spec
from rnnjit.model import Model
from rnnjit.spec import OUTPUT_MODES

CONFIG_KEYS = ("rnn_prefix", "nonlinearity", "head", "output", "feature_names", "reference")
REFERENCE_SEED = 20240229


def convert(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    rnn_prefix: str | None = None,
    nonlinearity: str | None = None,
    head: str | Sequence[str] | None = None,
    output: str | None = None,
    config: Mapping[str, Any] | None = None,
    feature_names: Sequence[str] | None = None,
    reference: bool = True,
) -> Model:
    """Read a PyTorch state_dict file and write a bundle.

    Parameters
    ----------
    src : ``.pth``/``.pt`` (zip or legacy), ``.safetensors`` or ``.npz``.
    out : path of the bundle to write (atomically).
    rnn_prefix : state_dict prefix of the recurrent module, e.g. ``"encoder.lstm"``;
        needed only when the file holds several.
    nonlinearity : ``"tanh"`` (default) or ``"relu"``, for nn.RNN only.
    head : linear layers (by state_dict prefix) and activations, as a list or a
        comma string such as ``"proj,relu,out,softmax"``. Default: the single
        linear layer that takes the recurrent output, if there is one, with no
        activation.
    output : ``"last"`` (default), ``"final"`` or ``"all"``.
    config : a mapping with any of the keyword arguments above; explicit
        keyword arguments win.
    feature_names : names of the input features, stored for the Parquet layouts.
    reference : store a small reference input and its outputs for ``rnnjit verify``.

    Returns
    -------
    Model
        The bundle as loaded back from ``out``.
    """
    from rnnjit.formats import read_state_dict

    opts = _merge_options(
        config,
        rnn_prefix=rnn_prefix,
        nonlinearity=nonlinearity,
        head=head,
        output=output,
        feature_names=feature_names,
    )
    sd, info = read_state_dict(src)
    spec = infer_spec(sd, rnn_prefix=opts.get("rnn_prefix"), nonlinearity=opts.get("nonlinearity"))
    steps = infer_head(sd, spec, opts.get("head"))
    mode = opts.get("output") or "last"
    if mode not in OUTPUT_MODES:
        raise ArchitectureError(f"output mode {mode!r} is not known; expected one of {', '.join(OUTPUT_MODES)}")
    names = opts.get("feature_names")
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if names is not None and len(names) != spec.input_size:
        raise ArchitectureError(
            f"{len(names)} feature names were given but the model takes input_size={spec.input_size} features"
        )

    used = list(spec.expected_shapes())
    for step in steps:
        if step.kind == "linear":
            used.append(f"{step.name}.weight")
            if step.bias:
                used.append(f"{step.name}.bias")
    dtype = infer_dtype(spec, sd)
    weights = {k: np.asarray(sd[k], dtype=dtype) for k in used}
    cfg: dict[str, Any] = {
        "format": bundle.FORMAT,
        "format_version": bundle.FORMAT_VERSION,
        "rnn": spec.to_dict(),
        "head": [s.to_dict() for s in steps],
        "output": mode,
        "dtype": dtype,
        "feature_names": list(names) if names is not None else None,
        "provenance": {
            "source": Path(src).name,
            "sha256": info.get("sha256"),
            "source_format": info.get("format"),
            "unwrapped": info.get("unwrapped"),
            "stripped_prefix": info.get("stripped_prefix"),
            "dropped_keys": [k for k in sd if k not in weights],
            "rnnjit_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
    }
    model = Model(spec, steps, weights, output=mode, dtype=dtype, config=cfg)
    if opts.get("reference", reference):
        cfg["reference"] = make_reference(model)
    bundle.write(out, weights, cfg)
    return bundle.load(out)


def _merge_options(config, **explicit):
    opts: dict[str, Any] = {}
    if config:
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ArchitectureError(
                f"unknown config keys {unknown}; expected any of {', '.join(CONFIG_KEYS)}"
            )
        opts.update(config)
    opts.update({k: v for k, v in explicit.items() if v is not None})
    return opts


def make_reference(model: Model) -> dict[str, Any]:
    """A small seeded input (three sequences of different lengths) and its outputs.

    The outputs come from the exact numpy reference engine in the bundle's dtype,
    in the bundle's output mode; ``rnnjit verify`` recomputes and compares them.
    """
    rng = np.random.default_rng(REFERENCE_SEED)
    T = 7
    lengths = np.array([T, 4, 1], dtype=np.int64)
    x = rng.standard_normal((3, T, model.spec.input_size)).astype(model.dtype)
    for b, n in enumerate(lengths):
        x[b, n:] = 0.0
    y = model.predict(x, lengths=lengths, engine="numpy")
    return {"x": x.tolist(), "lengths": lengths.tolist(), "y": y.tolist(), "output": model.output}
