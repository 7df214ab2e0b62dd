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
from dataclasses import replace

from rnnjit.engines import resolve as resolve_engine
from rnnjit.errors import InputError
from rnnjit.io.fs import is_uri
from rnnjit.scoring import RunOptions, ScoreOptions
from rnnjit.spark.frame import (
    _Counts,
    _first_line,
    _pyspark,
    scored_frame,
    task_threads,
    user_error,
)


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
    return InputError(f"output {output!r} already exists; pass overwrite=True to replace it, or choose another name")


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
        if out.resolve() in Path(src).resolve().parents:
            raise InputError(
                f"input {src!r} is inside the output directory {output!r}; the run would replace it with its own "
                "scores; write the output to another directory"
            )


def _listing(inputs: list[str]):
    """The local runner's listing of local inputs (`rnnjit.io.dataset.InputSet`): same files, same errors."""
    from rnnjit.io.dataset import open_input

    return open_input(inputs)


def _check_files(listing, plan) -> None:
    """Every file's footer before any task: a truncated file, a missing or mistyped column is the local error.

    Spark would read a file without the sequence column as nulls (null scores
    under ``--on-invalid skip``, exit 0) and report a truncated one as a Java
    stack trace from inside the job.
    """
    from rnnjit.io.dataset import check_columns, footer_schema

    parts = {f.name for f in listing.partition_fields}
    cols = [c for c in plan.columns if c not in parts and c in listing.schema.names]
    for f in listing.files:
        check_columns(f, footer_schema(f), listing.schema, cols)


def _base_path(inputs: list[str]) -> str | None:
    """For one input folder that is itself a hive partition (``seq/date=2026-12-01/``): the folder above them."""
    if len(inputs) != 1 or not os.path.isdir(inputs[0]):
        return None
    parts = os.path.abspath(inputs[0]).rstrip("/").split("/")
    k = len(parts)
    while k > 1 and "=" in parts[k - 1]:
        k -= 1
    return "/".join(parts[:k]) if k < len(parts) else None


def _read_failure(exc: BaseException) -> InputError | None:
    """A read-level failure inside the job (a truncated file, a column Spark cannot convert) as one line."""
    text = str(exc)
    m = re.search(r"FAILED_READ_FILE[^\]]*\] Encountered error while reading file (\S+?)\.?(?:\s|$)", text)
    if m is None:
        return None
    cause = next((ln.strip() for ln in text.splitlines()[text.count("\n", 0, m.end()) + 1:]
                  if ln.strip() and not ln.strip().startswith("at ")), "")
    why = cause.split(": ", 1)[-1][:200] if cause else "Spark could not read it"
    return InputError(
        f"cannot read Parquet input {m.group(1)!r}: {why}; check that it is a complete Parquet file "
        "(not truncated, not another format) with the same schema as the others"
    )


_INFER = "spark.sql.sources.partitionColumnTypeInference.enabled"


def _read(spark, inputs: list[str], listing=None):
    """The input as a DataFrame: files, directories (hive ``key=value`` folders become columns), globs, URIs.

    Spark lists and reads the files (so a cluster's paths are resolved where
    they live); `scored_frame` then checks the schema with `plan_scoring`, as
    the local runner does. With the local runner's ``listing``, partition
    columns get its types (integers when every value is one, else strings;
    Spark alone would make ``date=2026-12-01`` a date), and one partition
    folder given on its own keeps its column.
    """
    reader = spark.read
    base = _base_path(inputs) if listing is not None else None
    if base is not None:
        reader = reader.option("basePath", base)
    before = spark.conf.get(_INFER, None)
    if listing is not None:
        spark.conf.set(_INFER, "false")  # strings; cast below to the local runner's types
    try:
        df = reader.parquet(*inputs)
    except Exception as exc:  # AnalysisException: path not found, not Parquet
        shown = inputs[0] if len(inputs) == 1 else ", ".join(inputs)
        raise InputError(f"cannot read Parquet input {shown!r}: {_first_line(exc)}; check the path") from exc
    finally:
        if listing is not None:
            if before is None:
                spark.conf.unset(_INFER)
            else:
                spark.conf.set(_INFER, before)
    if listing is not None:
        from pyspark.sql.functions import col

        spark_types = {"int32": "int", "int64": "bigint"}
        for f in listing.partition_fields:
            if f.name in df.columns and str(f.type) in spark_types:
                df = df.withColumn(f.name, col(f.name).cast(spark_types[str(f.type)]))
    return df


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

    def commit(self, tmp, overwrite: bool) -> None:
        """Rename ``tmp`` to the output, replacing an old output only once the new one is complete.

        An output that appeared while this run was going (another run's) is replaced only with ``overwrite``.
        """
        old = None
        self.fs.mkdirs(self.path.getParent())  # a dataset output creates its missing parents, as on one machine
        if self.fs.exists(self.path):
            if not overwrite:
                raise _exists(self.name)
            old = self.sibling("old")
            if not self.fs.rename(self.path, old):
                raise OSError(f"cannot move the old output {self.name!r} aside; check its permissions")
        if not self.fs.rename(tmp, self.path):
            raise OSError(f"cannot rename {tmp.toString()!r} to {self.name!r}; check the permissions")
        if old is not None:
            self.fs.delete(old, True)


