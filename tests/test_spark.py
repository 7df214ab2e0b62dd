"""The Spark runner gives the local runner's rows, retries without duplicates, and the same one-line errors.

One session-scoped SparkSession (``local[2,2]``: two cores, a failed task is
tried twice) serves every test; the CLI finds it active and uses it, so
``--master local[2]`` here does not start a second JVM. Skipped without
pyspark or java.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import (
    FEATURES_TYPE,
    list_table,
    long_table,
    make_bundle,
    random_sequences,
    run,
    write,
)

pytest.importorskip("pyspark", reason='pyspark is not installed (pip install "rnnjit[spark]")')
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("no java on PATH and no JAVA_HOME: Spark needs Java 17", allow_module_level=True)

import rnnjit

pytestmark = pytest.mark.filterwarnings(
    # pyspark's pandas checks warn about pandas versions it has not been tested with
    "ignore::FutureWarning:pyspark.*",
    "ignore::DeprecationWarning:pyspark.*",
)

NP = ("--engine", "numpy")  # no compile wait; the numba engine is checked against numpy elsewhere


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    s = (
        SparkSession.builder.master("local[2,2]")
        .appName("rnnjit-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "3")
        .getOrCreate()
    )
    s.sparkContext.setLogLevel("FATAL")  # the failing-task tests would print stack traces
    yield s
    s.stop()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    # two output values: the score is a vector (fixed_size_list on one machine, an array on Spark)
    return make_bundle(tmp_path_factory.mktemp("bundle"), cell="lstm", out_features=2)


@pytest.fixture(scope="module")
def seqs():
    s = random_sequences(40, 3, seed=11, min_len=1, max_len=8)
    s[7] = np.zeros((0, 3), np.float32)  # an empty sequence: a null score on both runners
    return s


def _split_files(table: pa.Table, folder, cuts, row_group_size=3):
    """Write ``table`` as several files, cut at the given row numbers."""
    folder.mkdir()
    bounds = [0, *cuts, table.num_rows]
    for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
        write(table.slice(a, b - a), folder / f"part-{k}.parquet", row_group_size=row_group_size)
    return folder


def _by_id(path) -> dict:
    t = pq.read_table(path)
    ids = t.column("id").to_pylist()
    assert len(ids) == len(set(ids)), "duplicate ids in the output"
    return {i: r for i, r in zip(ids, t.drop_columns(["id"]).to_pylist())}


def _assert_same_rows(spark_out, local_out):
    got, want = _by_id(spark_out), _by_id(local_out)
    assert sorted(got) == sorted(want)
    for i, row in want.items():
        for col, v in row.items():
            if v is None:
                assert got[i][col] is None, (i, col)
            elif col != "score" and not col.startswith(("hn", "cn")):
                assert got[i][col] == v, (i, col)
            else:
                np.testing.assert_allclose(np.asarray(got[i][col], np.float64), np.asarray(v, np.float64), atol=1e-6)


def _finished_dataset(out):
    names = os.listdir(out)
    assert "_SUCCESS" in names and any(n.startswith("part-") for n in names)
    assert not [n for n in os.listdir(out.parent) if "rnnjit-tmp" in n or "rnnjit-old" in n]


def test_list_layout_dataset_same_rows_as_local(spark, bundle, seqs, tmp_path):
    when = pa.array([datetime.datetime(2026, 11, 23, i % 24) for i in range(len(seqs))], pa.timestamp("us"))
    src = _split_files(list_table(seqs, when=when), tmp_path / "in", cuts=[13, 29])  # a timestamp passes through
    # the default engine (numba) here, on both runners: kernels loaded in Spark's Python workers
    r = run("score", "-m", bundle, "-i", src, "-o", tmp_path / "local.parquet")
    assert r.exit_code == 0, r.stderr
    r = run("score", "--runner", "spark", "--master", "local[2]", "-m", bundle, "-i", src, "-o", tmp_path / "out",
            "--batch-rows", "4")
    assert r.exit_code == 0, r.stderr
    assert r.stderr.startswith("scored 40 rows (0 invalid, 1 empty) in "), r.stderr
    _finished_dataset(tmp_path / "out")
    _assert_same_rows(tmp_path / "out", tmp_path / "local.parquet")
    assert pq.read_table(tmp_path / "out").column_names == ["id", "when", "score"]
    again = ("score", "--runner", "spark", "-m", bundle, "-i", src, "-o", tmp_path / "out", *NP)
    assert _error_line(run(*again)) == (
        f"error: output {str(tmp_path / 'out')!r} already exists; pass --overwrite to replace it, or choose another name"
    )
    r = run(*again, "--overwrite", "--output-mode", "final")
    assert r.exit_code == 0, r.stderr
    _finished_dataset(tmp_path / "out")
    assert len(_by_id(tmp_path / "out")) == len(seqs)


def test_master_without_spark_runner_is_refused(bundle, tmp_path):
    r = run("score", "--master", "local[2]", "-m", bundle, "-i", tmp_path / "in.parquet", "-o", tmp_path / "o.parquet")
    assert _error_line(r) == "error: --master applies to --runner spark; add --runner spark or drop --master"


def test_long_layout_sequences_cut_across_files_same_rows_as_local(spark, bundle, seqs, tmp_path):
    nonempty = [s for s in seqs if len(s)]
    table = long_table(nonempty, ids=[f"k{i:02d}" for i in range(len(nonempty))])
    starts = np.cumsum([0] + [len(s) for s in nonempty])
    cuts = [int(starts[5]) + 1, int(starts[20]) + 2]  # both cuts fall inside a sequence
    src = _split_files(table, tmp_path / "in", cuts=cuts)
    args = ("-m", bundle, "-i", src, "--layout", "long", "--key-column", "id", "--order-column", "t",
            "--feature-columns", "f0,f1,f2", "--batch-rows", "5", *NP)
    r = run("score", *args, "-o", tmp_path / "local.parquet")
    assert r.exit_code == 0, r.stderr
    r = run("score", "--runner", "spark", "--master", "local[2]", *args, "-o", tmp_path / "out")
    assert r.exit_code == 0, r.stderr
    assert f"scored {len(nonempty)} sequences from {table.num_rows} input rows" in r.stderr
    _assert_same_rows(tmp_path / "out", tmp_path / "local.parquet")


def test_emit_state_feeds_the_next_day(spark, bundle, seqs, tmp_path):
    day1 = [s for s in seqs if len(s)][:12]
    day2 = random_sequences(12, 3, seed=12, min_len=1, max_len=5)
    write(list_table(day1), tmp_path / "day1.parquet")
    r = run("score", "--runner", "spark", "-m", bundle, "-i", tmp_path / "day1.parquet", "-o", tmp_path / "state1",
            "--emit-state", *NP)
    assert r.exit_code == 0, r.stderr
    state = _by_id(tmp_path / "state1")
    ids = list(range(12))
    t2 = list_table(day2, h0=pa.array([state[i]["hn"] for i in ids], pa.list_(pa.float32())),
                    c0=pa.array([state[i]["cn"] for i in ids], pa.list_(pa.float32())))
    write(t2, tmp_path / "day2.parquet")
    r = run("score", "--runner", "spark", "-m", bundle, "-i", tmp_path / "day2.parquet", "-o", tmp_path / "out2", *NP)
    assert r.exit_code == 0, r.stderr
    r = run("score", "-m", bundle, "-i", tmp_path / "day2.parquet", "-o", tmp_path / "local2.parquet", *NP)
    assert r.exit_code == 0, r.stderr
    _assert_same_rows(tmp_path / "out2", tmp_path / "local2.parquet")
    # carrying the state over equals scoring both days as one sequence
    whole = rnnjit.load(bundle).predict([np.concatenate([a, b]) for a, b in zip(day1, day2)], engine="numpy")
    got = _by_id(tmp_path / "out2")
    np.testing.assert_allclose([got[i]["score"] for i in ids], whole, atol=1e-5)


def _fail_once(marker):
    """A mapInArrow step whose first task raises after handing on one batch, once (the marker says so)."""

    def step(batches):
        for k, b in enumerate(batches):
            yield b
            if k == 0 and not os.path.exists(marker):
                open(marker, "w").close()
                raise RuntimeError("injected failure after the first batch")

    return step


def test_failed_task_is_retried_without_duplicate_or_missing_rows(spark, bundle, seqs, tmp_path):
    from rnnjit.spark import score_files

    src = _split_files(list_table(seqs), tmp_path / "in", cuts=[20])
    df = spark.read.parquet(str(src))
    flaky = df.mapInArrow(_fail_once(str(tmp_path / "failed")), df.schema)
    summary = score_files(bundle, flaky, tmp_path / "out", options=rnnjit.scoring.ScoreOptions(engine="numpy"),
                          batch_rows=3)
    assert os.path.exists(tmp_path / "failed"), "the failure was not injected"
    assert summary.rows == len(seqs)  # counters from the successful attempts only
    out = _by_id(tmp_path / "out")
    assert sorted(out) == list(range(len(seqs)))
    _finished_dataset(tmp_path / "out")


def test_job_that_fails_leaves_no_output(spark, bundle, seqs, tmp_path):
    from rnnjit.spark import score_files

    def always(batches):
        for b in batches:
            yield b
            raise RuntimeError("injected failure on every attempt")

    df = spark.createDataFrame(list_table(seqs))
    with pytest.raises(Exception, match="injected failure on every attempt"):
        score_files(bundle, df.mapInArrow(always, df.schema), tmp_path / "out",
                    options=rnnjit.scoring.ScoreOptions(engine="numpy"), batch_rows=3)
    assert os.listdir(tmp_path) == []  # neither the output nor its hidden temporary directory


def test_score_dataframe_and_udf_agree_with_predict(spark, bundle, seqs, tmp_path):
    from rnnjit.spark import score_dataframe, score_udf

    df = spark.createDataFrame(list_table(seqs))
    want = rnnjit.load(bundle).predict([s if len(s) else np.zeros((1, 3), np.float32) for s in seqs],
                                       engine="numpy")
    # the bundle by URI: read by Spark (binaryFile), as it would be from hdfs:// or s3a://
    for scored in (score_dataframe(df, bundle.as_uri(), id_columns=["id"], engine="numpy"),
                   df.select("id", score_udf(rnnjit.load(bundle), engine="numpy")("features").alias("score"))):
        rows = {r["id"]: r["score"] for r in scored.collect()}
        assert rows[7] is None
        np.testing.assert_allclose([rows[i] for i in range(len(seqs)) if i != 7], np.delete(want, 7, axis=0),
                                   atol=1e-6)


def _error_line(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and "org.apache" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("mistake", ["missing column", "wrong feature width", "NaN step"])
def test_bad_input_is_the_same_one_line_error(spark, bundle, seqs, tmp_path, mistake):
    extra = ()
    table = list_table(seqs)
    if mistake == "missing column":
        extra = ("--id-column", "customer")
    elif mistake == "wrong feature width":
        bad = [s.tolist() for s in seqs]
        bad[9] = [[0.0, 1.0, 2.0, 3.0]] * 2
        table = table.set_column(1, "features", pa.array(bad, FEATURES_TYPE))
    else:
        seqs = [s.copy() for s in seqs]
        seqs[9][0, 1] = np.nan
        table = list_table(seqs)
    write(table, tmp_path / "in.parquet")
    args = ("-m", bundle, "-i", tmp_path / "in.parquet", *extra, *NP)
    local = _error_line(run("score", *args, "-o", tmp_path / "local.parquet"))
    on_spark = _error_line(run("score", "--runner", "spark", "--master", "local[2]", *args, "-o", tmp_path / "out"))
    # inside a task a row is numbered within its partition, and the partition is named
    assert re.sub(r"partition \d+ row \d+", "row N", on_spark) == re.sub(r"row \d+", "row N", local)
    assert sorted(os.listdir(tmp_path)) == ["in.parquet"]


def test_cli_process_prints_one_error_line_not_a_java_stack_trace(bundle, seqs, tmp_path):
    """A real `rnnjit score --runner spark` process (its own JVM): the last stderr line is the error."""
    seqs = [s.copy() for s in seqs]
    seqs[3][0, 0] = np.inf
    write(list_table(seqs), tmp_path / "in.parquet")
    cmd = [sys.executable, "-m", "rnnjit.cli", "score", "--runner", "spark", "--master", "local[1]",
           "-m", str(bundle), "-i", str(tmp_path / "in.parquet"), "-o", str(tmp_path / "out"), *NP]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=root, timeout=300)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines()[-1] == (
        "error: partition 0 row 3 (id=3): step 0 of column 'features' holds NaN or inf; "
        "fix or drop that row, or pass --on-invalid skip to write a null score for it"
    )
    assert "Traceback" not in p.stderr and "\tat org.apache" not in p.stderr
    assert sorted(os.listdir(tmp_path)) == ["in.parquet"]


def test_threads_per_task_follow_spark_task_cpus(spark):
    from rnnjit.spark.frame import task_threads

    assert task_threads(spark, None) == int(spark.sparkContext.getConf().get("spark.task.cpus", "1")) == 1
    assert task_threads(spark, 3) == 3
    with pytest.raises(rnnjit.InputError, match="threads_per_task must be a positive integer, got 0"):
        task_threads(spark, 0)


def test_grouping_error_in_a_task_names_the_partition(spark, bundle, seqs, tmp_path):
    from rnnjit.spark import score_files

    table = long_table([s for s in seqs if len(s)])
    ids = table.column("id").to_pylist()
    ids[4] = None
    df = spark.createDataFrame(table.set_column(0, "id", pa.array(ids, pa.int64())))
    with pytest.raises(rnnjit.InputError, match=r"^in partition \d+: row 0: column 'id' is null; every step needs"):
        score_files(bundle, df, tmp_path / "out", layout="long", options=rnnjit.scoring.ScoreOptions(
            id_columns=("id",), engine="numpy"), order_column="t", feature_columns=["f0", "f1", "f2"])
    # (Spark sorts the null id first, so it is row 0 of its partition)
    assert os.listdir(tmp_path) == []


class _Broadcast:
    """Stands in for a pyspark Broadcast: what a task unpickles holds ``value``."""

    def __init__(self, value):
        self.value = value


def test_bundle_is_loaded_once_per_worker_process_not_per_task(bundle, monkeypatch):
    import hashlib
    import pickle

    from rnnjit.spark import frame

    data = bundle.read_bytes()
    loads = []
    real = frame._load_bytes
    monkeypatch.setattr(frame, "_load_bytes", lambda d, dtype: loads.append(dtype) or real(d, dtype))
    monkeypatch.setattr(frame, "_MODELS", {})
    handle = frame._Bundle(_Broadcast(data), hashlib.sha256(data).hexdigest(), "float32")
    models = {id(pickle.loads(pickle.dumps(handle)).model()) for _task in range(5)}  # each task unpickles its copy
    assert len(models) == 1 and loads == ["float32"]
    frame._Bundle(_Broadcast(data), handle.sha256, "float64").model()  # another dtype is another model
    assert loads == ["float32", "float64"]


def test_named_state_column_must_exist_and_missing_input_is_one_line(spark, bundle, seqs, tmp_path):
    from rnnjit.spark import score_dataframe

    df = spark.createDataFrame(list_table(seqs))
    with pytest.raises(rnnjit.InputError, match=r"^state column 'hn' \(h0_column\) not found; the input has columns "
                                                 r"id, features; name an existing column"):
        score_dataframe(df, str(bundle), h0_column="hn")
    line = _error_line(run("score", "--runner", "spark", "-m", bundle, "-i", tmp_path / "nowhere", "-o",
                           tmp_path / "out"))
    # the local runner's listing, so the local runner's line
    assert line == _error_line(run("score", "-m", bundle, "-i", tmp_path / "nowhere", "-o", tmp_path / "out"))
    assert line == f"error: input {str(tmp_path / 'nowhere')!r} does not exist; give a Parquet file, a directory, a glob or a URI"
    assert sorted(os.listdir(tmp_path)) == []


# ------------------------------------------------------------------ the dataset contract (issue #19)
def _hive(root, seqs):
    for k, day in enumerate(["2026-12-01", "2026-12-02"]):
        p = root / f"date={day}" / "part-0.parquet"
        p.parent.mkdir(parents=True)
        write(list_table(seqs[10 * k:10 * k + 10], ids=list(range(10 * k, 10 * k + 10))), p)
    return root


def _hive_back(out):
    import pyarrow.dataset as ds

    t = ds.dataset(out, format="parquet", partitioning="hive", ignore_prefixes=[".", "_"]).to_table()
    return t.sort_by("id")


def test_hive_partitions_same_layout_and_types_as_local(spark, bundle, seqs, tmp_path):
    src = _hive(tmp_path / "seq", seqs)
    args = ("-m", bundle, *NP)
    assert run("score", *args, "-i", src, "-o", f"{tmp_path}/local/").exit_code == 0
    r = run("score", "--runner", "spark", *args, "-i", src, "-o", tmp_path / "spark")
    assert r.exit_code == 0, r.stderr
    dirs = sorted(p.name for p in (tmp_path / "spark").iterdir() if p.is_dir())
    assert dirs == sorted(p.name for p in (tmp_path / "local").iterdir() if p.is_dir()) == [
        "date=2026-12-01", "date=2026-12-02"]
    local, on_spark = _hive_back(tmp_path / "local"), _hive_back(tmp_path / "spark")
    assert on_spark.schema.field("date").type == local.schema.field("date").type == pa.string()
    assert on_spark.column("date").to_pylist() == local.column("date").to_pylist()
    # one partition folder on its own keeps its column, on both runners
    one = src / "date=2026-12-02"
    assert run("score", *args, "-i", one, "-o", tmp_path / "l1.parquet").exit_code == 0
    assert run("score", "--runner", "spark", *args, "-i", one, "-o", tmp_path / "s1").exit_code == 0
    for out in (tmp_path / "l1.parquet", tmp_path / "s1"):
        t = pq.read_table(out)
        assert t.schema.field("date").type == pa.string() and set(t.column("date").to_pylist()) == {"2026-12-02"}


@pytest.mark.parametrize("mistake", ["truncated file", "file without the sequence column", "mistyped column"])
def test_read_level_failures_are_the_local_one_line_error(spark, bundle, seqs, tmp_path, mistake):
    src = tmp_path / "in"
    src.mkdir()
    write(list_table(seqs[:5]), src / "a.parquet")
    if mistake == "truncated file":
        write(list_table(seqs[5:10]), src / "b.parquet")
        data = (src / "b.parquet").read_bytes()
        (src / "b.parquet").write_bytes(data[: len(data) // 2] + data[-8:])
    elif mistake == "file without the sequence column":
        write(list_table(seqs[5:10]).drop(["features"]), src / "b.parquet")
    else:
        write(pa.table({"id": [5], "features": ["not a sequence"]}), src / "b.parquet")
    args = ("-m", bundle, "-i", src, "--on-invalid", "skip", *NP)
    local = _error_line(run("score", *args, "-o", f"{tmp_path}/local/"))
    on_spark = _error_line(run("score", "--runner", "spark", *args, "-o", tmp_path / "out"))
    assert on_spark == local and "b.parquet" in local
    assert sorted(os.listdir(tmp_path)) == ["in", "local"]


def test_a_read_failure_inside_the_job_is_one_line(spark, bundle, seqs, tmp_path):
    """A URI input is listed by Spark, not checked beforehand: the failure comes from a task."""
    src = tmp_path / "in"
    src.mkdir()
    write(list_table(seqs[:5]), src / "a.parquet")
    write(list_table(seqs[5:10]), src / "b.parquet")
    data = (src / "b.parquet").read_bytes()
    (src / "b.parquet").write_bytes(data[: len(data) // 2] + data[-8:])
    line = _error_line(run("score", "--runner", "spark", "-m", bundle, "-i", f"file://{src}", "-o",
                           f"file://{tmp_path}/out", *NP))
    assert line.startswith("error: cannot read Parquet input 'file:") and "b.parquet" in line, line


def test_reruns_that_apply_to_spark(spark, bundle, seqs, tmp_path):
    """The re-run catalogue's rows for a runner without --resume: refused and untouched, or exactly the inputs."""
    src = _hive(tmp_path / "seq", seqs)
    args = ("score", "--runner", "spark", "-m", bundle, "-o", tmp_path / "out", *NP)
    assert run(*args, "-i", src / "date=2026-12-01").exit_code == 0
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert "already exists" in _error_line(run(*args, "-i", src / "date=2026-12-02"))  # day 2 into day 1's
    assert {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()} == before
    assert run(*args, "-i", src / "date=2026-12-02", "--overwrite").exit_code == 0
    assert _hive_back(tmp_path / "out").column("id").to_pylist() == list(range(10, 20))
    (src / "date=2026-12-01" / "part-0.parquet").rename(src / "date=2026-12-01" / "compacted.parquet")
    (src / "date=2026-12-02" / "part-0.parquet").unlink()  # retention
    assert run(*args, "-i", src, "--overwrite").exit_code == 0
    _finished_dataset_tree(tmp_path / "out")
    assert _hive_back(tmp_path / "out").column("id").to_pylist() == list(range(0, 10))


def _finished_dataset_tree(out):
    assert (out / "_SUCCESS").is_file()
    assert not [n for n in os.listdir(out.parent) if "rnnjit-tmp" in n or "rnnjit-old" in n]
