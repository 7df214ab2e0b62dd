"""``rnnjit convert``: a PyTorch weight file to a bundle, without torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from rnnjit.errors import RnnjitError


class ConfigError(RnnjitError):
    """The --config file cannot be read."""


def read_config(path: Path) -> dict[str, Any]:
    """A convert config from JSON or TOML (a top-level table, or a ``[rnnjit]`` table)."""
    text = path.read_bytes()
    if path.suffix.lower() == ".toml":
        try:
            import tomllib  # Python >= 3.11
        except ModuleNotFoundError:  # pragma: no cover - Python < 3.11
            try:
                import tomli as tomllib  # type: ignore[no-redef]
            except ModuleNotFoundError as exc:
                raise ConfigError(f"{path} is TOML but this Python has no tomllib; use a JSON config") from exc
        try:
            doc = tomllib.loads(text.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config {str(path)!r} is not valid TOML: {exc}") from exc
    else:
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"config {str(path)!r} is not valid JSON ({exc}); write JSON, or TOML with a .toml extension"
            ) from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"config {str(path)!r} holds a {type(doc).__name__}; expected an object of convert options")
    if set(doc) == {"rnnjit"} and isinstance(doc["rnnjit"], dict):
        doc = doc["rnnjit"]
    return {k.replace("-", "_"): v for k, v in doc.items()}


def convert_command(
    src: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="Weight file: .pth, .pt, .safetensors or .npz."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", dir_okay=False, help="Bundle to write (.npz).")],
    config: Annotated[
        Optional[Path],
        typer.Option(exists=True, dir_okay=False, readable=True, help="JSON or TOML file with any of the options below."),
    ] = None,
    rnn_prefix: Annotated[
        Optional[str], typer.Option(help="state_dict prefix of the RNN module when the file holds several.")
    ] = None,
    nonlinearity: Annotated[Optional[str], typer.Option(help="tanh or relu (nn.RNN only).")] = None,
    head: Annotated[
        Optional[str], typer.Option(help='Head chain, e.g. "fc,sigmoid" or "relu,decoder.2,sigmoid".')
    ] = None,
    chain: Annotated[
        Optional[str],
        typer.Option(help='The whole model in order, e.g. "emb,lstm,pool:mean,ln,fc,sigmoid" (modules by '
                          'state_dict prefix, activations, pool:last|mean|max|sum, dropout).'),
    ] = None,
    ignore: Annotated[
        Optional[list[str]],
        typer.Option(help="A module whose tensors are dropped on purpose (repeatable); any other unused tensor "
                          "is an error."),
    ] = None,
    output: Annotated[Optional[str], typer.Option(help="Default output mode: last, final or all.")] = None,
    feature_names: Annotated[
        Optional[str], typer.Option(help="Comma-separated input feature names (used by --layout long).")
    ] = None,
    reference: Annotated[
        bool, typer.Option("--reference/--no-reference", help="Store a reference input for `rnnjit verify`.")
    ] = True,
) -> None:
    """Convert a PyTorch state_dict file to a bundle (torch is not needed)."""
    import rnnjit

    cfg = read_config(config) if config else None
    if cfg is not None and not reference:
        cfg["reference"] = False  # the flag wins over the file
    if nonlinearity is not None and nonlinearity not in ("tanh", "relu"):
        raise ConfigError(f"--nonlinearity {nonlinearity!r} is not known; expected tanh or relu")
    names = [n.strip() for n in feature_names.split(",") if n.strip()] if feature_names else None
    if out.suffix.lower() != ".npz":
        raise ConfigError(f"--out {str(out)!r} should end in .npz (a bundle is an .npz archive)")
    model = rnnjit.convert(
        src,
        out,
        rnn_prefix=rnn_prefix,
        nonlinearity=nonlinearity,
        head=head,
        chain=chain,
        ignore=ignore or None,
        output=output,
        config=cfg,
        feature_names=names,
        reference=reference,
    )
    from rnnjit.cli.inspect_cmd import checkpoint_notes, describe_chain

    typer.echo(
        f"wrote {out}: {describe_chain(model)}, output {model.output} -> {model.output_dim} value(s) per "
        f"{'step' if model.returns_steps() else 'row'}, {model.num_parameters:,} parameters"
    )
    for line in checkpoint_notes(model):
        typer.echo(f"  {line}")
