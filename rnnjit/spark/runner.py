"""``rnnjit score --runner spark``: a Parquet dataset in, a Parquet dataset directory out.

The output never looks complete before it is: Spark writes into a hidden
sibling directory (``.NAME.rnnjit-tmp-<uuid>``, which Spark, pyarrow and Hive
skip as hidden), its committer adds ``_SUCCESS`` there when every task has
committed, and only then is that directory renamed to NAME (one rename on the
output's file system, through Hadoop's FileSystem API so ``hdfs://`` and
``s3a://`` outputs work too). A failed job removes the temporary directory; a
killed driver leaves it hidden. A retried task does not duplicate rows: Spark's
commit protocol keeps exactly one attempt's files per task.
"""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
from collections.abc import Sequence

from rnnjit.engines import resolve as resolve_engine
from rnnjit.errors import InputError
from rnnjit.scoring import ScoreOptions
from rnnjit.spark.frame import (
    _Counts,
    _first_line,
    _pyspark,
    score_dataframe,
    task_threads,
    user_error,
)

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _session(master: str | None, progress: bool):
    """``(spark, created)``: the active session (a notebook's, spark-submit's), or a new one."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    if (master or "").startswith("local"):
        # workers on this machine run this interpreter (pyspark's default is whatever `python3` is)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("rnnjit score")
    if master:
        builder = builder.master(master)
    builder = builder.config("spark.ui.showConsoleProgress", "true" if progress else "false")
    spark = builder.getOrCreate()
    # A row-level user error is reported as one line by the CLI; Spark's own log
    # of the failed task (a Python and a Java stack trace) would bury it.
    spark.sparkContext.setLogLevel("FATAL")
    return spark, True


def _default_fs_is_local(spark) -> bool:
    """True when Spark resolves a path without a scheme on this machine's file system."""
    return spark.sparkContext._jsc.hadoopConfiguration().get("fs.defaultFS", "file:///").startswith("file:")


def _exists(output: str) -> InputError:
    return InputError(f"output {output!r} already exists; pass --overwrite to replace it, or choose another name")


def _output_checks(inputs: list[str], output: str, overwrite: bool) -> None:
    """The local runner's output checks and messages, for paths on this machine."""
    from pathlib import Path

    out = Path(output)
    if out.exists() and not overwrite:
        raise _exists(output)
    for src in inputs:
        if os.path.isdir(src) and Path(src).resolve() in out.resolve().parents:
            raise InputError(
                f"output {output!r} is inside the input directory {src!r}, so the next run would "
                "read it as input; write it somewhere else"
            )


def _read(spark, inputs: list[str]):
    """The input as a DataFrame: files, directories (hive ``key=value`` folders become columns), globs, URIs.

    Spark lists and reads the files (so a cluster's paths are resolved where
    they live); `score_dataframe` then checks the schema with `plan_scoring`,
    as the local runner does.
    """
    try:
        return spark.read.parquet(*inputs)
    except Exception as exc:  # AnalysisException: path not found, not Parquet
        shown = inputs[0] if len(inputs) == 1 else ", ".join(inputs)
        raise InputError(f"cannot read Parquet input {shown!r}: {_first_line(exc)}; check the path") from exc


class _Output:
    """The output directory on its Hadoop file system: exists, write to a hidden sibling, rename."""

    def __init__(self, spark, output: str):
        jvm = spark.sparkContext._jvm
        self._Path = jvm.org.apache.hadoop.fs.Path
        path = self._Path(output)
        self.fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        self.path = self.fs.makeQualified(path)
        self.name = output

    def sibling(self, what: str):
        return self._Path(self.path.getParent(), f".{self.path.getName()}.rnnjit-{what}-{uuid.uuid4().hex[:12]}")

    def exists(self) -> bool:
        return bool(self.fs.exists(self.path))

    def commit(self, tmp) -> None:
        """Rename ``tmp`` to the output, replacing an old output only once the new one is complete."""
        old = None
        self.fs.mkdirs(self.path.getParent())  # a dataset output creates its missing parents, as on one machine
        if self.fs.exists(self.path):
            old = self.sibling("old")
            if not self.fs.rename(self.path, old):
                raise OSError(f"cannot move the old output {self.name!r} aside; check its permissions")
        if not self.fs.rename(tmp, self.path):
            raise OSError(f"cannot rename {tmp.toString()!r} to {self.name!r}; check the permissions")
        if old is not None:
            self.fs.delete(old, True)


