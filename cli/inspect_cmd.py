"""``rnnjit inspect``: what a bundle holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def describe_head(model) -> str:
    parts = []
    for step in model.head:
        if step.kind == "linear":
            parts.append(f"{step.name} ({step.in_features}->{step.out_features}{'' if step.bias else ', no bias'})")
        else:
            parts.append(step.name)
    return " -> ".join(parts) if parts else "none"


def bundle_info(model, path) -> dict[str, Any]:
    """Everything `inspect` shows, as plain JSON-able data."""
    s = model.spec
    ld = s.num_layers * s.num_directions
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
        "dtype": model.dtype.name,
        "num_parameters": model.num_parameters,
        "feature_names": model.feature_names,
        "state_columns": {
            "h0": {"values_per_row": ld * s.h_out, "shape": [ld, s.h_out]},
            **({"c0": {"values_per_row": ld * s.hidden_size, "shape": [ld, s.hidden_size]}} if s.has_cell_state else {}),
        },
        "weights": {k: list(v.shape) for k, v in model.weights.items()},
        "provenance": model.config.get("provenance"),
        "reference_sequences": int(len(ref["lengths"])) if ref and "lengths" in ref else 0,
    }
    return info


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
        typer.echo(json.dumps(info, indent=2))
        return
    s = model.spec
    rows = [
        ("bundle", str(bundle)),
        ("cell", s.cell + (f" (proj_size={s.proj_size})" if s.proj_size else "")),
        ("input_size", f"{s.input_size}" + (f" ({', '.join(model.feature_names)})" if model.feature_names else "")),
        ("hidden_size", str(s.hidden_size)),
        ("num_layers", str(s.num_layers)),
        ("bidirectional", "yes" if s.bidirectional else "no"),
        ("bias", "yes" if s.bias else "no"),
        ("head", describe_head(model)),
        ("output", f"{model.output} -> {model.output_dim} value(s) per row"),
        ("parameters", f"{model.num_parameters:,}"),
        ("dtype", model.dtype.name),
    ]
    st = info["state_columns"]
    state = f"h0/hn {st['h0']['values_per_row']} values per row = {tuple(st['h0']['shape'])}"
    if "c0" in st:
        state += f"; c0/cn {st['c0']['values_per_row']} = {tuple(st['c0']['shape'])}"
    rows.append(("state", state))
    rows.append(("reference", f"{info['reference_sequences']} sequences (rnnjit verify)" if info["reference_sequences"] else "none"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        typer.echo(f"{k:<{width}}  {v}")
    typer.echo("weights")
    kw = max(len(k) for k in info["weights"]) if info["weights"] else 0
    for k, shape in info["weights"].items():
        typer.echo(f"  {k:<{kw}}  {tuple(shape)}")
    prov = info["provenance"] or {}
    if prov:
        typer.echo("provenance")
        for k in ("source", "sha256", "source_format", "stripped_prefix", "unwrapped", "rnnjit_version", "created"):
            if prov.get(k) not in (None, "", []):
                typer.echo(f"  {k:<15} {prov[k]}")
        dropped = prov.get("dropped_keys") or []
        if dropped:
            typer.echo(f"  {'dropped_keys':<15} {', '.join(dropped)}")
