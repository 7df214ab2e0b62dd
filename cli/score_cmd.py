"""``rnnjit score``: stream a Parquet dataset through a bundle, write scores."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from rnnjit.cli._common import Engine, OutputMode, err, stderr_is_tty


class Layout(str, Enum):
    list = "list"
    long = "long"


class Format(str, Enum):
    parquet = "parquet"
    csv = "csv"
    jsonl = "jsonl"


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


def score_command(
    model: Annotated[
        Path, typer.Option("--model", "-m", exists=True, dir_okay=False, readable=True, help="Bundle (.npz).")
    ],
    input: Annotated[str, typer.Option("--input", "-i", help="Parquet file, directory or glob (quote it).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="File to write (--runner spark: a Parquet dataset directory).")
    ],
    layout: Annotated[Layout, typer.Option(help="list: one row per sequence; long: one row per step.")] = Layout.list,
    features_column: Annotated[str, typer.Option(help="List layout: the sequence column.")] = "features",
    feature_columns: Annotated[
        Optional[list[str]],
        typer.Option(help="Long layout: feature columns in model order (repeat or comma-separate). "
                     "Default: the bundle's feature names, else every other numeric column."),
    ] = None,
    id_column: Annotated[
        Optional[list[str]],
        typer.Option(help="Column to copy to the output (repeatable). Long layout: the sequence key. "
                     "List layout default: every column except features/h0/c0."),
    ] = None,
    order_column: Annotated[Optional[str], typer.Option(help="Long layout: the step order column.")] = None,
    output_mode: Annotated[
        Optional[OutputMode], typer.Option(help="last, final or all (default: the bundle's).")
    ] = None,
    batch_rows: Annotated[int, typer.Option(min=1, help="Rows per batch; bounds memory.")] = 4096,
    threads: Annotated[Optional[int], typer.Option(min=1, help="Threads for the numba engine.")] = None,
    emit_state: Annotated[
        bool, typer.Option(help="Also write hn (and cn) per row, to feed back as h0/c0 next run.")
    ] = False,
    format: Annotated[
        Optional[Format], typer.Option("--format", help="parquet, csv or jsonl (default: from the extension, else parquet).")
    ] = None,
    on_invalid: Annotated[
        OnInvalid, typer.Option(help="error: stop at a null/NaN/inf row; skip: write a null score and count it.")
    ] = OnInvalid.error,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary.")] = False,
    engine: Annotated[Optional[Engine], typer.Option(help="numba (default when available) or numpy.")] = None,
    runner: Annotated[
        Runner, typer.Option(help="local: this process; spark: Spark mapInArrow, writing a Parquet directory.")
    ] = Runner.local,
    master: Annotated[
        Optional[str], typer.Option(help="--runner spark: local[2], yarn, spark://host:7077, k8s://... "
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
    from rnnjit.scoring import ScoreOptions
    from rnnjit.io.sinks import check_output
    from rnnjit.local import score_dataset

    if runner is Runner.local:
        if master is not None:
            raise rnnjit.InputError("--master applies to --runner spark; add --runner spark or drop --master")
        check_output(output, overwrite)  # fail before loading anything
    ids = _split(id_column)
    feats = _split(feature_columns)
    if layout is Layout.list and (feats or order_column):
        opt = "--feature-columns" if feats else "--order-column"
        raise rnnjit.InputError(f"{opt} applies to --layout long; for list input use --features-column")
    m = rnnjit.load(model)
    options = ScoreOptions(
        features_column=features_column,
        pass_through=ids or None,
        id_columns=ids,
        output_mode=output_mode.value if output_mode else None,
        emit_state=emit_state,
        on_invalid=on_invalid.value,
        engine=engine.value if engine else None,
        threads=threads,
    )
    if runner is Runner.spark:  # the same options, plan and score_batch, run by Spark (rnnjit.spark)
        from rnnjit.spark.runner import score_files

        summary = score_files(
            model, input, output, options=options, layout=layout.value, order_column=order_column,
            feature_columns=feats or None, fmt=format.value if format else None, batch_rows=batch_rows,
            overwrite=overwrite, master=master, progress=(not quiet) and stderr_is_tty(),
        )
        if not quiet:
            err(summary.line())
        return
    try:
        summary = score_dataset(
            m,
            input,
            output,
            options=options,
            layout=layout.value,
            order_column=order_column,
            feature_columns=feats or None,
            fmt=format.value if format else None,
            batch_rows=batch_rows,
            overwrite=overwrite,
            progress=(not quiet) and stderr_is_tty(),
        )
    except KeyboardInterrupt:
        err("error: interrupted; no output was written")
        raise typer.Exit(130) from None
    if not quiet:
        err(summary.line())
