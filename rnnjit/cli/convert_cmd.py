"""``rnnjit convert``: a PyTorch weight file to a bundle, without torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from rnnjit.cli._common import OUTPUT_MODE_HELP, OutputMode, cli_words, err, metavar, visible
from rnnjit.errors import RnnjitError
from rnnjit.files import regular_file
from rnnjit.spec import OUTPUT_MODES


class ConfigError(RnnjitError):
    """The --config file cannot be read."""


MAX_CONFIG_BYTES = 1 << 20


def read_config(path: Path) -> dict[str, Any]:
    """A convert config from JSON or TOML (a top-level table, or a ``[rnnjit]`` table)."""
    regular_file(path, "convert config (JSON or TOML)", ConfigError)  # not /dev/zero, not a FIFO
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config {str(path)!r} holds {path.stat().st_size} bytes; a convert config is a few lines of JSON or TOML, "
            "check the path"
        )
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
    return config_options(doc, str(path))


# The config file takes convert's option names (``output-mode`` or ``output_mode``), the CLI's words,
# mapped here to `rnnjit.convert`'s keyword arguments.
CONFIG_OPTIONS = {
    "rnn-prefix": "rnn_prefix", "nonlinearity": "nonlinearity", "head": "head", "chain": "chain",
    "ignore": "ignore", "output-mode": "output", "feature-names": "feature_names", "reference": "reference",
}  # fmt: skip


def config_options(doc: dict[str, Any], where: str) -> dict[str, Any]:
    """``--config`` keys (convert's option names, ``-`` or ``_``) as `rnnjit.convert` keyword arguments.

    ``output`` holding an output mode was the key's old name: it still works, with a one-line warning.
    """
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = str(key).replace("_", "-")
        if name == "output" and value in OUTPUT_MODES:
            err(f'warning: config key "output" is deprecated for the output mode; write "output-mode": "{value}"')
            name = "output-mode"
        if name not in CONFIG_OPTIONS:
            raise ConfigError(f"config {where!r}: key {key!r} is not a convert option; the keys are convert's option "
                              f"names: {', '.join(CONFIG_OPTIONS)} (with - or _)")
        if name == "feature-names" and isinstance(value, str):  # "a,b,c" as on the command line
            value = [n.strip() for n in value.split(",") if n.strip()]
        out[CONFIG_OPTIONS[name]] = value
    return out


def bundle_and_mode(output: str | None, out: str | None, mode: str | None) -> tuple[Path, str | None]:
    """The bundle path and output mode from ``--output/-o``, ``--output-mode`` and the old spellings.

    Before the options were renamed, ``--out`` named the bundle and ``--output``
    the mode; both old spellings still work, with a one-line deprecation
    warning, when they cannot mean anything else.
    """
    if output is not None and output in OUTPUT_MODES:  # a bundle path ends in .npz, so this is a mode
        if mode is not None:
            raise ConfigError(f"--output {output!r} and --output-mode {mode!r} both give the output mode; "
                              "--output names the bundle: drop one")
        if out is None:
            raise ConfigError(f"--output {output!r} is an output mode, and --output names the bundle now: "
                              f"write --output-mode {output} --output BUNDLE.npz")
        err(f"warning: convert --output {output} is deprecated for the output mode; use --output-mode {output}")
        mode, output = output, None
    if out is not None:
        if output is not None:
            raise ConfigError(f"--out {out!r} and --output {output!r} both name the bundle; use --output only")
        err("warning: convert --out is deprecated; use --output (or -o)")
        output = out
    if output is None:
        raise ConfigError("missing option --output/-o BUNDLE: the bundle to write (.npz)")
    path = Path(output)
    if path.suffix.lower() != ".npz":
        raise ConfigError(f"--output {output!r} should end in .npz (a bundle is an .npz archive)")
    return path, mode


def _check_bundle_path(path: Path, overwrite: bool) -> None:
    """Before any weight is read: refuse a folder, an existing bundle (without --overwrite), a missing folder."""
    if path.is_dir():
        example = str(path / "bundle.npz")
        raise ConfigError(f"--output {str(path)!r} is a directory; give the bundle's file name, e.g. {example!r}")
    if path.exists() and not overwrite:
        raise ConfigError(
            f"output {str(path)!r} already exists; pass --overwrite to replace it, or choose another name"
        )
    if not path.parent.is_dir():
        raise ConfigError(f"the folder of bundle {str(path)!r} does not exist; create it first")


def convert_command(
    src: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, metavar="SRC",
                       help="Weight file: .pth, .pt, .safetensors or .npz."),
    ],
    output: Annotated[
        Optional[str], typer.Option("--output", "-o", metavar="BUNDLE", help="Bundle to write (.npz). [required]")
    ] = None,
    config: Annotated[
        Optional[Path],
        typer.Option(exists=True, dir_okay=False, readable=True, metavar="FILE",
                     help="JSON or TOML file with any of the options below."),
    ] = None,
    rnn_prefix: Annotated[
        Optional[str],
        typer.Option(metavar="PREFIX", help="state_dict prefix of the RNN module when the file holds several."),
    ] = None,
    nonlinearity: Annotated[
        Optional[str], typer.Option(metavar="tanh|relu", help="nn.RNN's activation (not in its weights; default tanh).")
    ] = None,
    head: Annotated[
        Optional[str],
        typer.Option(metavar="HEAD", help='The steps after the recurrent module, in forward() order: linear layers by '
                     'state_dict prefix and activations, e.g. "fc,sigmoid" or "relu,decoder.2,sigmoid".')
    ] = None,
    output_mode: Annotated[
        Optional[OutputMode],
        typer.Option("--output-mode", metavar=metavar(OUTPUT_MODES),
                     help="What the last recurrent module hands on. " + OUTPUT_MODE_HELP
                     + " Default: the --config file's, else last."),
    ] = None,
    chain: Annotated[
        Optional[str],
        typer.Option(metavar="CHAIN", help='The whole model in order, e.g. "emb,lstm,pool:mean,ln,fc,sigmoid" '
                     "(modules by state_dict prefix, activations, pool:last|mean|max|sum, dropout)."),
    ] = None,
    ignore: Annotated[
        Optional[list[str]],
        typer.Option(metavar="MODULE", help="A module whose tensors are dropped on purpose (repeatable); "
                     "any other unused tensor is an error."),
    ] = None,
    feature_names: Annotated[
        Optional[str],
        typer.Option(metavar="a,b,c", help="Comma-separated input feature names (used by --layout long)."),
    ] = None,
    reference: Annotated[
        bool, typer.Option("--reference/--no-reference", help="Store a reference input for `rnnjit verify`.")
    ] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing bundle.")] = False,
    out: Annotated[Optional[str], typer.Option("--out", hidden=True, help="Deprecated: use --output.")] = None,
) -> None:
    """Convert a PyTorch state_dict file to a bundle (torch is not needed).

    What the weights cannot tell and no option stated (nn.RNN's nonlinearity, no activation around an
    inferred head, the output mode, a norm's eps, ...) is assumed, printed as one note: line each with
    the option that states it, and recorded in the bundle (rnnjit inspect lists it).
    """
    import rnnjit

    cfg = read_config(config) if config else None
    if cfg is not None and not reference:
        cfg["reference"] = False  # the flag wins over the file
    if nonlinearity is not None and nonlinearity not in ("tanh", "relu"):
        raise ConfigError(f"--nonlinearity {nonlinearity!r} is not known; expected tanh or relu")
    names = [n.strip() for n in feature_names.split(",") if n.strip()] if feature_names else None
    out, mode = bundle_and_mode(output, out, output_mode.value if output_mode else None)
    _check_bundle_path(out, overwrite)
    model = rnnjit.convert(
        src,
        out,
        rnn_prefix=rnn_prefix,
        nonlinearity=nonlinearity,
        head=head,
        chain=chain,
        ignore=ignore or None,
        output=mode,
        config=cfg,
        feature_names=names,
        reference=reference,
    )
    from rnnjit.cli.inspect_cmd import checkpoint_notes, describe_chain

    typer.echo(visible(  # module names come from the weight file: control characters shown escaped
        f"wrote {out}: {describe_chain(model)}, output {model.output} -> {model.output_dim} value(s) per "
        f"{'step' if model.returns_steps() else 'row'}, {model.num_parameters:,} parameters"
    ))
    for line in checkpoint_notes(model):
        typer.echo(visible(f"  {line}"))
    for a in model.assumed:  # defaults the weights cannot confirm: say each and how to state it
        err(f"note: {cli_words(a['note'], 'convert')}")
