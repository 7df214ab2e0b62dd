"""Where a CLI batch's time goes on the polyphone tagger's shape: scoring, encoding, the write to disk (issue 17).

    python -m bench.cli_tagger_parts [--batches 4] [--batch-rows 2048] [--threads 2] [--rounds 4]

The model and rows of `bench.cli_tagger`; ``--batches`` batches are scored
once, then each line below is timed over all of them, the lines alternated
round after round; per batch, wall time (best and median of ``--rounds``) and
CPU time of the process (median; all threads, and its system part):

- ``Model.predict`` padded (what `bench.cli_tagger` times as "predict") and
  ``packed=True`` (the valid steps only: what `score_batch` asks for);
- `score_batch` (decode the Arrow batch, predict, wrap the score column);
- ``write()`` of the score values alone into a plain file and into
  `rnnjit.io.streaming.StreamingFile` (the floor of any format);
- the Parquet writer with `rnnjit.io.parquet_out.writer_options` and its row
  groups: to /dev/null (the encoding alone), into a plain file, into a
  `StreamingFile` (what the CLI does).

Prints a markdown table for bench/STREAMING.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from bench.cli_tagger import V, make_bundle, make_input


def _cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_stime


def measure(batches: int, batch_rows: int, threads: int, rounds: int) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    import rnnjit
    from rnnjit.io.parquet_out import group_rows, writer_options
    from rnnjit.io.streaming import StreamingFile
    from rnnjit.io.tokens import decode_tokens
    from rnnjit.scoring import ScoreOptions, score_batch

    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        model = rnnjit.load(make_bundle(work))
        src = make_input(work, batches * batch_rows, batch_rows)
        opts = ScoreOptions(threads=threads, id_columns=("id",))
        inputs = list(pq.ParquetFile(src).iter_batches(batch_size=batch_rows))
        decoded = [decode_tokens(b.column("features"), V) for b in inputs]
        score_batch(model, inputs[0].slice(0, 8), opts)  # compilation
        results = [score_batch(model, b, opts) for b in inputs]
        tables = [pa.Table.from_batches([r]) for r in results]
        schema, options = results[0].schema, writer_options(results[0].schema)
        rows = group_rows(tables[0], 1 << 17)
        values = [r.column("score").values.values.buffers()[1] for r in results]

        def plain(p):
            return open(p, "wb")

        def streaming(p):
            return StreamingFile(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

        def parquet(opener, path=None):
            def run():
                p = path or work / "out.parquet"
                if path is None:
                    p.unlink(missing_ok=True)
                fh = opener(p)
                with pq.ParquetWriter(fh, schema, **options) as w:
                    for t in tables:
                        w.write_table(t, row_group_size=rows)
                fh.close()
            return run

        def raw(opener):
            def run():
                p = work / "out.bin"
                p.unlink(missing_ok=True)
                fh = opener(p)
                for v in values:
                    fh.write(memoryview(v))
                fh.close()
            return run

        cases = {
            "`Model.predict` (padded)": lambda: [model.predict(d.x, lengths=d.lengths, threads=threads)
                                                 for d in decoded],
            "`Model.predict(packed=True)`": lambda: [model.predict(d.x, lengths=d.lengths, threads=threads,
                                                                   packed=True) for d in decoded],
            "`score_batch`": lambda: [score_batch(model, b, opts) for b in inputs],
            "`write()` of the values, plain file": raw(plain),
            "`write()` of the values, `StreamingFile`": raw(streaming),
            "Parquet writer to /dev/null (encoding only)": parquet(plain, Path(os.devnull)),
            "Parquet writer, plain file": parquet(plain),
            "Parquet writer, `StreamingFile` (the CLI's)": parquet(streaming),
        }
        times: dict[str, list[tuple[float, float, float]]] = {k: [] for k in cases}
        for _ in range(rounds):
            for name, run in cases.items():
                c0, s0 = _cpu()
                t0 = time.perf_counter()
                run()
                t = time.perf_counter() - t0
                c1, s1 = _cpu()
                times[name].append((t * 1e3 / batches, (c1 - c0) * 1e3 / batches, (s1 - s0) * 1e3 / batches))
        mb = sum(v.size for v in values) / batches / 1e6
    lines = [
        f"`python -m bench.cli_tagger_parts --batches {batches} --batch-rows {batch_rows} --threads {threads} "
        f"--rounds {rounds}` (load average at the end {os.getloadavg()[0]:.2f}): per batch of {batch_rows} rows "
        f"({mb:,.0f} MB of scores), {rounds} rounds, lines alternated.",
        "",
        "| what | wall ms, best | wall ms, median | CPU ms (median) | of it system |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, v in times.items():
        v = sorted(v)
        m = v[len(v) // 2]
        lines.append(f"| {name} | {v[0][0]:,.0f} | {m[0]:,.0f} | {m[1]:,.0f} | {m[2]:,.0f} |")
    return lines + [""]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--batch-rows", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4)
    a = ap.parse_args(argv)
    print("\n".join(measure(a.batches, a.batch_rows, a.threads, a.rounds)))


if __name__ == "__main__":
    main()
