"""``rnnjit inspect``: what a bundle holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from rnnjit.assumptions import labels as assumption_labels
from rnnjit.cli._common import cli_words, visible
from rnnjit.spec import PRECISIONS


def describe_step(step) -> str:
    """One step for people: the module, what it is and its sizes."""
    if step.kind == "rnn":
        s = step.rnn
        extra = (", bidirectional" if s.bidirectional else "") + (f", proj_size={s.proj_size}" if s.proj_size else "")
        layers = f"{s.num_layers} layer{'s' if s.num_layers != 1 else ''}"
        return f"{s.cell} (input_size={s.input_size}, hidden_size={s.hidden_size}, {layers}{extra})"
    if step.kind == "linear":
        return f"{step.name} ({step.in_features}->{step.out_features}{'' if step.bias else ', no bias'})"
    if step.kind == "embedding":
        return f"{step.name} embedding({step.in_features} ids->{step.out_features})"
    if step.kind in ("layernorm", "batchnorm"):
        what = "LayerNorm" if step.kind == "layernorm" else "BatchNorm1d"
        return f"{step.name + ' ' if step.name else ''}{what}({step.in_features or ''})".replace("()", "")
    return step.label()


def describe_head(model) -> str:
    parts = [describe_step(s) for s in model.head]
    return " -> ".join(parts) if parts else "none"


def describe_chain(model) -> str:
    """``lstm (input_size=..), head fc (16->1) -> sigmoid`` for one module and a head, else every step."""
    if model.chain[0].kind == "rnn" and len(model.rnns) == 1:
        return f"{describe_step(model.chain[0])}, head {describe_head(model)}"
    def one(s):
        if s.kind == "linear":
            return f"{s.name}: linear({s.in_features}->{s.out_features}{'' if s.bias else ', no bias'})"
        if s.kind == "rnn":
            return f"{s.name or 'rnn'}: {describe_step(s)}"
        if s.kind in ("embedding", "layernorm", "batchnorm") and s.name:
            return f"{s.name}: " + describe_step(s).removeprefix(f"{s.name} ")
        return describe_step(s)

    return "chain " + " -> ".join(one(s) for s in model.chain)


def checkpoint_notes(model) -> list[str]:
    """What convert left out on purpose or found beside the weights (ignored modules, non-tensor entries)."""
    prov = model.config.get("provenance") or {}
    notes = []
    if model.config.get("ignored"):
        notes.append(f"ignored on purpose (--ignore): {', '.join(model.config['ignored'])}")
    for key, what in (("skipped", "skipped (not weights)"), ("placeholders", "non-tensor objects in the checkpoint")):
        if prov.get(key):
            notes.append(f"{what}: {', '.join(map(str, prov[key]))}")
    return notes


def state_columns(model) -> dict[str, Any]:
    """Values per row of h0/c0: every module's (L*D, H) in chain order (c0: LSTM modules only)."""
    h = [[r.num_layers * r.num_directions, r.h_out] for r in model.rnns]
    c = [[r.num_layers * r.num_directions, r.hidden_size] for r in model.rnns if r.has_cell_state]
    out: dict[str, Any] = {"h0": {"values_per_row": sum(a * b for a, b in h), "shape": h[0] if len(h) == 1 else h}}
    if c:
        out["c0"] = {"values_per_row": sum(a * b for a, b in c), "shape": c[0] if len(c) == 1 else c}
    return out


def bundle_info(model, path) -> dict[str, Any]:
    """Everything `inspect` shows, as plain JSON-able data."""
    s = model.spec
    ref = model.config.get("reference") or None
    info: dict[str, Any] = {
        "bundle": str(path),
        "cell": s.cell,
        "input_size": s.input_size,
        "hidden_size": s.hidden_size,
        "proj_size": s.proj_size,
        "num_layers": s.num_layers,
        "bidirectional": s.bidirectional,
        "bias": s.bias,
        "rnn_prefix": s.prefix,
        "output": model.output,
        "output_dim": model.output_dim,
        "head": [step.to_dict() for step in model.head],
        "chain": [step.to_dict() for step in model.chain],
        "ignored": model.config.get("ignored") or [],
        "assumed": model.config.get("assumed"),
        "recurrent_modules": len(model.rnns),
        "dtype": model.dtype.name,
        "precision": model.dtype.name,  # what `rnnjit score` computes at without --precision
        "precisions_opt_in": [p for p in PRECISIONS if p != "float32"] if model.dtype == np.float32 else [],
        "num_parameters": model.num_parameters,
        "feature_names": model.feature_names,
        "state_columns": state_columns(model),
        "weights": {k: list(v.shape) for k, v in model.weights.items()},
        "provenance": model.config.get("provenance"),
        "reference_sequences": int(len(ref["lengths"])) if ref and "lengths" in ref else 0,
    }
    return info