def _partition_keys(rel: str) -> list[str]:
    return [p.split("=", 1)[0] for p in rel.split("/")[:-1] if "=" in p]


def score_files(
    model,
    input,
    output,
    options: RunOptions | ScoreOptions | None = None,
    *,
    master: str | None = None,
    progress: bool | None = None,
    spark=None,
    **fields,
):
    """Score a Parquet dataset on Spark; write a Parquet dataset directory atomically.

    Parameters
    ----------
    model : bundle path on this machine, or a URI Spark reads (``hdfs://...``).
    input : a Parquet file, directory or glob, local or a URI Spark reads, or a list of them; or a DataFrame.
    output : the directory to write (part files and ``_SUCCESS``).
    options : RunOptions (or ScoreOptions), as in `rnnjit.local.score_dataset`
        ``options.score.threads`` is the numba threads per task (default
        ``spark.task.cpus``); ``batch_rows`` sets
        ``spark.sql.execution.arrow.maxRecordsPerBatch``; ``fmt`` only
        "parquet"; ``resume`` and ``output_layout="file"`` are refused.
    master : Spark master URL when no session is active (``local[2]``, ``yarn``...).
    progress : Spark's progress bar on stderr; default when stderr is a terminal (new sessions only).
    spark : a SparkSession to use; default the active one, else a new one (stopped at the end).
    **fields : any field of `RunOptions` or `ScoreOptions`, applied over ``options``.

    Returns
    -------
    rnnjit.local.Summary
    """
    _pyspark()
    from rnnjit.local import Summary

    run = RunOptions.build(options, **fields)
    if run.fmt not in (None, "parquet"):
        raise InputError(
            f"fmt {run.fmt!r} is not available with the Spark runner, which writes a Parquet dataset directory; "
            "drop fmt, or use the local runner"
        )
    if run.resume or run.output_layout == "file":
        raise InputError("the Spark runner writes one Parquet dataset directory; drop resume and output_layout")
    options, layout, batch_rows, overwrite = run.score, run.layout, run.batch_rows, run.overwrite
    frame = input if hasattr(input, "mapInArrow") else None
    if frame is not None:
        spark = spark or frame.sparkSession
    several = isinstance(input, (list, tuple))
    inputs = [] if frame is not None else [os.fspath(p) for p in (input if several else [input])]
    output = os.fspath(output)
    here = not any(is_uri(p) for p in [*inputs, output])
    # A local master and local paths: check the output and list the input before paying for a JVM.
    early = here and spark is None and (master or "").startswith("local")
    listing = None
    if early:
        _output_checks(inputs, output, overwrite)
        listing = _listing(inputs) if inputs else None
    created = False
    if spark is None:
        if progress is None:
            progress = sys.stderr.isatty()
        spark, created = _session(master, progress)
    t0 = time.perf_counter()  # from a running session: JVM start-up is Spark's, not the scoring's
    try:
        if not early and here and _default_fs_is_local(spark):
            _output_checks(inputs, output, overwrite)
            listing = _listing(inputs) if inputs else None
        out = _Output(spark, output)
        if out.exists() and not overwrite:
            raise _exists(output)
        df = frame if frame is not None else _read(spark, inputs, listing)
        counts = spark.sparkContext.accumulator([0] * 5, _Counts())
        run = replace(run, score=replace(options, threads=task_threads(spark, options.threads)))
        scored, plan = scored_frame(df, model, run, counts=counts)
        if listing is not None:
            _check_files(listing, plan)
        below = {k for f in (listing.files if listing is not None else []) for k in _partition_keys(f.rel)}
        folders = [f.name for f in (listing.partition_fields if listing is not None else ())
                   if f.name in below and f.name in scored.columns]
        tmp = out.sibling("tmp")
        batch_conf = "spark.sql.execution.arrow.maxRecordsPerBatch"  # the rows mapInArrow hands a task at once
        before = spark.conf.get(batch_conf, None)
        spark.conf.set(batch_conf, str(batch_rows))
        try:
            writer = scored.write.mode("errorifexists")
            if folders:  # hive folders kept, as the local runner keeps them
                writer = writer.partitionBy(*folders)
            writer.parquet(tmp.toString())
            out.commit(tmp, overwrite)
        except BaseException as exc:
            out.fs.delete(tmp, True)
            mistake = (user_error(exc) or _read_failure(exc)) if isinstance(exc, Exception) else None
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
        threads=1 if engine == "numpy" else run.score.threads,  # numba threads per task
        precision=options.precision or getattr(model, "precision", "float32"),
    )
