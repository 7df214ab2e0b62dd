"""Shared CLI plumbing: one-line errors on stderr, exit codes."""

from __future__ import annotations

import functools
import inspect
import re
import sys
import warnings
from enum import Enum
from typing import Annotated, Optional

import typer

from rnnjit import engines, memory
from rnnjit.engines import ENGINES
from rnnjit.errors import PrecisionUnavailableError
from rnnjit.numba_loader import NumbaCacheWarning
from rnnjit.spec import OUTPUT_MODES, PRECISIONS

EXIT_USAGE = 2  # bad input or a user mistake
EXIT_FAILED = 1  # the command ran but the check it performs failed (verify)
EXIT_INTERRUPTED = 130


def choices(name: str, values) -> type[Enum]:
    """A typer choice type whose members are the library's own tuple of allowed values."""
    return Enum(name, {v: v for v in values}, type=str)


Engine = choices("Engine", ENGINES)
OutputMode = choices("OutputMode", OUTPUT_MODES)
Precision = choices("Precision", PRECISIONS)
PRECISION_HELP = (
    "float32 (default: the bundle's own dtype); bf16: weights, each step's input and state rounded to bfloat16 "
    "for the recurrent products (AVX512_BF16); int8: weights per row and each step's input and state per "
    "sequence quantized to int8 (AVX512_VNNI). See `rnnjit verify --precision` for what it costs."
)
PRECISION_METAVAR = "|".join(PRECISIONS)


def pick_precision(precision: Enum | None, engine: str) -> str:
    """Resolve ``--precision`` for the resolved ``engine``: an error (exit 2) before any work when this CPU lacks
    the instructions; the numpy engine emulates a reduced precision, slowly (one line says so)."""
    name = precision.value if precision is not None else "float32"
    try:
        engines.check_precision(name, engine)
    except PrecisionUnavailableError as exc:  # the library names the API keyword; the command says its flag
        raise PrecisionUnavailableError(str(exc).replace("precision='float32'", "--precision float32")) from None
    if name != "float32" and engine == "numpy":
        err(f"warning: the numpy engine emulates {name} products in numpy, about 100x slower than the numba engine")
    return name


MEMORY_LIMIT_HELP = (
    "Most memory one input may make rnnjit allocate (inflated archive members, tensors, padded batches), "
    "e.g. 4G; default $RNNJIT_MEMORY_LIMIT or 1G. A larger file is refused with one line naming this option."
)


def with_memory_limit(command):
    """Add ``--memory-limit SIZE`` to a typer command and run it under that limit (`rnnjit.memory.limited`)."""
    # Annotations resolved in the command module's names, not ours. Not typing.get_type_hints: before Python
    # 3.11 it wraps an annotation whose default is None in Optional[...], hiding the Annotated typer reads.
    sig = inspect.signature(command, eval_str=True)
    option = inspect.Parameter(
        "memory_limit", inspect.Parameter.KEYWORD_ONLY, default=None,
        annotation=Annotated[Optional[str], typer.Option("--memory-limit", metavar="SIZE", help=MEMORY_LIMIT_HELP)],
    )

    @functools.wraps(command)
    def run(*args, memory_limit: Optional[str] = None, **kwargs):
        with memory.limited(memory_limit):
            return command(*args, **kwargs)

    run.__signature__ = sig.replace(parameters=[*sig.parameters.values(), option])
    return run


def visible(text: str) -> str:
    """``text`` with control characters escaped (``\\x1b``): names from a file never drive the terminal."""
    text = str(text)
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)

# One wording per option in every command, with what each choice does.
OUTPUT_MODE_HELP = (
    "last: the output at each sequence's last valid step; final: the last layer's final hidden "
    "states (hn, directions concatenated); all: every valid step's output (a list per row)."
)
ENGINE_HELP = (
    "numba: the compiled kernels (the default when numba loads); numpy: the exact numpy reference "
    "engine, slower, needs only numpy."
)


def metavar(values) -> str:
    """The metavar of a choice option: ``last|final|all`` (the same style in every command)."""
    return "|".join(values)


