"""`score_dataframe` and `score_udf`: the bundle shipped to the workers and scored in each task."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from dataclasses import replace

import pyarrow as pa

from rnnjit import errors
from rnnjit.errors import InputError, RnnjitError
from rnnjit.io.fs import is_uri
from rnnjit.plan import plan_scoring
from rnnjit.scoring import OUTPUT_COLUMNS, RunOptions, ScoreOptions, score_batch

_INSTALL = 'the Spark runner needs pyspark 4.1 or later: pip install "rnnjit[spark]"'


def _pyspark():
    """Refuse, in one line, a missing pyspark or one older than 4.1 (no Arrow UDFs, other type helpers)."""
    try:
        import pyspark
    except ImportError as exc:
        raise InputError(_INSTALL) from exc
    version = tuple(int(p) for p in re.findall(r"\d+", pyspark.__version__)[:2])
    if version < (4, 1):
        raise InputError(f"found pyspark {pyspark.__version__}; {_INSTALL}")


# --------------------------------------------------------------------------- the bundle on the workers
_MODELS: dict = {}  # (sha256, dtype) -> Model, per Python worker process
_MODELS_LOCK = threading.Lock()


class _Bundle:
    """A picklable handle on broadcast bundle bytes; `model` loads them once per process."""

    def __init__(self, data, sha256: str, dtype: str):
        self.data = data  # a pyspark Broadcast of the .npz bytes
        self.sha256 = sha256
        self.dtype = dtype

    def model(self):
        key = (self.sha256, self.dtype)
        with _MODELS_LOCK:
            model = _MODELS.get(key)
            if model is None:
                model = _MODELS[key] = _load_bytes(self.data.value, self.dtype)
        return model


def _load_bytes(data: bytes, dtype: str | None):
    """Load bundle bytes with the validating loader (through a private temporary file)."""
    from rnnjit.bundle import load

    fd, path = tempfile.mkstemp(prefix="rnnjit-bundle-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return load(path, dtype=dtype)
    finally:
        os.unlink(path)


def _bundle_bytes(spark, model) -> tuple[bytes, str | None]:
    """``(bytes, dtype)`` of a bundle path, a URI Spark can read, or a loaded `Model`."""
    from rnnjit.model import Model

    if isinstance(model, Model):
        from rnnjit.bundle import write

        with tempfile.TemporaryDirectory(prefix="rnnjit-") as d:
            path = os.path.join(d, "bundle.npz")
            write(path, model.weights, model.config)
            with open(path, "rb") as fh:
                return fh.read(), model.dtype.name
    path = os.fspath(model)
    if is_uri(path):  # hdfs://, s3a://, abfss://, file://, ...
        try:
            rows = spark.read.format("binaryFile").load(path).select("content").take(2)
        except Exception as exc:  # Spark's AnalysisException, Py4J errors: any means unreadable
            raise errors.BundleError(f"cannot read bundle {path!r}: {_first_line(exc)}; check the URI") from exc
        if len(rows) != 1:
            raise errors.BundleError(f"bundle {path!r} matches {len(rows) or 'no'} files; give one .npz file")
        return bytes(rows[0][0]), None
    try:
        with open(path, "rb") as fh:
            return fh.read(), None
    except OSError as exc:
        raise errors.BundleError(
            f"bundle {path} cannot be read ({exc.strerror}); create one with `rnnjit convert model.pth --out {path}`"
        ) from exc


def _ship(spark, model) -> tuple[_Bundle, object]:
    """Broadcast the bundle; return the worker handle and the model loaded here, for the plan."""
    data, dtype = _bundle_bytes(spark, model)
    sha = hashlib.sha256(data).hexdigest()
    local = model if not isinstance(model, (str, os.PathLike)) else _load_bytes(data, dtype)
    dtype = local.dtype.name
    with _MODELS_LOCK:  # the driver's own copy: a second call with the same bundle skips the load
        _MODELS.setdefault((sha, dtype), local)
    return _Bundle(spark.sparkContext.broadcast(data), sha, dtype), local


# --------------------------------------------------------------------------- types Spark accepts
def _spark_type(t: pa.DataType) -> pa.DataType:
    """Spark has no fixed-size arrays: fixed_size_list<float>[O] becomes list<float>."""
    if pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_spark_type(t.value_type))
    return t


def _for_spark(batch: pa.RecordBatch) -> pa.RecordBatch:
    """rnnjit's own columns as Spark declares them; pass-through columns are Spark's already."""
    target = pa.schema([f.with_type(_spark_type(f.type)) if f.name in OUTPUT_COLUMNS else f for f in batch.schema])
    return batch if target == batch.schema else batch.cast(target)


def spark_schema(arrow_schema: pa.Schema, input_schema=None):
    """The Spark StructType of the rows `score_dataframe` returns (vector scores as arrays).

    Pass-through columns keep their type in ``input_schema`` (the input's
    StructType): a round trip through Arrow would turn a TIMESTAMP into a
    TIMESTAMP_NTZ, for one. Only the columns rnnjit adds are converted.
    """
    from pyspark.sql.pandas.types import from_arrow_type
    from pyspark.sql.types import StructField, StructType

    have = {f.name: f for f in input_schema.fields} if input_schema is not None else {}
    return StructType([
        have[f.name] if f.name in have else StructField(f.name, from_arrow_type(_spark_type(f.type)), True)
        for f in arrow_schema
    ])


def _arrow_schema(df) -> pa.Schema:
    """The Arrow schema of the batches `mapInArrow` will hand a task (as Spark converts them)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    conf = df.sparkSession.conf
    large = conf.get("spark.sql.execution.arrow.useLargeVarTypes", "false").lower() == "true"
    return to_arrow_schema(df.schema, timezone=conf.get("spark.sql.session.timeZone"), prefers_large_types=large)


