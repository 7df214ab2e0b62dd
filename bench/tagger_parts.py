"""Where a tagger batch of one goes, per token and per call: rnnjit against onnxruntime, one thread each.

    python -m bench.tagger_parts [--calls 300] [--rounds 5]

For tagger variants (embedding V x 64, BiLSTM H, linear 2H -> 32 + relu,
linear 32 -> O per token; `bench.tagger_variants.Variant`) at a batch of one
and T = 1, 10, 20, 40 tokens, the best over rounds of the mean CPU time of
this thread (``time.thread_time_ns``) per call, in us: ``predict`` (one
thread), onnxruntime (one intra-op thread), and predict's compiled workers
one by one (recorded on a first call, `bench.predict_overhead._record`);
``python`` is predict less its workers. Then a least-squares line over T
per engine and part: fixed us + us per token. The head's GFLOP/s is
2 * T * (32 * O + 2H * 32) flops over the head worker's time.
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.fixed_costs import _best, _params
from bench.predict_overhead import _record
from bench.real_models import _session
from bench.tagger_variants import Variant

VARIANTS = [(1000, 32, 876), (5398, 64, 876), (5398, 128, 200), (5398, 32, 2000)]  # (V, H, O); E = 64, M = 32
TS = (1, 10, 20, 40)


def _parts(v: Variant, calls: int, rounds: int) -> dict[str, float]:
    pred = lambda: v.model.predict(v.x, v.lengths, engine="numba", threads=1)  # noqa: E731
    pred()  # compilation
    ort = _session(v, "onnxruntime", 1)
    out = {"predict": _best(pred, calls, rounds), "ort": _best(ort, calls, rounds)}
    work = 0.0
    for i, (f, args) in enumerate(_record(pred)):
        names = _params(f)
        counter = args[names.index(next(n for n in ("next_tile", "next_block") if n in names))]
        args = tuple(args)

        def full(f=f, args=args, counter=counter):
            counter[:] = 0
            f(*args)

        t = _best(full, calls, rounds)
        out[f"w{i} {f.__name__}"] = t
        work += t
    out["python"] = out["predict"] - work
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    for V, H, O in VARIANTS:
        rows = {}
        for T in TS:
            rows[T] = _parts(Variant(V, 64, H, 32, O, T, torch), a.calls, a.rounds)
        keys = list(rows[TS[0]])
        print(f"\nV={V} H={H} O={O} B=1: us per call, one thread's CPU time")
        print("| part | " + " | ".join(f"T={T}" for T in TS) + " | fixed | per token |")
        print("|---|" + "---:|" * (len(TS) + 2))
        for k in keys:
            ys = [rows[T][k] for T in TS]
            slope, icept = np.polyfit(TS, ys, 1)
            print(f"| {k} | " + " | ".join(f"{y:.1f}" for y in ys) + f" | {icept:.1f} | {slope:.3f} |")
        head = [k for k in keys if "rows_worker" in k]
        if head:
            T = TS[-1]
            fl = 2 * T * (32 * O + 2 * H * 32)
            print(f"head at T={T}: {fl / rows[T][head[-1]] / 1e3:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
