"""The CLI end to end on the polyphone tagger's shape, against Model.predict on the same rows (issue 17).

    python -m bench.cli_tagger [--rows 16384] [--batch-rows 2048] [--threads 2] [--repeat 3]

Model: embedding 5398x64, BiLSTM 32, linear 64->32, relu, linear 876 per
token (random weights, converted torch-free, output ``all``). Data: list
layout, token ids, lengths uniform in [8, 40], ``--rows`` rows in row groups of
``--batch-rows``, uncompressed Parquet.

Three figures, each the best of ``--repeat``, runs alternated:

- ``predict``: `Model.predict` on the rows already decoded in memory, in
  batches of ``--batch-rows`` (what a Python user calls);
- ``score_dataset``: Parquet -> Parquet in this warm process (decode, score,
  write the per-token 876-wide scores);
- ``CLI``: ``python -m rnnjit.cli score ... --quiet`` in a fresh process (wall
  time, so interpreter start, imports and loading the compiled kernels count).

Prints a markdown section for bench/REPORT.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
V, E, H, F1, O = 5398, 64, 32, 32, 876
CHAIN = "emb,lstm,fc1,relu,fc2"


def make_bundle(work: Path) -> Path:
    import rnnjit

    rng = np.random.default_rng(0)
    w = {"emb.weight": rng.standard_normal((V, E))}
    for sfx in ("_l0", "_l0_reverse"):
        w[f"lstm.weight_ih{sfx}"] = rng.standard_normal((4 * H, E)) / np.sqrt(H)
        w[f"lstm.weight_hh{sfx}"] = rng.standard_normal((4 * H, H)) / np.sqrt(H)
        w[f"lstm.bias_ih{sfx}"] = rng.standard_normal(4 * H) / np.sqrt(H)
        w[f"lstm.bias_hh{sfx}"] = rng.standard_normal(4 * H) / np.sqrt(H)
    w["fc1.weight"], w["fc1.bias"] = rng.standard_normal((F1, 2 * H)) / 8, rng.standard_normal(F1) / 8
    w["fc2.weight"], w["fc2.bias"] = rng.standard_normal((O, F1)) / 6, rng.standard_normal(O) / 6
    np.savez(work / "tagger_weights.npz", **{k: v.astype(np.float32) for k, v in w.items()})
    out = work / "tagger.npz"
    rnnjit.convert(work / "tagger_weights.npz", out, chain=CHAIN, output="all")
    return out


def make_input(work: Path, rows: int, row_group: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    lengths = rng.integers(8, 41, rows)
    ids = rng.integers(0, V, int(lengths.sum())).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    col = pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids))
    table = pa.table({"id": pa.array(np.arange(rows, dtype=np.int64)), "features": col})
    path = work / f"tagger_{rows}.parquet"
    pq.write_table(table, path, row_group_size=row_group, compression="none")
    return path


def measure(rows: int, batch_rows: int, threads: int, repeat: int) -> list[str]:
    import pyarrow.parquet as pq

    import rnnjit
    from rnnjit.io.tokens import decode_tokens
    from rnnjit.local import score_dataset
    from rnnjit.scoring import ScoreOptions

    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        bundle = make_bundle(work)
        src = make_input(work, rows, batch_rows)
        model = rnnjit.load(bundle)
        batches = []
        for b in pq.ParquetFile(src).iter_batches(batch_size=batch_rows, columns=["features"]):
            dec = decode_tokens(b.column("features"), V)
            batches.append((dec.x.copy(), dec.lengths.copy()))
        model.predict(batches[0][0][:8], lengths=batches[0][1][:8], threads=threads)  # compilation
        out = work / "scores.parquet"
        cli = [sys.executable, "-m", "rnnjit.cli", "score", "--model", str(bundle), "--input", str(src),
               "--output", str(out), "--overwrite", "--quiet", "--batch-rows", str(batch_rows),
               "--threads", str(threads), "--id-column", "id"]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        subprocess.run(cli, check=True, env=env, capture_output=True)  # fills numba's cache for a fresh process
        best = {"predict": 1e9, "score_dataset": 1e9, "CLI": 1e9}
        for _ in range(repeat):
            t0 = time.perf_counter()
            for x, lengths in batches:
                model.predict(x, lengths=lengths, threads=threads)
            best["predict"] = min(best["predict"], time.perf_counter() - t0)
            t0 = time.perf_counter()
            score_dataset(model, src, out, options=ScoreOptions(threads=threads, id_columns=("id",)),
                          batch_rows=batch_rows, overwrite=True, progress=False)  # fmt: skip
            best["score_dataset"] = min(best["score_dataset"], time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run(cli, check=True, env=env, capture_output=True)
            best["CLI"] = min(best["CLI"], time.perf_counter() - t0)
        out_mb = out.stat().st_size / 2**20
        shown = " ".join(cli[3:]).replace(f"{work}{os.sep}", "")
    rate = {k: rows / v for k, v in best.items()}
    lines = [
        "## The CLI end to end on the polyphone tagger's shape",
        "",
        f"`python -m bench.cli_tagger --rows {rows} --batch-rows {batch_rows} --threads {threads} --repeat {repeat}` "
        f"(load average at the end {os.getloadavg()[0]:.2f}): {rows:,} rows of token ids, lengths U[8, 40], "
        f"scores per token 876 wide ({out_mb:,.0f} MB of Parquet out); best of {repeat}, runs alternated.",
        "",
        "| path | rows/s | of predict's |",
        "|---|---:|---:|",
        *(f"| {k} | {rate[k]:,.0f} | {rate[k] / rate['predict']:.0%} |" for k in best),
        "",
        f"CLI: `python -m rnnjit.cli {shown}` in a fresh process "
        "(wall time: interpreter start, imports and loading the compiled kernels included). Goal: the CLI within "
        f"85% of predict's throughput: **{'met' if rate['CLI'] >= 0.85 * rate['predict'] else 'NOT met'}** "
        f"({rate['CLI'] / rate['predict']:.0%}).",
        "",
    ]
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=16384)
    ap.add_argument("--batch-rows", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    print("\n".join(measure(a.rows, a.batch_rows, a.threads, a.repeat)))


if __name__ == "__main__":
    main()
