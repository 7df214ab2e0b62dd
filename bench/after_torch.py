"""Does rnnjit lose time when its call starts right after torch's? A table per shape and condition.

    python -m bench.after_torch --threads 2 --rounds 30
    OMP_WAIT_POLICY=PASSIVE python -m bench.after_torch     # torch's OpenMP threads sleep at once after a call

In a process that alternates engines (every benchmark here), rnnjit's call
starts while the threads of torch's OpenMP pool (libgomp) still spin-wait
for the next parallel region; on a 2-core machine they hold the cores
rnnjit's pool thread wants. Each round times rnnjit's `Model.predict` in four
conditions, interleaved so the machine's load touches all alike:

- ``alone``: right after another rnnjit call;
- ``after torch``: right after a torch forward of the same model;
- ``torch+sleep``: after a torch forward and ``--sleep`` ms (the spinning
  threads have gone to sleep);
- ``sleep``: after ``--sleep`` ms alone (what a pause costs by itself: caches,
  clock, the pool's own threads going idle).

Best of ``--rounds`` each. Shapes: the quick grid's alternated cases that
measured 0.74-0.98x torch (speaker B=64 T=40, LSTM H=256 B=256 T=20, the OCR
head at B=64 T=40), plus speaker's B=8.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main(argv=None):
    import torch

    from bench.variant_sweep import Variant, VariantBench, build, convert

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--sleep", type=float, default=20.0, help="ms")
    ap.add_argument("-k", action="append", default=[])
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from bench.timing import fresh_back_off

    cases = [
        (Variant("speaker", dict(H=256, L=3), 40), 64),
        (Variant("lstm", dict(I=64, H=256), 20), 256),
        (Variant("ocr", dict(H=256, blocks=2), 40), 64),
        (Variant("speaker", dict(H=256, L=3), 40), 8),
    ]
    print(f"threads {a.threads}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')}, "
          f"load {os.getloadavg()[0]:.2f}")  # fmt: skip
    print("| shape | B | alone ms | after torch ms | torch+sleep ms | sleep ms | torch ms | after torch / alone |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for v, B in cases:
        if a.k and not any(k in v.name for k in a.k):
            continue
        net, chain, output, width = build(v, torch)
        b = VariantBench(v, B, torch, net, chain, output, width, convert(net, chain, output, torch))

        def ours():
            fresh_back_off()
            t0 = time.perf_counter()
            b.model.predict(b.x, lengths=b.lengths, engine="numba", threads=a.threads)
            return time.perf_counter() - t0

        def theirs():
            t0 = time.perf_counter()
            with torch.inference_mode():
                b.net(b.xt, b.lengths_t)
            return time.perf_counter() - t0

        ours(), theirs()  # compilation, first-call setup
        best = dict(alone=np.inf, after=np.inf, torch_sleep=np.inf, sleep=np.inf, torch=np.inf)
        s = a.sleep / 1e3
        for _ in range(a.rounds):
            ours()
            best["alone"] = min(best["alone"], ours())
            best["torch"] = min(best["torch"], theirs())
            best["after"] = min(best["after"], ours())
            theirs()
            time.sleep(s)
            best["torch_sleep"] = min(best["torch_sleep"], ours())
            time.sleep(s)
            best["sleep"] = min(best["sleep"], ours())
        ms = {k: f"{t * 1e3:.2f}" for k, t in best.items()}
        print(f"| {v.name} T={v.T} | {B} | {ms['alone']} | {ms['after']} | {ms['torch_sleep']} | {ms['sleep']} "
              f"| {ms['torch']} | {best['after'] / best['alone']:.2f} |", flush=True)  # fmt: skip
    print(f"<!-- load {os.getloadavg()[0]:.2f} -->")


if __name__ == "__main__":
    main()
