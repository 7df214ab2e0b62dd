"""Generate a list-layout Parquet file of random sequences, in bounded memory.

    python bench/gen_sequences.py OUT.parquet --rows 100000 --steps 100 --features 32
        [--min-steps 100] [--row-group 4096] [--seed 0]

Each row: ``id`` (int64), ``features`` list<fixed_size_list<float32>[I]> with
``min_steps..steps`` steps. Written one row group at a time, so the generator's
memory does not grow with the file.
"""

from __future__ import annotations

import argparse

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def chunk(rng, start: int, n: int, t_min: int, t_max: int, I: int) -> pa.Table:
    lengths = rng.integers(t_min, t_max + 1, size=n) if t_min < t_max else np.full(n, t_max)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    vals = rng.standard_normal(int(offsets[-1]) * I, dtype=np.float32)
    steps = pa.FixedSizeListArray.from_arrays(pa.array(vals), I)
    feats = pa.ListArray.from_arrays(pa.array(offsets), steps)
    return pa.table({"id": pa.array(np.arange(start, start + n, dtype=np.int64)), "features": feats})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--min-steps", type=int, default=None)
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--row-group", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    t_min = a.min_steps if a.min_steps is not None else a.steps
    writer = None
    for start in range(0, a.rows, a.row_group):
        n = min(a.row_group, a.rows - start)
        t = chunk(rng, start, n, t_min, a.steps, a.features)
        if writer is None:
            writer = pq.ParquetWriter(a.out, t.schema, compression="none")
        writer.write_table(t, row_group_size=a.row_group)
    if writer is not None:
        writer.close()


if __name__ == "__main__":
    main()