def _echo(line: str) -> None:
    """One line of the text report: names come from the bundle file, so control characters are shown escaped."""
    typer.echo(visible(line))


def inspect_command(
    bundle: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, metavar="BUNDLE", help="A bundle (.npz).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Show a bundle's architecture, parameter count, weight shapes, head and provenance."""
    import rnnjit

    model = rnnjit.load(bundle)
    info = bundle_info(model, bundle)
    if as_json:
        typer.echo(json.dumps(info, indent=2))  # json escapes control characters
        return
    s = model.spec
    inp = "token ids" if model.takes_tokens else str(model.input_size)
    rows = [
        ("bundle", str(bundle)),
        ("chain", model.describe()),
        ("steps", describe_chain(model)),
        ("cell", s.cell + (f" (proj_size={s.proj_size})" if s.proj_size else "")),
        ("input_size", inp + (f" ({', '.join(model.feature_names)})" if model.feature_names else "")),
        ("hidden_size", str(s.hidden_size)),
        ("num_layers", str(s.num_layers)),
        ("bidirectional", "yes" if s.bidirectional else "no"),
        ("bias", "yes" if s.bias else "no"),
        ("head", describe_head(model)),
        ("output", f"{model.output}{f' (pooled by pool:{model.pooling})' if model.pooling else ''} -> "
                   f"{model.output_dim} value(s) per {'step' if model.returns_steps() else 'row'}"),
        ("parameters", f"{model.num_parameters:,}"),
        ("dtype", model.dtype.name),
        ("precision", f"{info['precision']} by default" + (
            f" (opt-in: --precision {'|'.join(info['precisions_opt_in'])}; rnnjit verify --precision shows the cost)"
            if info["precisions_opt_in"] else "")),
    ]
    st = info["state_columns"]
    def shape(v):
        return " + ".join(str(tuple(p)) for p in v) if isinstance(v[0], list) else str(tuple(v))

    state = f"h0/hn {st['h0']['values_per_row']} values per row = {shape(st['h0']['shape'])}"
    if "c0" in st:
        state += f"; c0/cn {st['c0']['values_per_row']} = {shape(st['c0']['shape'])}"
    rows.append(("state", state))
    rows.append(("reference", f"{info['reference_sequences']} sequences (rnnjit verify)" if info["reference_sequences"] else "none"))
    labels = assumption_labels(model.config)
    rows.append(("assumed", "not recorded (converted by an older rnnjit)" if labels is None
                 else ", ".join(labels) + " (not in the weights; see below)" if labels else "nothing"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        _echo(f"{k:<{width}}  {v}")
    for a in model.assumed:
        _echo(f"  note: {cli_words(a['note'], 'convert')}")
    _echo("weights")
    kw = max(len(k) for k in info["weights"]) if info["weights"] else 0
    for k, shape in info["weights"].items():
        _echo(f"  {k:<{kw}}  {tuple(shape)}")
    prov = info["provenance"] or {}
    if prov:
        _echo("provenance")
        for k in ("source", "sha256", "source_format", "stripped_prefix", "unwrapped", "rnnjit_version", "created"):
            if prov.get(k) not in (None, "", []):
                _echo(f"  {k:<15} {prov[k]}")
        dropped = prov.get("dropped_keys") or []
        if dropped:
            _echo(f"  {'dropped_keys':<15} {', '.join(dropped)}")
        for line in checkpoint_notes(model):
            _echo(f"  {line}")