def score_files(
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
    master: str | None = None,
    progress: bool | None = None,
    spark=None,
    explicit_state: Sequence[str] = (),
):
    """Score a Parquet dataset on Spark; write a Parquet dataset directory atomically.

    Parameters
    ----------
    model : bundle path on this machine, or a URI Spark reads (``hdfs://...``).
    input : a Parquet file, directory or glob, local or a URI Spark reads, or a list of them; or a DataFrame.
    output : the directory to write (part files and ``_SUCCESS``).
    options, layout, order_column, feature_columns, batch_rows, overwrite
        As in `rnnjit.local.score_dataset`; ``options.threads`` is the numba
        threads per task (default ``spark.task.cpus``); ``batch_rows`` sets
        ``spark.sql.execution.arrow.maxRecordsPerBatch``.
    fmt : only "parquet" (or None).
    master : Spark master URL when no session is active (``local[2]``, ``yarn``...).
    progress : Spark's progress bar on stderr; default when stderr is a terminal (new sessions only).
    spark : a SparkSession to use; default the active one, else a new one (stopped at the end).
    explicit_state : the state columns the user named (``--h0-column``): each must exist;
        ``options.h0_column``/``c0_column`` otherwise are used only when present.

    Returns
    -------
    rnnjit.local.Summary
    """
    _pyspark()
    from rnnjit.local import Summary

    options = options or ScoreOptions()
    if fmt not in (None, "parquet"):
        raise InputError(
            f"--format {fmt} is not available with --runner spark, which writes a Parquet dataset directory; "
            "drop --format, or use --runner local"
        )
    if not isinstance(batch_rows, int) or batch_rows < 1:
        raise InputError(f"batch_rows must be a positive integer, got {batch_rows!r}")
    frame = input if hasattr(input, "mapInArrow") else None
    if frame is not None:
        spark = spark or frame.sparkSession
    several = isinstance(input, (list, tuple))
    inputs = [] if frame is not None else [os.fspath(p) for p in (input if several else [input])]
    output = os.fspath(output)
    plan_kw = {"layout": layout, "order_column": order_column, "feature_columns": feature_columns}
    here = not any(_URI.match(p) for p in [*inputs, output])
    # A local master and local paths: check the output before paying for a JVM.
    early = here and spark is None and (master or "").startswith("local")
    if early:
        _output_checks(inputs, output, overwrite)
    created = False
    if spark is None:
        if progress is None:
            progress = sys.stderr.isatty()
        spark, created = _session(master, progress)
    t0 = time.perf_counter()  # from a running session: JVM start-up is Spark's, not the scoring's
    threads = task_threads(spark, options.threads)  # numba threads per task, named on the summary line
    try:
        if not early and here and _default_fs_is_local(spark):
            _output_checks(inputs, output, overwrite)
        out = _Output(spark, output)
        if out.exists() and not overwrite:
            raise _exists(output)
        df = frame if frame is not None else _read(spark, inputs)
        counts = spark.sparkContext.accumulator([0] * 5, _Counts())
        scored = score_dataframe(
            df, model, features_column=options.features_column, id_columns=options.id_columns,
            output_mode=options.output_mode, emit_state=options.emit_state, on_invalid=options.on_invalid,
            threads_per_task=options.threads,
            h0_column=options.h0_column if options.h0_column in explicit_state else None,
            c0_column=options.c0_column if options.c0_column in explicit_state else None,
            engine=options.engine, _counts=counts, **plan_kw,
        )
        tmp = out.sibling("tmp")
        batch_conf = "spark.sql.execution.arrow.maxRecordsPerBatch"  # the rows mapInArrow hands a task at once
        before = spark.conf.get(batch_conf, None)
        spark.conf.set(batch_conf, str(batch_rows))
        try:
            scored.write.mode("errorifexists").parquet(tmp.toString())
            out.commit(tmp)
        except BaseException as exc:
            out.fs.delete(tmp, True)
            mistake = user_error(exc) if isinstance(exc, Exception) else None
            if mistake is not None:
                raise mistake from None
            raise
        finally:
            if before is None:
                spark.conf.unset(batch_conf)
            else:
                spark.conf.set(batch_conf, before)
    finally:
        if created:
            spark.stop()
    input_rows, rows, scored_n, empty, invalid = counts.value
    engine = resolve_engine(options.engine)  # as resolved here; each executor resolves it the same way on its own
    return Summary(
        rows=rows, scored=scored_n, empty=empty, invalid=invalid, input_rows=input_rows,
        seconds=time.perf_counter() - t0, output=output, layout=layout, engine=engine,
        threads=1 if engine == "numpy" else threads,
    )