# --------------------------------------------------------------------------- the task
class _Counts:
    """AccumulatorParam over [input_rows, rows, scored, empty, invalid] (only successful attempts count)."""

    def zero(self, value):
        return [0] * 5

    def addInPlace(self, a, b):  # pyspark's name
        return [x + y for x, y in zip(a, b)]


def _in_partition(sequences, where: str):
    """Grouping errors name a row within the task's partition: say which partition."""
    try:
        yield from sequences
    except RnnjitError as exc:
        raise type(exc)(f"in {where.strip()}: {exc}" if where else str(exc)) from None


def _score_partition(bundle: _Bundle, plan, counts=None):
    """The function `mapInArrow` runs in each task: group (long layout), score, hand back."""

    def score_partition(batches):
        from pyspark import TaskContext

        from rnnjit.scoring import ScoreStats

        model = bundle.model()
        ctx = TaskContext.get()
        # a row number inside a task is only meaningful with the partition beside it
        where = f"partition {ctx.partitionId()} " if ctx is not None else ""
        options = replace(plan.options, row_label=where + plan.options.row_label)
        stats = ScoreStats()
        consumed = 0
        steps = (b.select(list(plan.columns)) for b in batches if b.num_rows)
        for batch, n in _in_partition(plan.sequences(steps, model.dtype), where):
            yield _for_spark(score_batch(model, batch, options, stats=stats, row_offset=stats.rows))
            consumed += n
        if counts is not None:
            counts.add([consumed, stats.rows, stats.scored, stats.empty, stats.invalid])

    return score_partition


def task_threads(spark, threads_per_task: int | None) -> int:
    """Numba threads per task: ``threads_per_task``, else ``spark.task.cpus`` (default 1)."""
    if threads_per_task is not None:
        if not isinstance(threads_per_task, int) or threads_per_task < 1:
            raise InputError(f"threads_per_task must be a positive integer, got {threads_per_task!r}")
        return threads_per_task
    return max(1, int(spark.sparkContext.getConf().get("spark.task.cpus", "1")))


