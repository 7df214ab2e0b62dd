"""The numpy engine's price for "same bits for a row whatever the batch", interleaved.

    python -m bench.same_bits [--rounds 5]

Times `Model.predict(..., engine="numpy")` with its products as shipped
(`rnnjit.steps.matmul_rows`: numpy's einsum loop, each row on its own)
against the same engine with the products handed to BLAS (``x @ w_t``, a
row's bits then depend on the batch), with BLAS's own threads and limited to
one (threadpoolctl), in alternating calls in one process, and prints the
median seconds of each and the ratios. Cases:
the demo bundle on the demo file, and LSTM/GRU chains of growing width
built from random weights.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

import rnnjit
from rnnjit import reference, steps

ROOT = Path(__file__).resolve().parent.parent


def _blas(x, w_t):
    return x @ w_t


def _blas_one_thread(x, w_t):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return x @ w_t


def _predict(model, x, lengths, products):
    """``model.predict`` on the numpy engine with the chain's products replaced by ``products`` (None: as shipped)."""
    saved = reference.matmul_rows, steps.matmul_rows
    if products is not None:
        reference.matmul_rows = steps.matmul_rows = products
    try:
        return model.predict(x, lengths=lengths, engine="numpy")
    finally:
        reference.matmul_rows, steps.matmul_rows = saved


def _random_bundle(d: Path, cell: str, I: int, H: int, out: int) -> rnnjit.Model:
    rng = np.random.default_rng(0)
    g = {"lstm": 4, "gru": 3}[cell]
    w = {
        f"{cell}.weight_ih_l0": rng.uniform(-0.2, 0.2, (g * H, I)).astype(np.float32),
        f"{cell}.weight_hh_l0": rng.uniform(-0.2, 0.2, (g * H, H)).astype(np.float32),
        f"{cell}.bias_ih_l0": rng.uniform(-0.2, 0.2, g * H).astype(np.float32),
        f"{cell}.bias_hh_l0": rng.uniform(-0.2, 0.2, g * H).astype(np.float32),
        "fc.weight": rng.uniform(-0.2, 0.2, (out, H)).astype(np.float32),
        "fc.bias": np.zeros(out, np.float32),
    }
    np.savez(d / f"{cell}{H}.npz", **w)
    return rnnjit.convert(d / f"{cell}{H}.npz", d / f"{cell}{H}-bundle.npz", head="fc,softmax", output="last")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    cases = []
    demo = rnnjit.load(ROOT / "data" / "demo_bundle.npz")
    seqs = [np.asarray(s, np.float32) for s in pq.read_table(ROOT / "data" / "demo_sequences.parquet")
            .column("features").to_pylist()]
    lengths = np.array([len(s) for s in seqs])
    x = np.zeros((len(seqs), lengths.max(), 4), np.float32)
    for b, s in enumerate(seqs):
        x[b, : len(s)] = s
    cases.append(("demo: LSTM 4->24, fc, 2,000 rows", demo, x, lengths))
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        for cell, H, B in (("lstm", 64, 1024), ("gru", 128, 512), ("lstm", 256, 256)):
            m = _random_bundle(Path(tmp), cell, 32, H, 8)
            cases.append((f"{cell.upper()} 32->{H}, fc 8 + softmax, {B} rows x 50 steps", m,
                          rng.standard_normal((B, 50, 32)).astype(np.float32), np.full(B, 50)))
        print("| case | row-invariant (s) | BLAS (s) | BLAS, 1 thread (s) | ratio to BLAS | to BLAS 1 thread |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, model, xs, ls in cases:
            times: dict[str, list[float]] = {"rows": [], "blas": [], "blas1": []}
            _predict(model, xs, ls, None)  # warm-up (numba's erf ufunc, caches)
            for _ in range(args.rounds):
                for key, products in (("rows", None), ("blas", _blas), ("blas1", _blas_one_thread)):
                    t0 = time.perf_counter()
                    _predict(model, xs, ls, products)
                    times[key].append(time.perf_counter() - t0)
            r, b, b1 = (statistics.median(times[k]) for k in ("rows", "blas", "blas1"))
            print(f"| {name} | {r:.3f} | {b:.3f} | {b1:.3f} | {r / b:.2f}x | {r / b1:.2f}x |")
    print(f"load average at the end {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
