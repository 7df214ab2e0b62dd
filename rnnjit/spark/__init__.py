"""rnnjit on Apache Spark: the same scoring on a cluster, through `DataFrame.mapInArrow`.

One code path: the schema is checked on the driver by `rnnjit.plan.plan_scoring`
(the same call the local runner makes, so a missing column or a wrong feature
count is the same one-line error before any task starts), and each task runs
``plan.sequences`` (the long-layout grouping) and `rnnjit.scoring.score_batch`
over the Arrow batches Spark hands it. pyspark is only imported here, never by
``import rnnjit`` (``pip install "rnnjit[spark]"``).

- The bundle's bytes are broadcast once (each executor fetches them once) and
  loaded once per Python worker process: `_MODELS` caches models by content
  hash, and Spark reuses Python workers across tasks
  (``spark.python.worker.reuse``, on by default).
- Long layout: rows are hash-partitioned by the id columns and sorted within
  each partition by (id, order), so every step of a sequence is in one task and
  arrives in order; a task then groups them as the local runner does.
- Numba threads per task: ``threads_per_task``, else ``spark.task.cpus``
  (default 1, so two tasks on two cores do not fight over them).
- A user mistake found inside a task (a NaN step, a step of the wrong width)
  comes back as the same `rnnjit.errors` class and message, recovered from the
  Python traceback Spark reports, not as a Java stack trace.
"""

from rnnjit.spark.frame import score_dataframe, score_udf, spark_schema
from rnnjit.spark.runner import score_files

__all__ = ["score_dataframe", "score_files", "score_udf", "spark_schema"]
