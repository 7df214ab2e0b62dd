"""Small batches with and without the input projection of one-sequence tiles, interleaved with onnxruntime.

    python -m bench.projection [--threads 2] [--rounds 7] [--cases ocr_head_b1,...] [--B 1,2,4,8]

One-sequence tiles (a batch of one; B=2 on two threads) project their
steps' input columns first and read only the h columns of the weights per
step (`rnnjit.kernels.layer.project_steps`). For each real architecture at a
batch of one (bench/real_models.py) and the LSTM batch curve's small batches
(H=128, I=32, T=100, bench/cases.py), ``Model.predict`` is timed with the
projection (``proj``, the default), with it turned off (``noproj``: every
step reads every column, as before), and onnxruntime on the same batch, in
rounds: each round runs the three in a new random order, ``calls`` calls
each, and keeps the median call. The table gives the median over rounds
(ms) and each ratio ort / rnnjit (>1: rnnjit faster). ``--cpu`` times the
process's CPU time instead of the wall clock: on a machine loaded by other
processes it leaves out the time slices the process waits for (one thread
only: with two, a thread spinning for the other counts twice).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from rnnjit import kernels


def time_round(fns, calls, clock=time.perf_counter):
    """Median seconds per call of each callable, in a random order (`bench.small_batch.time_round`, any clock)."""
    res = {}
    names = list(fns)
    random.shuffle(names)
    for n in names:
        ts = []
        for _ in range(calls):
            t0 = clock()
            fns[n]()
            ts.append(clock() - t0)
        res[n] = statistics.median(ts)
    return res


def _without_projection(fn):
    """``fn`` with every tile reading all its weight columns per step (no `project_steps`)."""
    projected = kernels._projected

    def call():
        kernels._projected = lambda *a: (0, 0)
        try:
            return fn()
        finally:
            kernels._projected = projected

    return call


def _real(name, threads, torch):
    from bench.real_models import REAL_CASES, RealBench, real_runner

    b = RealBench(next(c for c in REAL_CASES if c.name == name), torch)
    return real_runner(b, "rnnjit", threads), real_runner(b, "onnxruntime", threads)


def _lstm(B, threads, torch):
    from bench.cases import Case
    from bench.conftest import Bench, runner

    b = Bench(Case(f"lstm_b{B}", "lstm", B, 100, 32, 128), torch)
    return runner(b, "rnnjit", threads), runner(b, "onnxruntime", threads)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--cases", default="speaker_encoder_b1,beat_tracker_b1,ocr_head_b1,polyphone_tagger_b1,"
                                       "onset_detector_b1")  # fmt: skip
    ap.add_argument("--B", default="1,2,4,8", help="LSTM H=128 I=32 T=100 batch sizes")
    ap.add_argument("--cpu", action="store_true", help="CPU time of the process, not wall time (--threads 1)")
    a = ap.parse_args(argv)
    if a.cpu and a.threads != 1:
        ap.error("--cpu times one thread: add --threads 1")
    clock = time.process_time if a.cpu else time.perf_counter
    import torch

    torch.set_num_threads(a.threads)
    jobs = [(n, lambda n=n: _real(n, a.threads, torch)) for n in a.cases.split(",") if n]
    jobs += [(f"lstm_h128_b{B}", lambda B=B: _lstm(B, a.threads, torch)) for B in map(int, a.B.split(",")) if B]
    print(f"threads={a.threads} rounds={a.rounds}; ms per call ({'CPU' if a.cpu else 'wall'} time), median of round "
          f"medians; x = ort / rnnjit")  # fmt: skip
    for name, make in jobs:
        proj, ort = make()
        fns = {"proj": proj, "noproj": _without_projection(proj)}
        if not isinstance(ort, str):
            fns["ort"] = ort
        for fn in fns.values():
            fn()  # compilation and first-call setup
        calls = max(3, min(50, int(0.05 / max(1e-6, time_round(fns, 1)["proj"]))))
        rounds = [time_round(fns, calls, clock) for _ in range(a.rounds)]
        med = {n: statistics.median(r[n] for r in rounds) * 1e3 for n in fns}
        cells = [f"{n} {med[n]:.3f}" + (f" ({med['ort'] / med[n]:.2f}x)" if "ort" in med else "") for n in fns]
        print(f"{name}: " + " | ".join(cells) + f" | noproj/proj {med['noproj'] / med['proj']:.2f}", flush=True)


if __name__ == "__main__":
    main()
