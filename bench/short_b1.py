"""Batches of one at short and mid T: fixed cost per call and cost per step, rnnjit against onnxruntime (shortb1).

    python -m bench.short_b1 [-k "lstm I=64 H=256"] [--Ts 1,5,20,100] [--rounds 5] [--threads 1,2]

For each variant row of `bench.variant_sweep` that a batch of one still
loses to onnxruntime, times ``Model.predict`` and onnxruntime's session
on the same (1, T, F) input at several T, both in the same process,
alternated: with one thread in the calling thread's CPU time
(``time.thread_time``, steady on a busy machine), with two on the wall
clock in settled turns (`bench.timing.settled_call`; run it under
``chrt -f 1``). A least-squares line over T gives each engine's fixed cost
per call (us) and cost per step (us).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np

from bench.variant_sweep import Variant, VariantBench, build, convert, time_interleaved

ROWS = [
    Variant("lstm", dict(I=64, H=256, cell="gru"), 20),
    Variant("lstm", dict(I=64, H=256, L=2), 20),
    Variant("lstm", dict(I=64, H=256), 20),
    Variant("lstm", dict(I=64, H=512), 20),
    Variant("speaker", dict(H=256, L=3), 40),
    Variant("beat", dict(H=150, L=1, cell="lstm"), 375),
    Variant("speaker", dict(H=512, L=2), 160),
]


def fit(Ts, ys):
    """(fixed us, us per step) of a least-squares line through (T, seconds)."""
    slope, icept = np.polyfit(np.asarray(Ts, float), np.asarray(ys, float) * 1e6, 1)
    return icept, slope


def main(argv=None):
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", action="append", default=[], help="only rows whose name contains this (repeatable)")
    ap.add_argument("--Ts", default="1,5,20,100")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0.2)
    a = ap.parse_args(argv)
    Ts = [int(t) for t in a.Ts.split(",")]
    print(f"load {os.getloadavg()[0]:.2f}")
    print("| row | threads | T=" + " | T=".join(map(str, Ts)) + " (rnnjit/ort us) | rnnjit fixed + step us "
          "| ort fixed + step us | ort/rnnjit at the row's T (else the longest timed) |")
    print("|---|---:|" + "---:|" * len(Ts) + "---|---|---:|")
    for v in ROWS:
        if a.k and not any(k in v.name for k in a.k):
            continue
        net, chain, output, width = build(v, torch)
        model = convert(net, chain, output, torch)
        for threads in [int(t) for t in a.threads.split(",")]:
            torch.set_num_threads(threads)
            clock = time.thread_time if threads == 1 else time.perf_counter
            res = {}
            for T in Ts:
                b = VariantBench(dataclasses.replace(v, T=T), 1, torch, net, chain, output, width, model)
                fns = {"rnnjit": lambda b=b: b.model.predict(b.x, lengths=b.lengths, engine="numba",
                                                             threads=threads),
                       "onnxruntime": b.session("onnxruntime", threads)}  # fmt: skip
                fns["rnnjit"]()  # compilation
                best = time_interleaved(fns, ["rnnjit", "onnxruntime"], a.rounds, a.budget,
                                        0.0 if threads == 1 else 0.01, clock)  # fmt: skip
                res[T] = (best["rnnjit"], best["onnxruntime"])
            rf, rs = fit(Ts, [res[T][0] for T in Ts])
            of, os_ = fit(Ts, [res[T][1] for T in Ts])
            cells = " | ".join(f"{res[T][0] * 1e6:.0f}/{res[T][1] * 1e6:.0f}" for T in Ts)
            at = v.T if v.T in res else Ts[-1]
            print(f"| {v.name} T={v.T} | {threads} | {cells} | {rf:.0f} + {rs:.2f} | {of:.0f} + {os_:.2f} | "
                  f"{res[at][1] / res[at][0]:.2f}x |", flush=True)  # fmt: skip
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
