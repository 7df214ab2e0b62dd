"""Small batches path by path: each way of running B = 1..256 sequences, interleaved with torch.

    python -m bench.small_batch [--threads 2] [--rounds 7] [--B 1,2,4] [--variants policy,one,...]

For each B of the batch curve (LSTM H=128, I=32, T=100, as bench/cases.py),
every variant below and torch (``torch.inference_mode()``, same threads; and
onnxruntime for B=1) are timed in rounds: each round runs every variant in a
new random order, ``calls`` calls each, and keeps the median call. The table
gives, per variant, the median over rounds and the range (min-max) of the
round medians, in microseconds per call, and the ratio torch / variant.
Interleaving keeps a burst of another process's load from landing on one
variant only; the range shows how much it moved.

Variants force one path of `rnnjit.kernels` by replacing `tile_width` and
`team_chunks` for the call:

- ``policy``: what `rnnjit.kernels` chooses (the default);
- ``one``: the policy's tiles, one thread;
- ``bt1`` / ``few`` / ``l16`` / ``l32`` / ``l48``: tiles of 1, FEW (4), 16,
  32 or 48 sequences on the threads, never a team;
- ``team``: one tile of every sequence (1, or 16 lanes) run as a team.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np

from bench.cases import BATCH_CURVE, Case
from rnnjit import kernels
from rnnjit.kernels import team_policy
from rnnjit.kernels._simd import FEW

WIDTHS = {"bt1": 1, "few": FEW, "l16": 16, "l32": 32, "l48": 48}


def _forced(prepared, x, lengths, threads, bt=None, team=None):
    """A call of `kernels.run` with the tile width and the team choice forced (None: the policy's)."""
    tw, tc, least, way = kernels.tile_width, kernels.team_chunks, team_policy.TEAM_MIN_BYTES, team_policy.b1_team

    def call():
        if bt is not None:
            kernels.tile_width = lambda *a: bt
        if team is False:
            kernels.team_chunks = lambda *a: None
        if team is True:
            team_policy.TEAM_MIN_BYTES = 0  # a batch of one runs as a team whatever its weights and its timing
            team_policy.b1_team = lambda weight_bytes: True
        try:
            team_policy._team_paused_until = 0.0  # measure the path, not the back-off
            return kernels.run(prepared, x, lengths, None, None, "last", threads)
        finally:
            kernels.tile_width, kernels.team_chunks, team_policy.TEAM_MIN_BYTES = tw, tc, least
            team_policy.b1_team = way

    return call


def variants(b, B, threads, names):
    """name -> zero-argument callable, for the variants in ``names`` that make sense at ``B``."""
    p, x, L = b.prepared, b.x, b.lengths
    out = {}
    for name in names:
        if name == "policy":
            out[name] = _forced(p, x, L, threads)
        elif name == "one":
            out[name] = _forced(p, x, L, 1)
        elif name == "team":
            if B == 1 or B <= 16:
                out[name] = _forced(p, x, L, threads, bt=1 if B == 1 else 16, team=True)
        elif name in WIDTHS:
            w = WIDTHS[name]
            if (w == 1 and B <= 16) or (w == FEW and FEW <= B <= 64) or (w >= 16 and w // 2 < B):
                out[name] = _forced(p, x, L, threads, bt=w, team=False)
    return out


def time_round(fns, calls):
    """Median seconds per call of each callable, in a random order."""
    res = {}
    names = list(fns)
    random.shuffle(names)
    for n in names:
        fn = fns[n]
        ts = []
        for _ in range(calls):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        res[n] = statistics.median(ts)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--B", default=",".join(map(str, BATCH_CURVE)))
    ap.add_argument("--variants", default="policy,one,bt1,few,l16,l32,l48,team")
    ap.add_argument("--H", type=int, default=128, help="hidden size (the curve is at 128)")
    ap.add_argument("--ort", action="store_true", help="also onnxruntime (B=1 only)")
    a = ap.parse_args(argv)
    import torch

    from bench.conftest import Bench, runner

    torch.set_num_threads(a.threads)
    names = a.variants.split(",")
    print(f"LSTM H={a.H} I=32 T=100, threads={a.threads} rounds={a.rounds}; us per call: median of round medians [min-max]; x = torch time / variant time (for ort too)\n")
    for B in map(int, a.B.split(",")):
        b = Bench(Case(f"lstm_b{B}", "lstm", B, 100, 32, a.H), torch)
        fns = variants(b, B, a.threads, names)
        fns["torch"] = runner(b, "torch", a.threads)
        if a.ort and B == 1:
            ort = runner(b, "onnxruntime", a.threads)
            if not isinstance(ort, str):
                fns["ort"] = ort
        for fn in fns.values():
            fn()  # compilation and first-call setup
        calls = max(5, min(50, int(0.02 / max(1e-6, time_round(fns, 1)["torch"]))))
        rounds = [time_round(fns, calls) for _ in range(a.rounds)]
        med = {n: statistics.median(r[n] for r in rounds) for n in fns}
        cells = []
        for n in fns:
            lo, hi = min(r[n] for r in rounds), max(r[n] for r in rounds)
            cells.append(f"{n} {med[n] * 1e6:.0f} [{lo * 1e6:.0f}-{hi * 1e6:.0f}] {med['torch'] / med[n]:.2f}x")
        print(f"B={B}: " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
