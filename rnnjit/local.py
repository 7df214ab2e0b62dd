"""The local runner: score a Parquet dataset in this process and write the result atomically.

Memory is bounded by ``batch_rows`` (and the input's Parquet row-group size),
not by the size of the input:

- the input (files, directories, globs or URIs) is listed and read file by
  file in batches (`rnnjit.io.dataset`), the next batch read while this one is
  scored;
- in the long layout (one row per step) steps are grouped into sequences
  (`rnnjit.io.long_layout`);
- each batch goes through `rnnjit.scoring.score_batch` and is appended to an
  output sink (`rnnjit.io.sinks`), written under a temporary name and renamed
  when complete (removed on any error, Ctrl-C or SIGTERM): one output file, or
  for a dataset output one per input file, recorded in a manifest so that
  ``resume`` redoes only the files without a committed output.
"""

from __future__ import annotations

import bisect
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from rnnjit.engines import engine_threads
from rnnjit.engines import resolve as resolve_engine
from rnnjit.errors import InputError
from rnnjit.io import killpoints, pandas_meta
from rnnjit.io.dataset import InputSet, footer_hash, open_input, prefetched, read_file
from rnnjit.io.dataset_out import OutputDir, fingerprint, input_root
from rnnjit.io.fs import remove_stale_temps, resolve
from rnnjit.io.signals import sigterm_as_interrupt
from rnnjit.io.sinks import Sink
from rnnjit.io.targets import check_file_output, refuse_input_as_output, refuse_output_inside_input, wants_dataset
from rnnjit.plan import LAYOUTS, plan_scoring
from rnnjit.scoring import RunOptions, ScoreOptions, ScoreStats, score_batch

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
    """What a scoring run did: the scoring counters, plus input rows, files, time and output."""

    input_rows: int = 0
    seconds: float = 0.0
    output: str = ""
    layout: str = "list"
    files_written: int = 0
    files_done_before: int = 0
    files_removed: int = 0  # outputs of inputs that are gone (or replaced by --overwrite)
    notes: list[str] = field(default_factory=list)
    engine: str = ""  # the engine that ran and its threads (rnnjit.engines)
    threads: int = 0
    precision: str = ""  # what the recurrent products computed in (rnnjit.spec.PRECISIONS)

    @property
    def rows_per_second(self) -> float:
        return self.input_rows / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """The one-line summary the CLI prints on stderr."""
        if self.layout == "long":
            what = f"{self.rows:,} sequences from {self.input_rows:,} input rows"
        else:
            what = f"{self.rows:,} rows"
        files = ""
        if self.files_written > 1 or self.files_done_before or self.files_removed:
            files = f" ({self.files_written:,} files written"
            files += f", {self.files_done_before:,} already done" if self.files_done_before else ""
            files += f", {self.files_removed:,} stale removed" if self.files_removed else ""
            files += ")"
        ran = f", engine {self.engine} ({self.threads} thread{'s' if self.threads != 1 else ''})" if self.engine else ""
        ran += f", precision {self.precision}" if self.precision else ""
        notes = "".join(f"; {n.removeprefix('warning: ')}" for n in self.notes)
        return (
            f"scored {what} ({self.invalid:,} invalid, {self.empty:,} empty) in {self.seconds:.2f} s, "
            f"{self.rows_per_second:,.0f} rows/s{ran} -> {self.output}{files}{notes}"
        )


def _warm_up(model, options: ScoreOptions) -> None:
    try:
        # the model's own input: token ids, or the first step's width (not the recurrent module's)
        x = np.zeros((1, 1), np.int64) if model.takes_tokens else np.zeros((1, 1, model.input_size), model.dtype)
        model.with_precision(options.precision).predict(x, engine=options.engine)
    except Exception:  # noqa: BLE001 - the real call reports any problem
        pass


