"""`convert`: a PyTorch weight file in, a validated bundle out. No torch needed."""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rnnjit import assumptions, bundle
from rnnjit._version import __version__
from rnnjit.errors import ArchitectureError
from rnnjit.infer import infer_dtype
from rnnjit.chain import build_chain, infer_chain, parse_chain
from rnnjit.keys import account, check_supported, ignored_keys, used_keys
from rnnjit.model import Model
from rnnjit.spec import OUTPUT_MODES, recurrent_specs

CONFIG_KEYS = ("rnn_prefix", "nonlinearity", "head", "chain", "ignore", "output", "feature_names", "reference")
REFERENCE_SEED = 20240229


def convert(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    rnn_prefix: str | None = None,
    nonlinearity: str | None = None,
    head: str | Sequence[str] | None = None,
    chain: str | Sequence[str] | None = None,
    ignore: Sequence[str] | None = None,
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
        comma string such as ``"proj,relu,out,softmax"``: the chain's tail after
        the recurrent module. Default: the single linear layer that takes the
        recurrent output, if there is one, with no activation.
    chain : the whole model, e.g. ``"emb,lstm1,lstm2,pool:mean,ln,fc,sigmoid"``
        (see `rnnjit.chain`). Default: inferred when the weights leave no doubt
        (an embedding as wide as the recurrent module's input, one recurrent
        module, the head).
    ignore : modules (state_dict prefixes) whose tensors are dropped on
        purpose. Any other tensor the chain does not use is an error.
    output : what the last recurrent module hands on: ``"last"`` (default),
        ``"final"`` or ``"all"`` (the default, and the only choice, when the
        chain pools over time).
    config : a mapping with any of the keyword arguments above; explicit
        keyword arguments win.
    feature_names : names of the input features, stored for the Parquet layouts.
    reference : store a small reference input and its outputs for ``rnnjit verify``.

    Returns
    -------
    Model
        The bundle as loaded back from ``out``. ``model.assumed`` lists what
        the weights could not tell and no argument stated (nn.RNN's
        nonlinearity, no activation around an inferred head, the output mode,
        a norm's eps), each with the argument that states it; the CLI prints
        them as ``note:`` lines.
    """
    from rnnjit.formats import read_state_dict

    opts = _merge_options(
        config,
        rnn_prefix=rnn_prefix,
        nonlinearity=nonlinearity,
        head=head,
        chain=chain,
        ignore=ignore,
        output=output,
        feature_names=feature_names,
    )
    sd, info = read_state_dict(src)
    ignore_list = opts.get("ignore") or []
    if isinstance(ignore_list, str):
        ignore_list = [ignore_list]
    # repeated or comma-separated, as --feature-columns
    ignore_list = [n.strip().rstrip(".") for item in ignore_list for n in str(item).split(",") if n.strip()]
    ignore_list = [_without_stripped_prefix(n, sd, info.get("stripped_prefix")) for n in ignore_list]
    check_supported(sd, ignore_list, source=Path(src).name)
    tokens = parse_chain(opts.get("chain"), sd) if opts.get("chain") is not None else []
    if tokens:
        for clash in ("head", "rnn_prefix"):
            if opts.get(clash) is not None:
                raise ArchitectureError(f"{clash}= and chain= were both given; write the whole model in chain= only")
        steps = build_chain(sd, tokens, nonlinearity=opts.get("nonlinearity"))
    else:
        steps = _infer_chain_without_ignored(sd, ignore_list, opts)
    pooled = next((s.label() for s in steps if s.entry.pools_time), None)
    mode = opts.get("output") or ("all" if pooled else "last")
    if mode not in OUTPUT_MODES:
        raise ArchitectureError(f"output mode {mode!r} is not known; expected one of {', '.join(OUTPUT_MODES)}")
    if pooled and mode != "all":
        raise ArchitectureError(
            f"the chain pools over time ({pooled}), which needs every step of the last recurrent module; "
            f"output mode {mode!r} does not apply: drop output=, or use pool:last instead of {pooled}"
        )
    ignored, non_weight = account(sd, steps, ignore_list, source=Path(src).name)
    assumed = assumptions.find(
        steps,
        output_given=opts.get("output") is not None,
        nonlinearity_given=opts.get("nonlinearity") is not None,
        head_inferred=not tokens and opts.get("head") is None,
        stated=[set(t.options) for t in tokens] if tokens else None,
        weight_dtypes=_file_dtypes(sd, used_keys(steps), info.get("widened") or ()),
    )
    input_size = Model(steps, {}, output=mode).input_size
    names = opts.get("feature_names")
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if names is not None and len(names) != input_size:
        raise ArchitectureError(
            f"{len(names)} feature names were given but the model takes input_size={input_size} "
            f"{'token id' if steps[0].entry.reads_tokens else 'features'} per step"
        )

    dtype = infer_dtype(recurrent_specs(steps), sd)
    weights = {k: np.asarray(sd[k], dtype=dtype) for k in used_keys(steps)}
    cfg: dict[str, Any] = {
        "format": bundle.FORMAT,
        "format_version": bundle.FORMAT_VERSION,
        "chain": [s.to_dict() for s in steps],
        "ignored": ignore_list,
        "assumed": assumed,
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
            "ignored_keys": ignored,
            "non_weight_keys": non_weight,
            "skipped": list(info.get("skipped") or []),
            "placeholders": list(info.get("placeholders") or []),
            "rnnjit_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
    }
    bundle.validate(cfg, weights, Path(out).name)  # never write a bundle that would not load
    model = Model(steps, weights, output=mode, dtype=dtype, config=cfg)
    if opts.get("reference", reference):
        cfg["reference"] = make_reference(model)
    bundle.write(out, weights, cfg)
    return bundle.load(out)


def _infer_chain_without_ignored(sd, ignore_list, opts):
    """`infer_chain`; where the weights leave it open, modules named by --ignore are no candidates.

    Without that, dropping an attention block with --ignore attn led to an error offering its
    ``attn.out_proj`` as the head, and a chain offered for two recurrent modules listed the CNN
    layers just ignored. A chain the whole file gives is kept, so ignoring a module it uses stays
    the clear "--ignore would drop ..." error.
    """
    kw = {"rnn_prefix": opts.get("rnn_prefix"), "nonlinearity": opts.get("nonlinearity"), "head": opts.get("head")}
    try:
        return infer_chain(sd, **kw)
    except ArchitectureError:
        dropped = set(ignored_keys(sd, ignore_list))
        if not dropped:
            raise
    return infer_chain({k: v for k, v in sd.items() if k not in dropped}, **kw)


def _without_stripped_prefix(name: str, sd, prefix: str | None) -> str:
    """``--ignore module.enc`` for a DataParallel file: its keys lost ``module.``, so the module is ``enc``."""
    if prefix and name.startswith(prefix) and not any(k == name or k.startswith(f"{name}.") for k in sd):
        return name[len(prefix):]
    return name


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
    if model.takes_tokens:
        x = rng.integers(0, model.embedding.in_features, size=(3, T))
    else:
        x = rng.standard_normal((3, T, model.input_size)).astype(model.dtype)
    for b, n in enumerate(lengths):
        x[b, n:] = 0
    y = model.predict(x, lengths=lengths, engine="numpy")
    return {"x": x.tolist(), "lengths": lengths.tolist(), "y": y.tolist(), "output": model.output}


def _file_dtypes(sd, keys, widened) -> set[str]:
    """The dtypes ``keys`` had in the file: bfloat16 arrives widened to float32 (`read_state_dict`'s ``widened``)."""
    widened = set(widened)
    return {"bfloat16" if k in widened else str(sd[k].dtype) for k in keys}