# --------------------------------------------------------------------------- the API
def score_dataframe(df, model, options: RunOptions | ScoreOptions | None = None, *,
                    threads_per_task: int | None = None, _counts=None, **fields):
    """Score a Spark DataFrame; returns a DataFrame with the rows the CLI writes.

    Parameters
    ----------
    df : pyspark.sql.DataFrame
        List layout: one row per sequence, ``features_column`` an
        ``array<array<float>>`` of (T_i, input_size) steps. Long layout: one row
        per step, keyed by ``id_columns`` and ordered by ``order_column``.
    model : str, os.PathLike or rnnjit.Model
        A bundle path on the driver, a URI Spark can read (``hdfs://``,
        ``s3a://``, ``file://``...), or a loaded model. It is broadcast once and
        loaded once per Python worker.
    options : RunOptions, or ScoreOptions for its ``score`` part
        The object `rnnjit.local.score_dataset` takes (its ``layout``,
        ``order_column``, ``feature_columns`` and ``explicit_state`` apply here).
    threads_per_task : int, optional
        Numba threads per task; default ``options.score.threads``, else ``spark.task.cpus``.
    **fields
        Any field of `RunOptions` or `ScoreOptions` as a keyword
        (``features_column``, ``id_columns``, ``output_mode``, ``emit_state``,
        ``on_invalid``, ``engine``, ``layout``...). ``id_columns`` alone also
        sets the pass-through columns; ``h0_column``/``c0_column`` given here
        must exist (default: ``h0``/``c0`` when the input has them).

    Returns
    -------
    pyspark.sql.DataFrame
        The pass-through columns, ``score``, and ``hn``/``cn`` with ``emit_state``.
        A vector score is ``array<float>`` (Spark has no fixed-size arrays).
        Lazy: nothing runs until an action. In the long layout rows come out
        grouped by partition and sorted by id within each.

    Raises
    ------
    InputError
        On the driver, before any task, when a column is missing or mistyped.
    """
    _pyspark()
    spark = df.sparkSession
    named = tuple(fields[k] for k in ("h0_column", "c0_column") if fields.get(k) is not None)
    for k in ("h0_column", "c0_column"):
        if k in fields and fields[k] is None:
            del fields[k]  # None: the default name, used when present
    if "id_columns" in fields and "pass_through" not in fields:
        fields["id_columns"] = tuple(fields["id_columns"])
        fields["pass_through"] = fields["id_columns"] or None
    run = RunOptions.build(options, **fields)
    run = replace(run, explicit_state=tuple(dict.fromkeys([*run.explicit_state, *named])),
                  score=replace(run.score, threads=task_threads(spark, threads_per_task or run.score.threads)))
    return scored_frame(df, model, run, counts=_counts)[0]


def scored_frame(df, model, run: RunOptions, *, counts=None):
    """``(scored DataFrame, plan)`` for ``run`` as it is (``run.score.threads``: per task, already set)."""
    spark = df.sparkSession
    bundle, local = _ship(spark, model)
    # the workers load the bundle themselves: they score at the driver model's precision unless one is named
    run = replace(run, score=replace(run.score, precision=run.score.precision or local.precision))
    plan = plan_scoring(local, _arrow_schema(df), run.score, layout=run.layout, order_column=run.order_column,
                        feature_columns=run.feature_columns, explicit_state=run.explicit_state)
    df = df.select(*plan.columns)
    if plan.long is not None:
        ids = list(plan.long.id_columns)
        df = df.repartition(*ids).sortWithinPartitions(*ids, plan.long.order_column)
    return df.mapInArrow(_score_partition(bundle, plan, counts), spark_schema(plan.output_schema, df.schema)), plan


def score_udf(model, *, output_mode: str | None = None, on_invalid: str = "error", engine: str | None = None,
              threads_per_task: int | None = None):
    """A column function: ``df.withColumn("score", score_udf(model)("features"))``.

    An Arrow UDF over ragged ``array<array<float>>`` sequences (Spark's own
    ``predict_batch_udf`` needs fixed tensor shapes). Shares the per-worker
    model cache with `score_dataframe`. Returns the ``score`` column only.
    """
    _pyspark()
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import arrow_udf

    spark = SparkSession.getActiveSession()
    if spark is None:
        raise InputError("score_udf needs an active SparkSession; create one first (SparkSession.builder.getOrCreate())")
    options = ScoreOptions(
        pass_through=(), output_mode=output_mode, on_invalid=on_invalid, engine=engine,
        threads=task_threads(spark, threads_per_task),
    )
    bundle, local = _ship(spark, model)
    plan = plan_scoring(local, pa.schema([pa.field("features", pa.list_(pa.list_(pa.float32())))]), options)
    rtype = spark_schema(plan.output_schema)["score"].dataType

    def score(features: pa.Array) -> pa.Array:
        batch = pa.RecordBatch.from_arrays([features], names=["features"])
        return _for_spark(score_batch(bundle.model(), batch, options)).column("score")

    return arrow_udf(score, rtype)


# --------------------------------------------------------------------------- errors from tasks
def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def user_error(exc: BaseException) -> RnnjitError | None:
    """The `RnnjitError` a Python worker raised, recovered from Spark's error text (else None)."""
    for m in re.finditer(r"^rnnjit\.errors\.(\w+): (.+)$", str(exc), re.MULTILINE):
        cls = getattr(errors, m.group(1), None)
        if isinstance(cls, type) and issubclass(cls, RnnjitError):
            return cls(m.group(2).strip())
    return None