def err(message: str) -> None:
    """Print one line to stderr (newlines in ``message`` are folded, control characters escaped)."""
    line = " ".join(str(message).split())
    typer.echo(visible(line), err=True)


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``error: message`` and return the Exit to raise."""
    err(f"error: {message}")
    return typer.Exit(code)


def pick_engine(engine: Enum | None, threads: int | None = None) -> str:
    """Resolve ``--engine`` on this machine before any work, saying so when it is not the compiled one.

    numba that cannot load: with ``--engine numba`` an error (exit 2) naming
    ``--engine numpy``; by default one ``warning:`` line (what failed, how to
    fix it) and the numpy engine. ``--threads`` with the numpy engine: one line
    saying it is not used.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", engines.NumbaUnavailableWarning)
        warnings.simplefilter("always", NumbaCacheWarning)
        name = engines.resolve(engine.value if engine is not None else None)
    for w in caught:
        if issubclass(w.category, (engines.NumbaUnavailableWarning, NumbaCacheWarning)):
            err(f"warning: {w.message}")
        else:  # not ours: hand it back to the warnings machinery
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if name == "numpy" and threads is not None and threads > 1:  # one thread is what it does anyway
        err(f"warning: --threads {threads} is not used: the numpy engine runs in one thread")
    return name


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


# Library messages name an option as the Python API spells it (``emit_state``, ``on_invalid='skip'``,
# ``chain='emb,lstm,...'``, ``ignore=['attn']``); a command's error, warning and note lines say its flag.
# ``name=`` keys are words of plain prose too ("the chain"), so only their keyword form is translated.
_FLAGS: dict[str, dict[str, str]] = {
    "*": {"memory_limit": "--memory-limit"},
    "score": {"h0_column": "--h0-column", "c0_column": "--c0-column", "batch_rows": "--batch-rows",
              "output_layout": "--output-layout", "resume": "--resume", "overwrite": "--overwrite",
              "fmt": "--format", "layout=": "--layout", "on_invalid": "--on-invalid", "id_columns": "--id-column",
              "key_columns": "--key-column", "order_column": "--order-column",
              "features_column": "--sequence-column", "feature_columns": "--feature-columns",
              "emit_state": "--emit-state", "feature_names=": "--feature-names"},
    "convert": {"rnn_prefix": "--rnn-prefix", "nonlinearity=": "--nonlinearity", "head=": "--head",
                "chain=": "--chain", "ignore=": "--ignore", "output=": "--output-mode",
                "feature_names=": "--feature-names"},
    "export-c": {"overwrite": "--overwrite"},
}
_LONG_KEY = {"id_columns": "--key-column"}  # with --layout long the sequence key's flag is --key-column
_COMMA_LISTS = {"--feature-names", "--feature-columns", "--key-column", "--id-column"}  # "a,b,c" on the command line
_VALUE = r"'[^']*'|\[[^\]]*\]|[\w.]+"
_WORDS = {
    cmd: (table := {**_FLAGS["*"], **_FLAGS.get(cmd, {})},
          re.compile(r"(?<![\w-])(" + "|".join(re.escape(k.rstrip("=")) for k in sorted(table, key=len, reverse=True))
                     + r")(?:(=)(" + _VALUE + r")?)?(?![\w-])"))
    for cmd in ("*", "score", "convert", "export-c")
}
_WORDS["verify"] = _WORDS["inspect"] = _WORDS["convert"]  # their notes and errors say how to convert


def _flag_value(flag: str, value: str) -> str:
    """``--chain 'emb,lstm'`` for ``chain='emb,lstm'``; a list repeats the flag (or joins it with commas);
    quotes only where the shell needs them."""
    if value == "True":
        return flag
    if value.startswith("["):
        items = re.findall(r"'([^']*)'", value)
        if flag in _COMMA_LISTS:
            return _flag_value(flag, repr(",".join(items)))
        return " ".join(_flag_value(flag, repr(i)) for i in items)
    if value.startswith("'"):
        value = value[1:-1]
        plain = r"[\w.:/,-]+" if flag in _COMMA_LISTS else r"[\w.:/-]+"
        return f"{flag} {value}" if re.fullmatch(plain, value) else f"{flag} '{value}'"
    return f"{flag} {value}"


def cli_words(message: str, command: str | None = "score") -> str:
    """``message`` with the API names of options (and their keyword values) written as ``command``'s flags."""
    table, pattern = _WORDS.get(command or "*", _WORDS["*"])
    if command == "score" and "layout='long'" in message:
        table = {**table, **_LONG_KEY}

    def flag(m: re.Match) -> str:
        word, equals, value = m.groups()
        name = word if word in table else word + "="
        if name not in table or (name.endswith("=") and not equals):
            return m.group(0)
        return _flag_value(table[name], value) if value is not None else table[name]

    return pattern.sub(flag, message)
