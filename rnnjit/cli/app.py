"""The ``rnnjit`` command: convert, score, inspect, verify, export-c (and bench when installed).

Every user mistake ends the same way: one line ``error: ...`` on stderr (what
was found, what was expected, how to fix it) and exit code 2, no traceback.
"""

from __future__ import annotations

import re
import sys
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup

try:  # typer >= 0.2x vendors click as typer._click; older typer uses click itself
    from typer._click import exceptions as _cx
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as _cx

from rnnjit._version import __version__
from rnnjit.cli._common import EXIT_INTERRUPTED, EXIT_USAGE, cli_words, err, with_memory_limit
from rnnjit.errors import RnnjitError


_NoArgsIsHelp = getattr(_cx, "NoArgsIsHelpError", ())  # `rnnjit` alone: show the help
_Abort = getattr(_cx, "Abort", typer.Abort)


_NOT_ONE_OF = re.compile(r"'(?P<value>[^']*)' is not one of (?P<choices>'[^']*'(?:,? (?:or )?'[^']*')*)")


def _bad_choice(exc) -> str | None:
    """``--output-mode 'bogus' is not one of last, final, all`` for a choice option given another word.

    click and typer word it as ``Invalid value for '--output-mode': [Value error, ]'bogus' is not one of
    'last', 'final', 'all'.``, depending on their version; the option and the choices are what matter.
    """
    param = getattr(exc, "param", None)
    m = _NOT_ONE_OF.search(str(getattr(exc, "message", "")))
    if param is None or m is None or not getattr(param, "opts", None):
        return None
    flag = max(param.opts, key=len)
    choices = ", ".join(re.findall(r"'([^']*)'", m.group("choices")))
    return f"{flag} {m.group('value')!r} is not one of {choices}"


class _OneLineErrors(TyperGroup):
    """Turn usage errors and `RnnjitError` into one ``error:`` line and exit code 2."""

    def _command(self, args) -> str | None:
        """The subcommand ``args`` (or the process's arguments) run: whose flags its errors name."""
        words = list(sys.argv[1:] if args is None else args)
        return next((w for w in words if w in self.commands), None)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra: Any):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NoArgsIsHelp as exc:
            typer.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
            sys.exit(EXIT_USAGE)
        except _cx.UsageError as exc:
            bad_choice = _bad_choice(exc)
            if bad_choice:
                err(f"error: {bad_choice}")
                sys.exit(EXIT_USAGE)
            cmd = exc.ctx.command_path if exc.ctx else "rnnjit"
            err(f"error: {exc.format_message()} (see '{cmd} --help')")
            sys.exit(EXIT_USAGE)
        except _cx.ClickException as exc:
            err(f"error: {exc.format_message()}")
            sys.exit(exc.exit_code)
        except RnnjitError as exc:
            err(f"error: {cli_words(str(exc), self._command(args))}")
            sys.exit(EXIT_USAGE)
        except _Abort:
            err("error: interrupted; no output was written")
            sys.exit(EXIT_INTERRUPTED)
        except KeyboardInterrupt:
            err("error: interrupted; no output was written")
            sys.exit(EXIT_INTERRUPTED)
        except OSError as exc:  # permission denied, disk full, ...: the user's environment
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            err(f"error: {exc.strerror or exc}{where}; check the path, its permissions and free space")
            sys.exit(EXIT_USAGE)
        sys.exit(rv if isinstance(rv, int) else 0)


class _Command(TyperCommand):
    """Usage lines name arguments as the README does (``rnnjit convert [OPTIONS] SRC``).

    Recent typer writes a required argument as ``{src}``; click's own style is
    the metavar in capitals, optional ones in brackets.
    """

    def collect_usage_pieces(self, ctx):
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar or param.name.upper()
                name = name if param.required else f"[{name}]"
                pieces.append(name + ("..." if param.nargs != 1 else ""))
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


app = typer.Typer(
    name="rnnjit",
    cls=_OneLineErrors,
    help="Score PyTorch-trained RNN/LSTM/GRU models on Parquet, without PyTorch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rnnjit {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Score PyTorch-trained RNN/LSTM/GRU models on Parquet, without PyTorch."""


from rnnjit.cli.convert_cmd import convert_command  # noqa: E402
from rnnjit.cli.export_c_cmd import export_c_command  # noqa: E402
from rnnjit.cli.inspect_cmd import inspect_command  # noqa: E402
from rnnjit.cli.score_cmd import score_command  # noqa: E402
from rnnjit.cli.verify_cmd import verify_command  # noqa: E402

app.command("convert", cls=_Command)(with_memory_limit(convert_command))
app.command("score", cls=_Command)(with_memory_limit(score_command))
app.command("inspect", cls=_Command)(with_memory_limit(inspect_command))
app.command("verify", cls=_Command)(with_memory_limit(verify_command))
app.command("export-c", cls=_Command)(with_memory_limit(export_c_command))

try:  # the bench command ships with the kernels work; register it when present
    from rnnjit.cli.bench_cmd import bench_command  # noqa: E402
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the checkout
    if _exc.name != "rnnjit.cli.bench_cmd":
        raise
    bench_command = None
if bench_command is not None:
    app.command("bench", cls=_Command)(bench_command)


def main() -> None:
    """Console entry point (``rnnjit``)."""
    app(prog_name="rnnjit")


if __name__ == "__main__":
    main()
