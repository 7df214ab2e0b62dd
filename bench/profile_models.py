"""Where a whole model's `Model.predict` spends its time, engine call by engine call, on one thread: a Markdown table.

    python -m bench.profile_models ocr_head beat_tracker speaker_encoder

For each real architecture (bench/real_models.py, the named cases; needs
torch to build them) every call `predict` makes into the numba engine is
timed: each recurrent module (`rnnjit.kernels.run`) and each run of
per-vector steps (`rnnjit.kernels.run_steps`, the linear layers between and
after the modules), with its GFLOP/s counting every multiply-add of the
products (activations and gathers not counted). "rest" is `predict` outside
those calls (input checks, index arrays, result shaping).

One thread and the thread's CPU time (`time.thread_time`), best of a few
calls: steadier than wall-clock on a shared machine (page faults of the
fresh output arrays are counted, time given to other processes is not). The
machine's float32 FMA peak is ~250 GFLOP/s per core (bench/report_notes.md).
"""

from __future__ import annotations

import argparse
import time

from rnnjit import kernels
from rnnjit.kernels.rows import LINEAR, LINEAR_OUT

GATES = {"lstm": 4, "gru": 3}


def rnn_flop(spec, steps: int) -> float:
    """Multiply-adds x 2 of a recurrent module over ``steps`` sequence-steps (every layer and direction)."""
    total, width = 0, spec.input_size
    for _ in range(spec.num_layers):
        total += spec.num_directions * GATES.get(spec.cell, 1) * spec.hidden_size * (width + spec.h_out) * 2 * steps
        if spec.proj_size:  # an LSTMP's projection of every step's h
            total += spec.num_directions * spec.h_out * spec.hidden_size * 2 * steps
        width = spec.h_out * spec.num_directions
    return float(total)


def profile(model, x, lengths, rounds: int = 3):
    """(total seconds, [(part, seconds, flop)]) of the best of ``rounds`` one-thread calls of ``model.predict``."""
    log = []
    run, run_steps = kernels.run, kernels.run_steps

    def timed_run(prepared, x, lengths, *args, **kw):
        t = time.thread_time()
        out = run(prepared, x, lengths, *args, **kw)
        s = prepared.spec
        name = f"{s.cell} I={s.input_size} H={s.hidden_size} x{s.num_layers}" + (" bi" if s.num_directions == 2 else "")
        log.append((name, time.thread_time() - t, rnn_flop(s, int(lengths.sum()))))
        return out

    def timed_steps(prepared, src, src_idx, dst, dst_idx, threads):
        t = time.thread_time()
        run_steps(prepared, src, src_idx, dst, dst_idx, threads)
        prog = prepared.few[0] if prepared.few is not None and src_idx.size < 48 else prepared.prog
        flop = sum(2 * int(op[1]) * int(op[2]) for op in prog if op[0] in (LINEAR, LINEAR_OUT)) * src_idx.size
        log.append((f"steps {src.shape[1]} -> {dst.shape[1]}", time.thread_time() - t, float(flop)))

    kernels.run, kernels.run_steps = timed_run, timed_steps
    try:
        model.predict(x, lengths=lengths, engine="numba", threads=1)  # compile, warm up
        best = None
        for _ in range(rounds):
            log.clear()
            t = time.thread_time()
            model.predict(x, lengths=lengths, engine="numba", threads=1)
            total = time.thread_time() - t
            if best is None or total < best[0]:
                best = (total, list(log))
    finally:
        kernels.run, kernels.run_steps = run, run_steps
    return best


def main(argv=None):
    import torch

    from bench.real_models import REAL_CASES, RealBench

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="+", choices=[c.name for c in REAL_CASES], metavar="CASE",
                    help="real model cases, e.g. ocr_head beat_tracker speaker_encoder")  # fmt: skip
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    print("| model | part | ms (1 thread, CPU time) | GFLOP/s |")
    print("|---|---|---:|---:|")
    for name in a.cases:
        b = RealBench(next(c for c in REAL_CASES if c.name == name), torch)
        total, parts = profile(b.model, b.x, b.lengths, a.rounds)
        flop = sum(f for _, _, f in parts)
        print(f"| {name} ({b.case.shape}) | whole | {total * 1e3:.1f} | {flop / total / 1e9:.0f} |")
        for part, t, f in parts:
            print(f"| | {part} | {t * 1e3:.1f} | {f / t / 1e9:.0f} |")
        print(f"| | rest | {(total - sum(t for _, t, _ in parts)) * 1e3:.1f} | |")


if __name__ == "__main__":
    main()
