"""Measure streaming scoring: peak RSS vs input size, and end-to-end vs kernel-only throughput.

    python bench/measure_streaming.py --size-mb 100 --size-mb 2000 [--batch-rows 4096]
        [--engine numba] [--workdir /tmp/rnnjit-streaming] [--repeat 2] [--throughput-mb 500]

Model: LSTM input_size=32, hidden_size=128, 1 layer, head fc,sigmoid (random
weights, converted torch-free). Data: list layout, T=100 steps, 32 float32
features, 4096-row row groups, uncompressed (bench/gen_sequences.py).

- end to end: ``python -m rnnjit.cli score ... --quiet`` in a fresh process
  under ``/usr/bin/time -v`` (peak RSS, wall time); rows/s from wall time,
  which includes interpreter start, imports and loading compiled kernels.
- throughput, in one warm process on a ``--throughput-mb`` input, alternating
  runs: ``score_dataset`` Parquet -> Parquet vs ``Model.predict`` on the same
  rows already decoded in memory in batches of ``--batch-rows`` (kernel only).

Prints a markdown table (and the commands) for bench/STREAMING.md.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
T, I, H = 100, 32, 128
ROW_BYTES = T * I * 4 + 8


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def make_bundle(workdir: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    import rnnjit
    from rnnjit.spec import RNNSpec

    out = workdir / "lstm_i32_h128.npz"
    if out.exists():
        return out
    spec = RNNSpec("lstm", I, H, prefix="lstm.")
    rng = np.random.default_rng(0)
    w = {k: (rng.normal(size=s) / np.sqrt(H)).astype(np.float32) for k, s in spec.expected_shapes().items()}
    w["fc.weight"] = (rng.normal(size=(1, H)) / np.sqrt(H)).astype(np.float32)
    w["fc.bias"] = np.zeros(1, np.float32)
    np.savez(workdir / "weights.npz", **w)
    rnnjit.convert(workdir / "weights.npz", out, head="fc,sigmoid")
    return out


def make_input(workdir: Path, size_mb: int) -> tuple[Path, int]:
    rows = int(size_mb * 2**20 // ROW_BYTES)
    path = workdir / f"seq_{size_mb}mb.parquet"
    if not path.exists():
        cmd = [sys.executable, str(ROOT / "bench" / "gen_sequences.py"), str(path), "--rows", str(rows),
               "--steps", str(T), "--features", str(I), "--row-group", "4096"]
        subprocess.run(cmd, check=True)
    return path, rows


def run_cli(bundle: Path, src: Path, out: Path, batch_rows: int, engine: str | None):
    cmd = [sys.executable, "-m", "rnnjit.cli", "score", "--model", str(bundle), "--input", str(src),
           "--output", str(out), "--overwrite", "--batch-rows", str(batch_rows)]
    if engine:
        cmd += ["--engine", engine]
    timer = shutil.which("time") or "/usr/bin/time"
    t0 = time.perf_counter()
    p = subprocess.run([timer, "-v", *cmd], capture_output=True, text=True, env=_env())
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    summary = next(line for line in p.stderr.splitlines() if line.startswith("scored "))
    return {"wall": wall, "rss_mb": rss_kb / 1024, "summary": summary, "cmd": " ".join(cmd)}


def throughput(bundle: Path, src: Path, batch_rows: int, engine: str | None, repeat: int) -> dict:
    """In one warm process, alternate: score_dataset (Parquet -> Parquet) and Model.predict on the
    same rows already decoded in memory. Best of ``repeat`` for each."""
    sys.path.insert(0, str(ROOT))
    import pyarrow.parquet as pq

    import rnnjit
    from rnnjit.io.arrow import decode_features
    from rnnjit.scoring import ScoreOptions
    from rnnjit.local import score_dataset

    model = rnnjit.load(bundle)
    batches, n = [], 0
    for b in pq.ParquetFile(src).iter_batches(batch_size=batch_rows, columns=["features"]):
        dec = decode_features(b.column("features"), I)
        batches.append((dec.x.copy(), dec.lengths))
        n += len(dec.lengths)
    model.predict(batches[0][0][:8], lengths=batches[0][1][:8], engine=engine)  # compilation
    out = src.parent / "scores-inproc.parquet"
    e2e = kern = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        score_dataset(model, src, out, options=ScoreOptions(engine=engine), batch_rows=batch_rows,
                      overwrite=True, progress=False)
        e2e = max(e2e, n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for x, lengths in batches:
            model.predict(x, lengths=lengths, engine=engine)
        kern = max(kern, n / (time.perf_counter() - t0))
    return {"rows": n, "e2e": e2e, "kernel": kern}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, action="append", required=False)
    ap.add_argument("--batch-rows", type=int, default=4096)
    ap.add_argument("--engine", default=None)
    ap.add_argument("--workdir", default="/tmp/rnnjit-streaming")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--throughput-mb", type=int, default=500, help="input size for the warm throughput runs")
    ap.add_argument("--_throughput", nargs=2, metavar=("BUNDLE", "SRC"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._throughput:
        print(throughput(Path(a._throughput[0]), Path(a._throughput[1]), a.batch_rows, a.engine, a.repeat))
        return
    sizes = a.size_mb or [100, 2000]
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    bundle = make_bundle(work)
    print(f"| input | rows | file MB | peak RSS MB | wall s | end-to-end rows/s (wall) | summary line |")
    print("|---|---|---|---|---|---|---|")
    results = []
    # one untimed run first, so numba's on-disk cache is filled (a changed kernel recompiles once)
    warm_src, _ = make_input(work, min(sizes))
    run_cli(bundle, warm_src, work / "scores.parquet", a.batch_rows, a.engine)
    for size in sizes:
        src, rows = make_input(work, size)
        best = None
        for _ in range(a.repeat):
            r = run_cli(bundle, src, work / "scores.parquet", a.batch_rows, a.engine)
            best = r if best is None or r["wall"] < best["wall"] else best
        mb = src.stat().st_size / 2**20
        results.append((size, rows, best))
        print(f"| {src.name} | {rows:,} | {mb:,.0f} | {best['rss_mb']:,.0f} | {best['wall']:.1f} | "
              f"{rows / best['wall']:,.0f} | `{best['summary']}` |", flush=True)
    src, _ = make_input(work, a.throughput_mb)
    cmd = [sys.executable, __file__, "--_throughput", str(bundle), str(src), "--batch-rows", str(a.batch_rows),
           "--repeat", str(max(a.repeat, 3))] + (["--engine", a.engine] if a.engine else [])
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    tp = ast.literal_eval(p.stdout.strip().splitlines()[-1])
    print()
    print(f"warm, one process, {src.name} ({tp['rows']:,} rows), best of {max(a.repeat, 3)}:")
    print(f"  kernel only (Model.predict on decoded batches of {a.batch_rows}): {tp['kernel']:,.0f} rows/s")
    print(f"  Parquet -> Parquet (score_dataset): {tp['e2e']:,.0f} rows/s = {tp['e2e'] / tp['kernel']:.0%} of kernel-only")
    for size, rows, best in results:
        inner = float(re.search(r"([\d,]+) rows/s", best["summary"]).group(1).replace(",", ""))
        print(f"  CLI on {size} MB: {rows / best['wall']:,.0f} rows/s over the whole process "
              f"({rows / best['wall'] / tp['kernel']:.0%}), {inner:,.0f} rows/s in the summary ({inner / tp['kernel']:.0%})")
    print()
    print("commands:")
    for size, rows, best in results:
        print(f"  /usr/bin/time -v {best['cmd']}")


if __name__ == "__main__":
    main()
