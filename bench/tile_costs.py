"""What a FEW-sequence tile and a one-sequence tile cost against a full lane tile: the measurement behind
`rnnjit.kernels.tiling.FEW_TILE_COST` and `ONE_TILE_COST`.

    python -m bench.tile_costs

LSTM I=H, T=100, 1 and 2 layers, one thread, the thread's CPU time (best of
3): 48 sequences in one 48-lane tile, in twelve FEW tiles, and 16 sequences
in one-sequence tiles (the tile width forced). Printed in sequence-steps of
the 48-lane tile (its time per sequence = 1), the unit of the cost model.
"""

from __future__ import annotations

import numpy as np

from bench.profile_parts import best
from rnnjit import kernels
from rnnjit.kernels._simd import FEW
from rnnjit.spec import RNNSpec


def _prepared(H, layers, rng):
    w = {}
    for k in range(layers):
        for name, cols in (("ih", H), ("hh", H)):
            w[f"weight_{name}_l{k}"] = rng.standard_normal((4 * H, cols)).astype(np.float32) * 0.1
        w[f"bias_ih_l{k}"] = w[f"bias_hh_l{k}"] = np.zeros(4 * H, np.float32)
    return kernels.prepare(RNNSpec("lstm", H, H, layers), w)


def main():
    rng = np.random.default_rng(0)
    T = 100
    print("| layers | H | FEW tile | one-sequence tile |")
    print("|---:|---:|---:|---:|")
    saved = kernels.tile_width
    try:
        for layers in (1, 2):
            for H in (64, 128, 150, 200, 256):
                p = _prepared(H, layers, rng)
                x = rng.standard_normal((48, T, H)).astype(np.float32)
                lengths = np.full(48, T, np.int64)
                per_seq = {}
                for bt, n in ((48, 48), (FEW, 48), (1, 16)):
                    kernels.tile_width = lambda *a, bt=bt: bt
                    per_seq[bt] = best(lambda n=n: kernels.run(p, x[:n], lengths[:n], None, None, "all", 1),
                                       rounds=3) / n  # fmt: skip
                print(f"| {layers} | {H} | {FEW * per_seq[FEW] / per_seq[48]:.2f} | {per_seq[1] / per_seq[48]:.2f} |")
    finally:
        kernels.tile_width = saved


if __name__ == "__main__":
    main()
