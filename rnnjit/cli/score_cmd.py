"""``rnnjit score``: stream a Parquet dataset through a bundle, write scores."""

from __future__ import annotations

import functools
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from rnnjit import memory
from rnnjit.errors import InputError
from rnnjit.cli._common import (
    ENGINE_HELP, OUTPUT_MODE_HELP, PRECISION_HELP, PRECISION_METAVAR, Engine, OutputMode, Precision, cli_words, err,
    metavar, pick_engine, pick_precision, stderr_is_tty,
)
from rnnjit.engines import ENGINES
from rnnjit.spec import OUTPUT_MODES

EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a terminated job


class Layout(str, Enum):
    list = "list"
    long = "long"


class Format(str, Enum):
    parquet = "parquet"
    csv = "csv"
    jsonl = "jsonl"


class OutputLayout(str, Enum):
    file = "file"
    dataset = "dataset"


class Runner(str, Enum):
    local = "local"
    spark = "spark"


class OnInvalid(str, Enum):
    error = "error"
    skip = "skip"


def _split(values: Optional[list[str]]) -> tuple[str, ...]:
    """Repeatable options that also accept comma lists: -f a -f b == -f a,b."""
    out: list[str] = []
    for v in values or []:
        out += [p.strip() for p in v.split(",") if p.strip()]
    return tuple(dict.fromkeys(out))


def sequence_column_option(sequence_column: str | None, features_column: str | None) -> str:
    """``--sequence-column``, or its old spelling ``--features-column`` with a deprecation line."""
    if features_column is None:
        return sequence_column or "features"
    if sequence_column is not None and sequence_column != features_column:
        raise InputError(f"--sequence-column {sequence_column!r} and --features-column {features_column!r} disagree; "
                         "--features-column is the old name of --sequence-column: drop it")
    err("warning: --features-column is deprecated; use --sequence-column")
    return features_column


def key_columns_option(layout: Layout, id_columns: tuple[str, ...], key_columns: tuple[str, ...]) -> tuple[str, ...]:
    """The columns that identify a row in the output: ``--id-column`` (list layout) or ``--key-column`` (long).

    ``--id-column`` used to name the long layout's sequence key too; that
    spelling still works there, with a one-line deprecation warning.
    """
    if layout is Layout.list:
        if key_columns:
            raise InputError("--key-column applies to --layout long (the sequence key); to copy columns of list "
                             f"input to the output use --id-column {','.join(key_columns)}")
        return id_columns
    if id_columns and key_columns and id_columns != key_columns:
        raise InputError(f"--id-column {','.join(id_columns)} and --key-column {','.join(key_columns)} disagree; "
                         "with --layout long --id-column is the old name of --key-column: drop it")
    if id_columns and not key_columns:
        err(f"warning: --id-column is deprecated for the long layout's sequence key; use --key-column "
            f"{','.join(id_columns)}")
    return key_columns or id_columns


