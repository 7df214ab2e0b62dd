"""Mid-size batches of wide stacked layers (the speaker encoder's variants): the plan chosen, and what it costs.

    python -m bench.mid_batches                                   # plans of B=17..64, timed against forced plans
    python -m bench.mid_batches --stacks 384x3 --B 37,48 --plans auto,4+0,16+4 --rounds 7
    python -m bench.mid_batches --tiles --stacks 256x2,384x3,512x2   # tile kinds, one thread, CPU time

A stack is ``HxL``: an LSTM 40 -> H of L layers (the speaker encoder's input
width), final state, random weights, all lengths ``--T``, through
`rnnjit.kernels.run` (the recurrent part is all of the speaker encoder's
time). Default mode: for each B, the plan `tiling.tile_width` /
`remainder_width` / `team_width` choose (``auto``), ``tiles`` (the same without part
teams, `rnnjit.kernels.tiling.team_width`) and forced plans (``W+R``: tiles of W
sequences and a remainder of R-sequence tiles, 0 for none), their calls
alternated in one process (each after a 10 ms pause), best of ``--rounds``;
milliseconds per sequence, wall and the process's CPU time (every thread's
work), and for ``auto`` ``vs64``: its wall time per sequence over B=64's
(``--B`` must hold 64 for it).

``torch`` among the plans times torch's own LSTM of the stack in the same rotation; the last column gives each
plan's gate products per second (GFLOP/s, wall).

``--tiles``: one thread, that thread's CPU time, per sequence and layer-step,
a 64-, 48-, 32- and 16-lane tile, FEW-sequence tiles (16 sequences) and
one-sequence tiles (4), relative to the 48-lane tile: the units of the cost
model in `rnnjit.kernels.tiling`, measured on whole steps of a stack.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.tile_costs import _prepared
from bench.remainder_batches import parse_batches
from rnnjit import kernels
from rnnjit.kernels._simd import FEW

DEFAULT_B = "17,25,29,33,37,41,45,48,49,57,63,32,64"


def _stack(text: str) -> tuple[int, int]:
    H, L = text.lower().split("x")
    return int(H), int(L)


def _forced(plan: str):
    """A context in which `kernels.run` uses ``plan`` ("auto", "tiles": auto without part teams, or "W+R")."""
    tw, rw, pt = kernels.tile_width, kernels.remainder_width, kernels.team_width

    class _Ctx:
        def __enter__(self):
            if plan != "auto":
                kernels.team_width = lambda *a, **k: False  # tiles handed out to the threads, no part teams
            if plan not in ("auto", "tiles"):
                w, r = (int(v) for v in plan.split("+"))
                kernels.tile_width = lambda *a, **k: w
                # no remainder part where the batch has none (B a multiple of the unit: a FEW tile, a vector)
                kernels.remainder_width = lambda B, th, dt, wb, bt, *a: r if B % (FEW if bt == FEW else 16) else 0

        def __exit__(self, *exc):
            kernels.tile_width, kernels.remainder_width, kernels.team_width = tw, rw, pt

    return _Ctx()


def _torch_runner(plan_names, threads):
    """``run(H, L, x)``: torch's LSTM 40 -> H x L forward on ``x`` (random weights, made once per stack), when
    "torch" is among the plans; its flops per second are the reference for the plans' (`gflops`)."""
    if "torch" not in plan_names:
        return None
    import torch

    torch.set_num_threads(threads)
    models = {}

    def run(H, L, x):
        m = models.get((H, L))
        if m is None:
            m = models[(H, L)] = torch.nn.LSTM(40, H, L, batch_first=True).eval()
        with torch.inference_mode():
            m(torch.from_numpy(x))

    return run


def gflops(H, L, B, T, seconds):
    """An LSTM 40 -> H x L stack's gate products (2 flops a multiply-add) over ``seconds``, in GFLOP/s."""
    return 2 * B * T * 4 * H * (40 + H + (L - 1) * 2 * H) / seconds / 1e9