class _Where:
    """Follows the batches as they pass, to name a file and a row within it in messages."""

    def __init__(self, inputs: InputSet):
        self.inputs = inputs
        self.named = len(inputs.files) > 1
        self._starts: list[int] = []
        self._at: list[tuple[int, int]] = []  # (file index, row in file) of each batch's first row
        self._last = 0
        self.file = 0
        self.row_in_file = 0

    def track(self, pieces):
        seen = 0
        for fi, batch in pieces:
            if not self._at or self._at[-1][0] != fi:
                in_file = 0
            else:
                in_file = self._at[-1][1] + self._last
            self._starts.append(seen)
            self._at.append((fi, in_file))
            self._last = batch.num_rows
            self.file, self.row_in_file = fi, in_file
            seen += batch.num_rows
            killpoints.reach("read")
            yield batch

    def locate(self, n: int) -> tuple[str | None, int]:
        """``(file, row within it)`` of the n-th input row (file None for a single-file input)."""
        if not self._at:
            return None, n
        k = max(bisect.bisect_right(self._starts, n) - 1, 0)
        fi, r0 = self._at[k]
        return (self.inputs.files[fi].uri if self.named else None), r0 + n - self._starts[k]

    def name_file(self, exc: InputError) -> InputError:
        """``exc`` prefixed with the current file (multi-file input only)."""
        if not self.named:
            return exc
        return InputError(f"file {self.inputs.files[self.file].uri!r} {exc}")


def score_dataset(
    model,
    input,
    output,
    options: RunOptions | ScoreOptions | None = None,
    *,
    progress: bool | None = None,
    filesystem=None,
    on_note=None,
    **fields,
) -> Summary:
    """Score a Parquet dataset and write the result atomically.

    Parameters
    ----------
    model : rnnjit.Model
    input : a Parquet file, directory, glob or URI, or a list of them (read in order).
    output : the file to write (parquet, csv or jsonl; see ``fmt``; ``"-"`` is
        standard output), or for a dataset output the directory.
    options : RunOptions, or ScoreOptions for its ``score`` part
        What to read and write (layout, batch_rows, fmt, overwrite, resume,
        output_layout, explicit_state...) and how to score each batch (columns,
        output mode, state, invalid-row policy, engine, threads). In the long
        layout ``options.score.id_columns`` is the sequence key.
    progress : show a progress bar; default when stderr is a terminal.
    filesystem : a `pyarrow.fs.FileSystem` holding both input and output
        (default: local paths, or the URI's filesystem).
    on_note : callable(str) told each note (warning) as it arises.
    **fields : any field of `RunOptions` or `ScoreOptions` (``layout="long"``,
        ``resume=True``...), applied over ``options``.

    Returns
    -------
    Summary
    """
    run = RunOptions.build(options, **fields)
    # Loading the compiled kernels takes a moment (numba import, cache): do it
    # while the dataset is opened and the first batch is read.
    warm = threading.Thread(target=_warm_up, args=(model, run.score), daemon=True)
    warm.start()
    if run.layout not in LAYOUTS:
        raise InputError(f"layout {run.layout!r} is not known; expected one of {', '.join(LAYOUTS)}")
    inputs_given = [input] if isinstance(input, (str, bytes)) or not isinstance(input, Sequence) else list(input)
    dataset_out = wants_dataset(output, run.output_layout, filesystem)
    if run.resume and not dataset_out:
        raise InputError("resume needs a dataset output (a directory: output_layout='dataset' or a name ending in /)")
    t0 = time.perf_counter()
    if not dataset_out:
        target = check_file_output(output, run.overwrite, run.fmt, filesystem)
        refuse_output_inside_input(target.loc, inputs_given, filesystem)
    else:
        refuse_output_inside_input(resolve(str(output).rstrip("/") or "/", filesystem), inputs_given, filesystem)
    inputs = open_input(inputs_given, filesystem)
    plan = plan_scoring(model, inputs.schema, run.score, layout=run.layout, order_column=run.order_column,
                        feature_columns=run.feature_columns, explicit_state=run.explicit_state)
    summary = Summary(layout=run.layout)
    notes = list(plan.notes)
    if inputs.skipped:
        shown = ", ".join(inputs.skipped[:3]) + (", ..." if len(inputs.skipped) > 3 else "")
        notes.append(f"skipped {len(inputs.skipped)} file(s) that are not Parquet data ({shown})")
    for n in notes:
        summary.notes.append(n)
        if on_note:
            on_note(n)
    if progress is None:
        progress = sys.stderr.isatty()
    summary.engine = resolve_engine(run.score.engine)
    summary.threads = engine_threads(summary.engine, run.score.threads)
    summary.precision = run.score.precision or model.precision
    bar = Progress(inputs.count_rows() if progress else None, bool(progress))
    try:
        with sigterm_as_interrupt():
            if dataset_out:
                roots = [input_root(i, filesystem) for i in inputs_given]
                _score_to_dataset(model, inputs, plan, output, run, filesystem, summary, bar, warm, roots)
            else:
                refuse_input_as_output(target.loc, inputs.files)
                _score_to_file(model, inputs, plan, target, run.batch_rows, summary, bar, warm)
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _score_to_file(model, inputs, plan, target, batch_rows, summary, bar, warm) -> None:
    summary.output = target.name
    if target.loc is not None:
        remove_stale_temps(target.loc.parent())
    schema = pandas_meta.restrict(inputs.schema, plan.output_schema,
                                  keep_range_index=plan.long is None and len(inputs.files) == 1)
    where = _Where(inputs)
    pieces = ((fi, b) for fi, f in enumerate(inputs.files)
              for b in read_file(f, inputs.schema, plan.columns, batch_rows, inputs.partition_fields))
    batches = where.track(prefetched(pieces))
    with _writing(lambda: Sink.for_file(target, schema), batches) as sink:
        for batch, consumed in plan.sequences(batches, model.dtype, where.locate):
            _score_into(model, batch, consumed, plan, summary, sink, bar, warm, where)
    summary.files_written = 1