def _terminable(command):
    """SIGTERM at any point of the command: the run's clean-up, one line, exit 143 (see `rnnjit.io.signals`)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        from rnnjit.io.signals import Terminated, sigterm_as_interrupt

        try:
            with sigterm_as_interrupt():
                return command(*args, **kwargs)
        except Terminated:
            err("error: terminated (SIGTERM); no output file was left half-written (committed dataset files are "
                "kept for --resume; _SUCCESS is written only by a complete run)")
            raise typer.Exit(EXIT_TERMINATED) from None

    return run


@_terminable
def score_command(
    model: Annotated[str, typer.Option("--model", "-m", metavar="BUNDLE", help="Bundle (.npz): a path or a URI.")],
    input: Annotated[
        list[str],
        typer.Option("--input", "-i", metavar="PATH", help="Parquet file, directory, glob (quote it) or URI "
                     "(s3://, gs://, hdfs://, file://); repeat for several, scored in order."),
    ],
    output: Annotated[
        str,
        typer.Option("--output", "-o", metavar="PATH", help="File to write (.parquet, .csv, .jsonl; .gz/.zst "
                     "compress text; - for stdout), or a directory (ending in /) for one output file per input file."),
    ],
    layout: Annotated[
        Layout,
        typer.Option(metavar="list|long", help="The input's layout. list: one row per sequence, its steps in "
                     "--sequence-column; long: one row per step, grouped by --key-column, ordered by --order-column."),
    ] = Layout.list,
    sequence_column: Annotated[
        Optional[str],
        typer.Option(metavar="COLUMN", help="List layout: the list<list<float>> column.  [default: features]"),
    ] = None,
    feature_columns: Annotated[
        Optional[list[str]],
        typer.Option(metavar="a,b,c", help="Long layout: feature columns in model order (repeat or comma-separate). "
                     "Default: the bundle's feature names, by name; a bundle without names needs this option "
                     "(except a one-feature model with a single numeric column, which is used and named)."),
    ] = None,
    id_column: Annotated[
        Optional[list[str]],
        typer.Option(metavar="COLUMN", help="List layout: a column to copy to the output (repeatable; default: "
                     "every column except the sequence and state columns)."),
    ] = None,
    key_column: Annotated[
        Optional[list[str]],
        typer.Option(metavar="COLUMN", help="Long layout: the column(s) that identify a sequence (repeatable); "
                     "its steps are grouped by them, and they are copied to the output."),
    ] = None,
    order_column: Annotated[
        Optional[str], typer.Option(metavar="COLUMN", help="Long layout: the step order column.")
    ] = None,
    output_mode: Annotated[
        Optional[OutputMode],
        typer.Option(metavar=metavar(OUTPUT_MODES), help=OUTPUT_MODE_HELP + " Default: the bundle's."),
    ] = None,
    batch_rows: Annotated[int, typer.Option(min=1, metavar="N", help="Rows per batch; bounds memory.")] = 4096,
    threads: Annotated[
        Optional[int], typer.Option(min=1, metavar="N", help="Threads for the numba engine (default: all cores).")
    ] = None,
    emit_state: Annotated[
        bool, typer.Option("--emit-state", help="Also write hn (and cn) per row, to feed back as h0/c0 next run.")
    ] = False,
    format: Annotated[
        Optional[Format],
        typer.Option("--format", metavar="parquet|csv|jsonl", help="parquet; csv (a vector score as score_0.., "
                     "lists as JSON text); jsonl (one JSON object per row). Default: from the extension, else "
                     "parquet."),
    ] = None,
    on_invalid: Annotated[
        OnInvalid, typer.Option(metavar="error|skip", help="error: stop at a null/NaN/inf row, naming it; skip: "
                                "write a null score for it and count it.")
    ] = OnInvalid.error,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary.")] = False,
    engine: Annotated[Optional[Engine], typer.Option(metavar=metavar(ENGINES), help=ENGINE_HELP)] = None,
    precision: Annotated[Optional[Precision], typer.Option(metavar=PRECISION_METAVAR, help=PRECISION_HELP)] = None,
    features_column: Annotated[
        Optional[str], typer.Option("--features-column", hidden=True, help="Deprecated: use --sequence-column.")
    ] = None,
    # -- state columns, datasets and resume (issue #7, #9)
    h0_column: Annotated[
        Optional[str],
        typer.Option(metavar="COLUMN", help="Initial hidden state column (default h0, used when present); "
                     "e.g. --h0-column hn to continue from yesterday's --emit-state output."),
    ] = None,
    c0_column: Annotated[
        Optional[str], typer.Option(metavar="COLUMN", help="Initial cell state column (LSTM; default c0).")
    ] = None,
    output_layout: Annotated[
        Optional[OutputLayout],
        typer.Option(metavar="file|dataset", help="file: one output file; dataset: a directory with one output "
                     "file per input file, same relative paths (default: dataset when --output ends with / or is "
                     "a directory)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Dataset output: skip input files whose output is already committed and "
                           "unchanged (recorded in _rnnjit_manifest.json), redo the rest.")
    ] = False,
    runner: Annotated[
        Runner,
        typer.Option(metavar="local|spark", help="local: this process; spark: Spark mapInArrow, writing a Parquet "
                     "directory."),
    ] = Runner.local,
    master: Annotated[
        Optional[str],
        typer.Option(metavar="URL", help="--runner spark: local[2], yarn, spark://host:7077, k8s://... "
                     "(default: spark-submit's, else local[*]).")
    ] = None,
) -> None:
    """Score sequences from Parquet with a bundle and write one row per sequence.

    Output columns: the pass-through columns, then score (float32 for one
    value, fixed_size_list<float32>[O] for O values, a list per step for
    --output-mode all), then hn/cn with --emit-state. CSV writes a vector score
    as score_0..score_{O-1} and list columns as JSON text.
    """
    import rnnjit
    from rnnjit.io.fs import is_uri, local_copy
    from rnnjit.io.targets import check_file_output, wants_dataset
    from rnnjit.io.signals import Terminated
    from rnnjit.local import score_dataset
    from rnnjit.scoring import RunOptions, ScoreOptions

    fmt = format.value if format else None
    lay = output_layout.value if output_layout else None
    if runner is Runner.spark:
        if resume or lay == "file":
            raise InputError("--runner spark writes one Parquet dataset directory; drop --resume and --output-layout")
    elif master is not None:
        raise InputError("--master applies to --runner spark; add --runner spark or drop --master")
    elif not wants_dataset(output, lay):
        check_file_output(output, overwrite, fmt)  # fail before loading anything
    sequence_column = sequence_column_option(sequence_column, features_column)
    eng = pick_engine(engine, threads)
    prec = pick_precision(precision, eng)
    ids = key_columns_option(layout, _split(id_column), _split(key_column))
    feats = _split(feature_columns)
    if layout is Layout.list and (feats or order_column):
        opt = "--feature-columns" if feats else "--order-column"
        raise rnnjit.InputError(f"{opt} applies to --layout long; for list input use --sequence-column")
    if not is_uri(model) and not Path(model).exists():  # not a regular file: rnnjit.load says what it is
        raise rnnjit.InputError(
            f"Invalid value for '--model': bundle {model!r} does not exist; create one with "
            f"`rnnjit convert model.pth --output {model}`"
        )
    with local_copy(model) as path:
        m = rnnjit.load(path)
    options = RunOptions(  # built once here, passed whole to either runner
        score=ScoreOptions(
            features_column=sequence_column,
            pass_through=ids or None,
            id_columns=ids,
            output_mode=output_mode.value if output_mode else None,
            emit_state=emit_state,
            on_invalid=on_invalid.value,
            engine=eng,
            threads=threads,
            precision=prec,
            h0_column=h0_column or "h0",
            c0_column=c0_column or "c0",
            memory_limit=memory.limit(),  # --memory-limit, carried to Spark's executors with the options
        ),
        layout=layout.value,
        order_column=order_column,
        feature_columns=feats or None,
        explicit_state=tuple(c for c in (h0_column, c0_column) if c),
        batch_rows=batch_rows,
        fmt=fmt,
        output_layout=lay,
        overwrite=overwrite,
        resume=resume,
    )
    show = (not quiet) and stderr_is_tty()
    if runner is Runner.spark:  # the same options, plan and score_batch, run by Spark (rnnjit.spark)
        from rnnjit.spark.runner import score_files

        summary = score_files(model, list(input), output.rstrip("/"), options, master=master, progress=show)
        if not quiet:
            err(summary.line())
        return
    try:
        summary = score_dataset(m, list(input), output, options, progress=show,
                                on_note=lambda note: err(cli_words(note)) if note.startswith("warning:") else None)
    except Terminated:
        raise  # _terminable reports it
    except KeyboardInterrupt:
        err("error: interrupted; no output was written")
        raise typer.Exit(130) from None
    if not quiet:
        summary.notes[:] = [n for n in summary.notes if not n.startswith("warning:")]  # printed as they arose
        err(summary.line())