def plans(stacks, batches, plan_names, T, threads, rounds, rng):
    torch_run = _torch_runner(plan_names, threads)
    cols = " | ".join(f"{p} wall | {p} cpu" for p in plan_names)
    print(f"| stack | B | plan chosen | {cols} | auto vs64 | GFLOP/s |")
    print("|---|---:|---|" + "---:|---:|" * len(plan_names) + "---:|---|")
    for H, L in stacks:
        p = _prepared("lstm", 40, H, L, rng)
        wb = max(pk.w.nbytes for pk in p.layers)
        x = rng.standard_normal((max(batches), T, 40)).astype(np.float32)
        rows, per_seq = [], {}
        for B in batches:
            lengths = np.full(B, T, np.int64)
            bt = kernels.tile_width(B, threads, p.dtype, wb)
            rw = kernels.remainder_width(B, threads, p.dtype, wb, bt)
            chosen = f"{bt}+{rw}" + (" teams" if kernels.team_width(B, threads, p.dtype, wb, bt, rw) else "")
            best = {n: [np.inf, np.inf] for n in plan_names}
            for r in range(rounds + 1):  # the first round compiles and warms: not counted
                for n in plan_names if r % 2 else plan_names[::-1]:
                    time.sleep(0.01)
                    if n == "torch":
                        c0, w0 = time.process_time(), time.perf_counter()
                        torch_run(H, L, x[:B])
                        w, c = time.perf_counter() - w0, time.process_time() - c0
                        if r:
                            best[n] = [min(best[n][0], w), min(best[n][1], c)]
                        continue
                    with _forced(n):
                        c0, w0 = time.process_time(), time.perf_counter()
                        kernels.run(p, x[:B], lengths, None, None, "final", threads)
                        w, c = time.perf_counter() - w0, time.process_time() - c0
                    if r:
                        best[n] = [min(best[n][0], w), min(best[n][1], c)]
            per_seq[B] = best.get("auto", best[plan_names[0]])[0] / B
            rows.append((B, chosen, best))
        for B, chosen, best in rows:
            cells = " | ".join(f"{best[n][0] * 1e3 / B:.2f} | {best[n][1] * 1e3 / B:.2f}" for n in plan_names)
            vs = f"{per_seq[B] / per_seq[64]:.2f}" if 64 in per_seq else ""
            rate = " ".join(f"{n} {gflops(H, L, B, T, best[n][0]):.0f}" for n in plan_names)
            print(f"| {H}x{L} | {B} | {chosen} | {cells} | {vs} | {rate} |", flush=True)


def tiles(stacks, T, rounds, rng):
    def cpu_best(f):
        b = np.inf
        for _ in range(rounds):
            t = time.thread_time()
            f()
            b = min(b, time.thread_time() - t)
        return b

    widths = ((64, 64), (48, 48), (32, 32), (16, 16), (FEW, 16), (1, 4))
    print("| stack | weights MB | " + " | ".join(f"{w}" for w, _ in widths) + " |")
    print("|---|---:|" + "---:|" * len(widths))
    for H, L in stacks:
        p = _prepared("lstm", 40, H, L, rng)
        x = rng.standard_normal((64, T, 40)).astype(np.float32)
        lengths = np.full(64, T, np.int64)
        t = {}
        for w, n in widths:
            with _forced(f"{w}+0"):
                t[w] = cpu_best(lambda: kernels.run(p, x[:n], lengths[:n], None, None, "final", 1)) / n / T / L
        mb = max(pk.w.nbytes for pk in p.layers) / 2**20
        print(f"| {H}x{L} | {mb:.2f} | " + " | ".join(f"{t[w] / t[48]:.2f}" for w, _ in widths) + " |", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stacks", default="256x2,384x3,512x2", help="HxL, comma-separated")
    ap.add_argument("--B", default=DEFAULT_B)
    ap.add_argument("--plans", default="auto,4+0,16+4,32+0", help="auto and forced W+R plans, comma-separated")
    ap.add_argument("--T", type=int, default=160)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tiles", action="store_true", help="tile kinds on one thread, CPU time")
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    stacks = [_stack(s) for s in a.stacks.split(",")]
    if a.tiles:
        tiles(stacks, a.T, a.rounds, rng)
    else:
        plans(stacks, parse_batches(a.B), a.plans.split(","), a.T, a.threads, a.rounds, rng)


if __name__ == "__main__":
    main()
