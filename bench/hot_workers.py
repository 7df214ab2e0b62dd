"""Small two-thread calls with the second thread's tiles on the hot helper or through the pool, and onnxruntime.

    python -m bench.hot_workers [--threads 2] [--rounds 5] [--budget 0.3] [-k NAME] [-b B]

For each case (a `bench.variant_sweep.Variant` at a batch), `Model.predict` with
`rnnjit.kernels.HOT_WORKERS` on ("hot") and off ("pool"), and onnxruntime, in one
process, turns interleaved and settled (`bench.variant_sweep.time_interleaved`):
best ms per engine and the ratios pool / hot and onnxruntime / hot.
"""

from __future__ import annotations

import argparse
import os

from bench.variant_sweep import Variant, VariantBench, build, convert, time_interleaved
from rnnjit import kernels

CASES = [
    (Variant("lstm", dict(I=64, H=128), 20), (2, 4, 8, 12)),
    (Variant("lstm", dict(I=64, H=256), 20), (2, 4, 8, 12)),
    (Variant("lstm", dict(I=64, H=128), 100), (2, 4, 8, 12)),
    (Variant("lstm", dict(I=64, H=256), 100), (2, 4, 8, 12)),
    (Variant("lstm", dict(I=64, H=150, cell="gru"), 100), (8,)),
    (Variant("beat", dict(H=150, L=2, cell="gru"), 375), (8,)),
    (Variant("lstm", dict(I=64, H=256, L=2), 20), (8,)),
    (Variant("beat", dict(H=100, L=2, cell="lstm"), 375), (8,)),
    (Variant("tagger", dict(V=1000, H=32, heads=876), 40, varlen=True), (8,)),
    (Variant("ocr", dict(H=128, blocks=2), 199), (8,)),
]


def main(argv=None):
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0.3, help="seconds of calls per engine and case (about)")
    ap.add_argument("-k", action="append", default=[], help="only cases whose name contains this (repeatable)")
    ap.add_argument("-b", type=int, action="append", default=[], help="only these batch sizes (repeatable)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(f"threads {a.threads}; load {os.getloadavg()[0]:.2f}")
    print("| case | B | T | hot ms | pool ms | ort ms | pool / hot | ort / hot |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for v, batches in CASES:
        if a.k and not any(k in v.name for k in a.k):
            continue
        net, chain, output, width = build(v, torch)
        model = convert(net, chain, output, torch)
        for B in batches:
            if a.b and B not in a.b:
                continue
            b = VariantBench(v, B, torch, net, chain, output, width, model)

            def predict(hot, b=b):
                kernels.HOT_WORKERS = hot
                try:
                    return b.model.predict(b.x, lengths=b.lengths, engine="numba", threads=a.threads)
                finally:
                    kernels.HOT_WORKERS = True

            fns = {"rnnjit": lambda: predict(True), "pool": lambda: predict(False)}
            sess = b.session("onnxruntime", a.threads)
            if callable(sess):
                fns["onnxruntime"] = sess
            for f in fns.values():
                f()
            with torch.inference_mode():
                best = time_interleaved(fns, list(fns), a.rounds, a.budget, 0.01)
            h, p, o = best["rnnjit"], best["pool"], best.get("onnxruntime")
            ort = f"{o * 1e3:.3f} | {p / h:.2f}x | {o / h:.2f}x" if o else f"- | {p / h:.2f}x | -"
            print(f"| {v.name} | {B} | {v.T} | {h * 1e3:.3f} | {p * 1e3:.3f} | {ort} |", flush=True)
    print(f"<!-- load {os.getloadavg()[0]:.2f} -->")


if __name__ == "__main__":
    main()
