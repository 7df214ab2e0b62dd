"""Batches of one of the real architectures, path by path, interleaved with onnxruntime and torch.

    python -m bench.b1_threads [--cases speaker_encoder_b1,beat_tracker_b1,ocr_head_b1] [--rounds 9]

Each round runs every variant in a new random order, 5 calls each, and keeps
the best call; the table gives per variant the best and the median over
rounds, in ms per call. Variants of `Model.predict` (2 threads unless said):

- ``rnnjit``: the policy as a user gets it (pauses included);
- ``no_pause``: the policy with the team and wavefront pauses reset before each call;
- ``no_wavefront``: layer after layer (a team where `team_policy.team_chunks` says so);
- ``one_thread``: ``threads=1``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from bench.real_models import REAL_CASES, RealBench, real_runner
from rnnjit import kernels
from rnnjit.kernels import team_policy


def _variant(fn, wavefront: bool):
    def call():
        ww = kernels.wavefront_workers
        if not wavefront:
            kernels.wavefront_workers = lambda *a: 0
        team_policy._team_paused_until = team_policy._waves_paused_until = 0.0  # the path, not the back-off
        try:
            return fn()
        finally:
            kernels.wavefront_workers = ww

    return call


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="speaker_encoder_b1,beat_tracker_b1,ocr_head_b1")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    for name in a.cases.split(","):
        b = RealBench(next(c for c in REAL_CASES if c.name == name), torch)
        fns = {e: real_runner(b, e, a.threads) for e in ("rnnjit", "torch", "onnxruntime")}
        fns = {k: f for k, f in fns.items() if not isinstance(f, str)}
        fns["no_pause"] = _variant(fns["rnnjit"], True)
        fns["no_wavefront"] = _variant(fns["rnnjit"], False)
        fns["one_thread"] = lambda b=b: b.model.predict(b.x, lengths=b.lengths, engine="numba", threads=1)
        for fn in fns.values():
            fn()  # compilation and first-call setup
        res = {n: [] for n in fns}
        for _ in range(a.rounds):
            names = list(fns)
            random.shuffle(names)
            for n in names:
                ts = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    fns[n]()
                    ts.append(time.perf_counter() - t0)
                res[n].append(min(ts))
        cells = [f"{n} {min(v) * 1e3:.2f} ({statistics.median(v) * 1e3:.2f})" for n, v in res.items()]
        print(f"{name}: " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
