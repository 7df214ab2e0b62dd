"""The local runner: score a Parquet dataset in this process and write the result atomically.

Memory is bounded by ``batch_rows`` (and the input's Parquet row-group size),
not by the size of the input:

- the input (a file, a directory or a glob) is read in batches
  (`rnnjit.io.dataset`), with the next batch read while this one is scored;
- in the long layout (one row per step) steps are grouped into sequences
  (`rnnjit.io.long_layout`);
- each batch goes through `rnnjit.scoring.score_batch` and is appended to the
  output sink (`rnnjit.io.sinks`), written under a temporary name in the
  output's directory and renamed when complete (removed on any error or Ctrl-C).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnnjit.engines import engine_threads, resolve
from rnnjit.errors import InputError
from rnnjit.io.dataset import count_rows, iter_batches, open_dataset
from rnnjit.io.sinks import Sink, check_output, infer_format
from rnnjit.plan import LAYOUTS, plan_scoring
from rnnjit.scoring import ScoreOptions, ScoreStats, score_batch

# --------------------------------------------------------------------------- progress
class Progress:
    """A rich progress bar on stderr when it is a terminal; otherwise nothing."""

    def __init__(self, total: int | None, enabled: bool):
        self._p = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class _Rate(ProgressColumn):
            def render(self, task):  # rows per second, from rich's moving average
                speed = task.finished_speed or task.speed
                return Text(f"{speed:,.0f} rows/s" if speed else "", style="progress.data.speed")

        cols = [TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"), _Rate(), TimeElapsedColumn()]
        if total:
            cols.append(TimeRemainingColumn())
        self._p = Progress(*cols, console=Console(stderr=True), transient=True)
        self._p.start()
        self._task = self._p.add_task("scoring", total=total)

    def advance(self, n: int) -> None:
        if self._p is not None:
            self._p.advance(self._task, n)

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()
            self._p = None


# --------------------------------------------------------------------------- driver
@dataclass
class Summary(ScoreStats):
    """What a scoring run did: the scoring counters, plus input rows, time and output."""

    input_rows: int = 0
    seconds: float = 0.0
    output: str = ""
    layout: str = "list"
    notes: list[str] = field(default_factory=list)
    engine: str = ""  # the engine that ran and its threads (rnnjit.engines)
    threads: int = 0

    @property
    def rows_per_second(self) -> float:
        return self.input_rows / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """The one-line summary the CLI prints on stderr."""
        if self.layout == "long":
            what = f"{self.rows:,} sequences from {self.input_rows:,} input rows"
        else:
            what = f"{self.rows:,} rows"
        ran = f", engine {self.engine} ({self.threads} thread{'s' if self.threads != 1 else ''})" if self.engine else ""
        return (
            f"scored {what} ({self.invalid:,} invalid, {self.empty:,} empty) in {self.seconds:.2f} s, "
            f"{self.rows_per_second:,.0f} rows/s{ran} -> {self.output}"
        )


def _warm_up(model, options: ScoreOptions) -> None:
    try:
        model.predict(np.zeros((1, 1, model.spec.input_size), model.dtype), engine=options.engine)
    except Exception:  # noqa: BLE001 - the real call reports any problem
        pass


def score_dataset(
    model,
    input,
    output,
    *,
    options: ScoreOptions | None = None,
    layout: str = "list",
    order_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    fmt: str | None = None,
    batch_rows: int = 4096,
    overwrite: bool = False,
    progress: bool | None = None,
) -> Summary:
    """Score a Parquet dataset and write the result atomically.

    Parameters
    ----------
    model : rnnjit.Model
    input : a Parquet file, a directory of Parquet files, or a glob.
    output : the file to write (parquet, csv or jsonl; see ``fmt``).
    options : ScoreOptions
        Columns, output mode, state, invalid-row policy, engine, threads.
        In the long layout ``options.id_columns`` is the sequence key.
    layout : "list" (one row per sequence) or "long" (one row per step).
    order_column, feature_columns : long layout only.
    fmt : "parquet" | "csv" | "jsonl"; default from the output's extension, else parquet.
    batch_rows : rows read per batch; bounds memory.
    overwrite : replace an existing output.
    progress : show a progress bar; default when stderr is a terminal.

    Returns
    -------
    Summary
    """
    options = options or ScoreOptions()
    # Loading the compiled kernels takes a moment (numba import, cache): do it
    # while the dataset is opened and the first batch is read.
    warm = threading.Thread(target=_warm_up, args=(model, options), daemon=True)
    warm.start()
    if layout not in LAYOUTS:
        raise InputError(f"layout {layout!r} is not known; expected one of {', '.join(LAYOUTS)}")
    if not isinstance(batch_rows, (int, np.integer)) or batch_rows < 1:
        raise InputError(f"batch_rows must be a positive integer, got {batch_rows!r}")
    fmt = infer_format(output, fmt)
    out_path = check_output(output, overwrite)
    if os.path.isdir(str(input)) and Path(input).resolve() in out_path.resolve().parents:
        raise InputError(
            f"output {str(output)!r} is inside the input directory {str(input)!r}, so the next run would "
            "read it as input; write it somewhere else"
        )
    t0 = time.perf_counter()
    dataset = open_dataset(input)
    plan = plan_scoring(
        model, dataset.schema, options, layout=layout, order_column=order_column, feature_columns=feature_columns
    )

    total = count_rows(dataset)
    if progress is None:
        progress = sys.stderr.isatty()
    bar = Progress(total, progress)
    summary = Summary(output=str(out_path), layout=layout)
    summary.engine = resolve(options.engine)
    summary.threads = engine_threads(summary.engine, options.threads)
    sink = Sink(out_path, plan.output_schema, fmt)
    batches = iter_batches(dataset, plan.columns, batch_rows)
    try:
        for batch, consumed in plan.sequences(batches, model.dtype):
            warm.join()
            result = score_batch(model, batch, plan.options, stats=summary, row_offset=summary.rows)
            sink.write(result)
            summary.input_rows += consumed
            bar.advance(consumed)
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    finally:
        batches.close()  # stops the reader thread now, not when the generator is collected
        bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary
