"""What a FEW-sequence tile and a one-sequence tile cost against a full lane tile: the measurement behind
`rnnjit.kernels.tiling.FEW_TILE_COST`, `ONE_TILE_COST` and how they scale with a layer's gate rows
(`rnnjit.kernels.tiling.small_tile_scale`).

    python -m bench.tile_costs                      # LSTM I=H, H=64..256, 1 and 2 layers (the constants)
    python -m bench.tile_costs --grid               # cells x H=16..512 x I small and wide, one layer
    python -m bench.tile_costs --grid --cells rnn_tanh --hidden 16 25 --inputs 266
    python -m bench.tile_costs --plans              # the plans with and without `small_tile_scale`, timed

One thread, the thread's CPU time (best of ``--rounds``): 48 sequences in one
48-lane tile, 16 in one 16-lane tile, 16 in four FEW tiles and 8 in
one-sequence tiles (the tile width forced). Printed in sequence-steps of the
48-lane tile (its time per sequence = 1), the unit of the cost model, next
to what the cost model counts for each (``model``: the constant times
`small_tile_scale`; the 16-lane tile: `LANES1_COST` x 16).

``--plans``: whole models (the onset detector's architecture, a BiRNN of
3 layers and I=266, at H=16/25 and as a GRU of H=25; a BiRNN of H=64; a
BiLSTM of H=32, I=64 as the tagger's; an LSTM of H=32, 2 layers) at batches
where the cost model with `small_tile_scale` picks another plan than the
constants alone (the named shapes' plans do not change: bench/report_notes.md),
T=300, ``--threads`` threads, the process's CPU time and wall time per call,
both plans' calls interleaved in one process (best of ``--rounds``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.profile_parts import best
from rnnjit import kernels
from rnnjit.kernels import tiling
from rnnjit.kernels._simd import FEW
from rnnjit.spec import GATES, RNNSpec


def _prepared(cell, I, H, layers, rng):
    G, w = GATES[cell], {}
    for k in range(layers):
        for name, cols in (("ih", I if k == 0 else H), ("hh", H)):
            w[f"weight_{name}_l{k}"] = rng.standard_normal((G * H, cols)).astype(np.float32) * np.float32(0.5 / np.sqrt(cols))
        w[f"bias_ih_l{k}"] = w[f"bias_hh_l{k}"] = np.zeros(G * H, np.float32)
    return kernels.prepare(RNNSpec(cell, I, H, layers), w)


def _per_seq(p, x, lengths, bt, n, rounds):
    """Thread CPU time per sequence of ``n`` sequences in tiles of ``bt`` (forced)."""
    saved = kernels.tile_width
    kernels.tile_width = lambda *a, **k: bt
    try:
        return best(lambda: kernels.run(p, x[:n], lengths[:n], None, None, "all", 1), rounds=rounds) / n
    finally:
        kernels.tile_width = saved


def _model(cell, I, H, layers, bidirectional, rng):
    G, w = GATES[cell], {}
    D = 2 if bidirectional else 1
    for k in range(layers):
        for sfx in ("", "_reverse")[:D]:
            for name, cols in (("ih", I if k == 0 else D * H), ("hh", H)):
                w[f"weight_{name}_l{k}{sfx}"] = rng.standard_normal((G * H, cols)).astype(np.float32) * np.float32(0.5 / np.sqrt(cols))
            w[f"bias_ih_l{k}{sfx}"] = w[f"bias_hh_l{k}{sfx}"] = np.zeros(G * H, np.float32)
    return kernels.prepare(RNNSpec(cell, I, H, layers, bidirectional), w)


def plans(threads, rounds, rng):
    """Each case's plan under the constants alone (``small`` = 1) and scaled: CPU and wall ms per call."""
    tw, rw = kernels.tile_width, kernels.remainder_width
    unscaled = (lambda B, th, dt, wb, small=1.0: tw(B, th, dt, wb), lambda B, th, dt, wb, bt, small=1.0: rw(B, th, dt, wb, bt))
    cases = [("rnn_tanh", 266, 16, 3, True, (5, 8, 13, 22)), ("rnn_tanh", 266, 25, 3, True, (8, 13, 22, 37)),
             ("gru", 266, 25, 3, True, (8, 13, 22)), ("rnn_tanh", 266, 64, 1, True, (10, 13)),
             ("lstm", 64, 32, 1, True, (10, 13, 22)), ("lstm", 32, 32, 2, False, (12, 13))]  # fmt: skip
    T = 300
    print("| model | B | plan (constants) | plan (scaled) | CPU ms constants | CPU ms scaled | ratio | wall ratio |")
    print("|---|---:|---|---|---:|---:|---:|---:|")
    for cell, I, H, layers, bi, batches in cases:
        p = _model(cell, I, H, layers, bi, rng)
        small = tiling.small_tile_scale(GATES[cell], H)
        for B in batches:
            x = rng.standard_normal((B, T, I)).astype(np.float32)
            lengths = np.full(B, T, np.int64)
            wb = max(pk.w.nbytes for pk in p.layers)
            th = threads // 2 if bi and threads >= 2 else threads  # a bidirectional layer's direction: its share
            shown = []
            for f_tw, f_rw, sm in ((*unscaled, 1.0), (tw, rw, small)):
                bt = f_tw(B, th, p.dtype, wb, sm)
                shown.append(f"{bt}+{f_rw(B, th, p.dtype, wb, bt, sm)}")
            best_cpu, best_wall = [1e9, 1e9], [1e9, 1e9]
            for _ in range(rounds):
                for i, (f_tw, f_rw) in enumerate((unscaled, (tw, rw))):
                    kernels.tile_width, kernels.remainder_width = f_tw, f_rw
                    try:
                        c0, w0 = time.process_time(), time.perf_counter()
                        kernels.run(p, x, lengths, None, None, "all", threads)
                        best_cpu[i] = min(best_cpu[i], time.process_time() - c0)
                        best_wall[i] = min(best_wall[i], time.perf_counter() - w0)
                    finally:
                        kernels.tile_width, kernels.remainder_width = tw, rw
            name = f"{cell} I={I} H={H} L={layers}{' bi' if bi else ''}"
            print(f"| {name} | {B} | {shown[0]} | {shown[1]} | {best_cpu[0] * 1e3:.2f} | {best_cpu[1] * 1e3:.2f} | "
                  f"{best_cpu[0] / best_cpu[1]:.2f} | {best_wall[0] / best_wall[1]:.2f} |", flush=True)  # fmt: skip


def measure(cell, I, H, layers, T, rounds, rng):
    """(FEW tile, one-sequence tile, 16-lane tile) in sequence-steps of the 48-lane tile."""
    p = _prepared(cell, I, H, layers, rng)
    x = rng.standard_normal((48, T, I)).astype(np.float32)
    lengths = np.full(48, T, np.int64)
    t = {bt: _per_seq(p, x, lengths, bt, n, rounds) for bt, n in ((48, 48), (16, 16), (FEW, 16), (1, 8))}
    return FEW * t[FEW] / t[48], t[1] / t[48], 16 * t[16] / t[48]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", action="store_true", help="cells x H x I, one layer (default: LSTM I=H, 1-2 layers)")
    ap.add_argument("--cells", nargs="+", default=["rnn_tanh", "gru", "lstm"])
    ap.add_argument("--hidden", nargs="+", type=int, default=[16, 25, 32, 64, 128, 256, 512])
    ap.add_argument("--inputs", nargs="+", type=int, default=[32, 266], help="input sizes of the grid")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--plans", action="store_true", help="time the plans with and without small_tile_scale")
    ap.add_argument("--threads", type=int, default=1, help="threads of --plans")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    if args.plans:
        plans(args.threads, args.rounds, rng)
        return
    if args.grid:
        cases = [(c, i, h, 1) for c in args.cells for h in args.hidden for i in args.inputs]
    else:
        cases = [("lstm", h, h, layers) for layers in (1, 2) for h in (64, 128, 150, 200, 256)]
    print("| cell | layers | I | H | FEW tile | model | one-sequence tile | model | 16-lane tile | model |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cell, I, H, layers in cases:
        few, one, lane16 = measure(cell, I, H, layers, args.steps, args.rounds, rng)
        scale = tiling.small_tile_scale(GATES[cell], H)
        print(f"| {cell} | {layers} | {I} | {H} | {few:.2f} | {tiling.FEW_TILE_COST * scale:.2f} | {one:.2f} | "
              f"{tiling.ONE_TILE_COST * scale:.2f} | {lane16:.2f} | {tiling.LANES1_COST * 16:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