@contextmanager
def _writing(make_sink, batches):
    """The sink ``make_sink()`` makes, committed at the end of the block, removed on any error (Ctrl-C,
    SIGTERM); the reader of ``batches`` is stopped either way (now, not when the generator is collected)."""
    sink = None
    try:
        sink = make_sink()
        yield sink
        sink.commit()
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    finally:
        batches.close()


def _score_into(model, batch, consumed, plan, summary, sink, bar, warm, where) -> None:
    warm.join()
    offset = summary.rows if plan.long is not None else where.row_in_file
    try:
        result = score_batch(model, batch, plan.options, stats=summary, row_offset=offset)
    except InputError as exc:
        raise (exc if plan.long is not None else where.name_file(exc)) from None
    killpoints.reach("score")
    sink.write(result)
    summary.input_rows += consumed
    bar.advance(consumed)


def _score_to_dataset(model, inputs, plan, output, run, filesystem, summary, bar, warm, roots) -> None:
    fmt, batch_rows = run.fmt or "parquet", run.batch_rows
    fp = fingerprint(model, plan, fmt, {"layout": plan.layout})
    out_dir = OutputDir(output, filesystem, fmt, fp, roots)
    summary.output = out_dir.uri
    schema = pandas_meta.restrict(inputs.schema, plan.output_schema, keep_range_index=plan.long is None)
    with out_dir.opened(inputs.files, overwrite=run.overwrite, resume=run.resume) as out:
        summary.files_done_before = out.done_before
        bar.advance(out.done_rows)
        index = {id(f): i for i, f in enumerate(inputs.files)}
        last_ids, prev = None, None
        for f, rel, footer in out.todo:
            if prev is not None and index[id(f)] != index[id(prev)] + 1:
                last_ids = None  # the file before this one was done before: nothing to compare with
            target = out.target(rel)
            if footer is None:  # before reading: a file rewritten while it is scored is redone by --resume
                footer = footer_hash(f)
            where = _Where(InputSet([f], inputs.schema, inputs.partition_fields, []))
            where.named = True
            pieces = ((0, b) for b in read_file(f, inputs.schema, plan.columns, batch_rows, inputs.partition_fields))
            batches = where.track(prefetched(pieces))
            rows_before = summary.input_rows
            with _writing(lambda: Sink(target, schema, fmt), batches) as sink:
                first = True
                for batch, consumed in plan.sequences(batches, model.dtype, where.locate):
                    if plan.long is not None and first:
                        _refuse_split_sequence(plan, last_ids, batch, prev, f)
                    first = False
                    _score_into(model, batch, consumed, plan, summary, sink, bar, warm, where)
                    if plan.long is not None and batch.num_rows:
                        last_ids = [batch.column(c)[batch.num_rows - 1].as_py() for c in plan.long.id_columns]
            out.commit_file(f, footer, rel, summary.input_rows - rows_before)
            summary.files_written += 1
            prev = f
        out.finish()
        summary.files_removed = out.removed


def _refuse_split_sequence(plan, last_ids, batch, prev, f) -> None:
    """In a dataset output each file holds whole sequences: one continued from the previous file is refused."""
    if last_ids is None or prev is None or not batch.num_rows:
        return
    first = [batch.column(c)[0].as_py() for c in plan.long.id_columns]
    if first == last_ids:
        ids = ", ".join(f"{c}={v!r}" for c, v in zip(plan.long.id_columns, first))
        raise InputError(
            f"sequence ({ids}) continues from file {prev.uri!r} into file {f.uri!r}; a dataset output scores "
            "each file on its own, so every file must hold whole sequences; write one output file instead "
            "(output_layout='file'), or repartition the input by the id column"
        )
