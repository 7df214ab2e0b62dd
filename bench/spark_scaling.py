"""Spark runner figures for the README: scaling (local[1], local[2], one machine) and first-task compile cost.

    python -m bench.spark_scaling data DIR        # DIR/in: 8 files, 100,000 sequences; DIR/bundle.npz
    python -m bench.spark_scaling cli DIR         # the three CLI runs, one after the other, with the load
    python -m bench.spark_scaling warm DIR local[2]    # one session: transfer-only twice, then 3 scoring jobs
    python -m bench.spark_scaling compile DIR CACHE_DIR numba|numpy   # fresh session, NUMBA_CACHE_DIR=CACHE_DIR

Run from the repository root (Spark's Python workers import rnnjit from the
working directory when it is not installed). Needs ``rnnjit[spark]``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bench.gen_sequences import chunk

FILES, ROWS, STEPS, FEATURES, HIDDEN = 8, 12_500, (5, 40), 16, 64


def _load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def data(folder: Path) -> None:
    import rnnjit
    from rnnjit.spec import RNNSpec

    (folder / "in").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    spec = RNNSpec("lstm", FEATURES, HIDDEN, prefix="rnn.")
    w = {k: (rng.normal(size=s) * 0.3).astype(np.float32) for k, s in spec.expected_shapes().items()}
    w["fc.weight"] = (rng.normal(size=(1, HIDDEN)) * 0.3).astype(np.float32)
    w["fc.bias"] = np.zeros(1, np.float32)
    np.savez(folder / "weights.npz", **w)
    rnnjit.convert(folder / "weights.npz", folder / "bundle.npz", head="fc,sigmoid")
    for k in range(FILES):
        pq.write_table(chunk(rng, k * ROWS, ROWS, *STEPS, FEATURES), folder / "in" / f"part-{k}.parquet",
                       row_group_size=4096)


def cli(folder: Path) -> None:
    base = [sys.executable, "-m", "rnnjit.cli", "score", "-m", str(folder / "bundle.npz"), "-i", str(folder / "in"),
            "--overwrite"]
    runs = [("one machine", ["-o", str(folder / "local.parquet")]),
            ("spark local[1]", ["--runner", "spark", "--master", "local[1]", "-o", str(folder / "spark1")]),
            ("spark local[2]", ["--runner", "spark", "--master", "local[2]", "-o", str(folder / "spark2")])]
    for name, extra in runs:
        print(f"{name}: {_load()}", flush=True)
        t = time.perf_counter()
        p = subprocess.run(base + extra, capture_output=True, text=True, check=True)
        print(f"  {p.stderr.strip().splitlines()[-1]}  (wall {time.perf_counter() - t:.1f} s)", flush=True)


def _session(master: str, **conf):
    from pyspark.sql import SparkSession

    b = SparkSession.builder.master(master).config("spark.ui.enabled", "false")
    b = b.config("spark.ui.showConsoleProgress", "false")
    for k, v in conf.items():
        b = b.config(k, v)
    return b.getOrCreate()


def warm(folder: Path, master: str) -> None:
    from rnnjit.spark import score_files

    print(f"{master}: {_load()}")
    s = _session(master)
    df = s.read.parquet(str(folder / "in"))
    for _ in range(2):  # the JVM's Parquet -> Arrow conversion alone (batches passed through, nothing scored)
        t = time.perf_counter()
        n = df.mapInArrow(lambda it: (b.select(["id"]) for b in it), "id long").count()
        print(f"  transfer only: {n:,} rows in {time.perf_counter() - t:.2f} s")
    for k in range(3):
        sm = score_files(folder / "bundle.npz", folder / "in", folder / "warm", spark=s, overwrite=True)
        print(f"  job {k + 1}: {sm.line()}")
    print(f"  {_load()}")
    s.stop()


def compile_cost(folder: Path, cache: str, engine: str) -> None:
    from rnnjit.scoring import ScoreOptions
    from rnnjit.spark import score_files

    print(f"cache {cache} ({'empty' if not os.path.isdir(cache) else 'present'}), engine {engine}: {_load()}")
    s = _session("local[1]", **{"spark.executorEnv.NUMBA_CACHE_DIR": cache})
    first = folder / "in" / "part-0.parquet"
    small = folder / "small.parquet"
    pq.write_table(pq.read_table(first).slice(0, 2000), small)
    for k in range(3):
        shutil.rmtree(folder / "c", ignore_errors=True)
        sm = score_files(folder / "bundle.npz", small, folder / "c", spark=s, options=ScoreOptions(engine=engine))
        print(f"  job {k + 1}: {sm.seconds:.2f} s")
    s.stop()


if __name__ == "__main__":
    what, folder = sys.argv[1], Path(sys.argv[2])
    {"data": lambda: data(folder), "cli": lambda: cli(folder), "warm": lambda: warm(folder, sys.argv[3]),
     "compile": lambda: compile_cost(folder, sys.argv[3], sys.argv[4])}[what]()
