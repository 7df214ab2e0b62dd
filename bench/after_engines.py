"""A batch of one over L2 in a process that also runs onnxruntime: how long its two-thread path stays off.

    python -m bench.after_engines -k "speaker H=256 L=2" --with-s 2 --after-s 6

Phase 1 (``--with-s`` seconds): rnnjit's `Model.predict` and onnxruntime's
session alternate, back to back (onnxruntime's intra-op threads spin for
30-40 ms after each call and take the second core: the hot helper cannot
join, teams pause, `rnnjit.kernels.team_policy`). Phase 2 (``--after-s``
seconds): rnnjit alone, a call every 5 ms. Per phase: calls, median ms, and
in phase 2 the seconds until the first call as fast as the best of the
phase (within 15%), the share of calls at that speed, and the share of calls
that found teams paused (the stack then runs as a wavefront or on one thread). With a fixed 30 s
pause the second phase stays on one thread throughout.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main(argv=None):
    import torch

    from bench.variant_sweep import VariantBench, _variants, build, convert

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", default="speaker H=256 L=2", help="the first variant whose name contains this")
    ap.add_argument("-b", type=int, default=1, help="batch size")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--with-s", type=float, default=2.0, help="seconds of alternation with onnxruntime")
    ap.add_argument("--after-s", type=float, default=6.0, help="seconds of rnnjit alone after it")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    v = next(v for v in _variants() if a.k in v.name)
    net, chain, output, width = build(v, torch)
    b = VariantBench(v, a.b, torch, net, chain, output, width, convert(net, chain, output, torch))
    ort = b.session("onnxruntime", a.threads)

    from rnnjit.kernels import team_policy

    paused = []

    def rn():
        paused.append(time.monotonic() < team_policy._team_paused_until)
        t0 = time.perf_counter()
        b.model.predict(b.x, lengths=b.lengths, engine="numba", threads=a.threads)
        return time.perf_counter() - t0

    rn(), ort()  # compilation, sessions
    print(f"{v.name} B={a.b} T={v.T}, {a.threads} threads; load {os.getloadavg()[0]:.2f}")
    ts = []
    t_end = time.perf_counter() + a.with_s
    while time.perf_counter() < t_end:
        ts.append(rn())
        ort()
    print(f"with onnxruntime: {len(ts)} calls, median {np.median(ts) * 1e3:.2f} ms, best {min(ts) * 1e3:.2f}")
    t_start = time.perf_counter()
    at, ts = [], []
    paused.clear()
    while time.perf_counter() - t_start < a.after_s:
        time.sleep(0.005)
        at.append(time.perf_counter() - t_start)
        ts.append(rn())
    fast = np.array(ts) <= 1.15 * min(ts)
    first = at[int(np.argmax(fast))]
    print(f"alone after it: {len(ts)} calls, median {np.median(ts) * 1e3:.2f} ms, best {min(ts) * 1e3:.2f}; "
          f"first call within 15% of the best after {first:.2f} s; {fast.mean():.0%} of calls there; "
          f"teams paused in {np.mean(paused):.0%} of calls; "
          f"load {os.getloadavg()[0]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
