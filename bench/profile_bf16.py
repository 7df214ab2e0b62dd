"""Where a bf16 step's time goes, on one thread: prints the figures behind bench/precision_notes.md.

    python -m bench.profile_bf16

1. The micro-kernel's ceiling: `panel_lanes` over 8 weight panels of 48
   reduction elements and one tile of lanes, all in L1, at float32 and bf16,
   for tiles of 1 to 9 SIMD vectors (16 lanes each).
2. One LSTM tile (48 lanes, T steps) at H=128, 512 and 1024: the whole
   kernel (`rnnjit.kernels.run`, one call over T steps) against its
   parts run alone on the same buffers: the gate product (`mk_lanes`), the
   activations and state update, and the per-step packing of z into bf16
   pairs (`pack_operand`).
3. Tile widths at H=512 and H=1024 (the whole kernel with each width forced),
   alternated in one process.

Timings are this thread's CPU time (`time.thread_time`), best of several
rounds (`bench.profile_parts.best`); say the load beside them.
"""

from __future__ import annotations

import os
import sys

import numpy as np
from numba import njit

from bench.profile_parts import PJIT, _lstm_update, _product, best, lstm
from rnnjit import kernels
from rnnjit.kernels._simd import MR
from rnnjit.kernels.layer import pack_operand, panel_lanes
from rnnjit.kernels.pack import to_operand

LV = 16  # float32 lanes per SIMD vector


@njit(**PJIT)
def _panels(w, z, g, bt, steps):
    n_pan, kw = w.shape[0], w.shape[1]
    wf = w.reshape(w.size)
    slen = np.full(bt, 1, np.int64)
    for _ in range(steps):
        for p in range(n_pan):
            panel_lanes(wf, p * kw * MR, z, 0, g, p * MR * bt, bt, kw, 0, slen, bt // LV, LV)


@njit(**PJIT)
def _pack(z, zq, w, rows, bt, steps):
    for _ in range(steps):
        pack_operand(z, zq, w, rows, bt, 1, 0, 0, 0, z)


def ceiling(precision: str, vecs: int) -> float:
    """GFLOP/s of the lane micro-kernels with everything in L1 (a bf16 element is two multiply-adds)."""
    rng = np.random.default_rng(0)
    n_pan, kw, bt = 8, 48, vecs * LV
    if precision == "bf16":  # bf16 pairs of moderate values: no denormals, no overflow
        w = rng.integers(0, 2**31, (n_pan, kw, MR)).astype(np.uint32) & np.uint32(0x3F003F00)
        z = rng.integers(0, 2**31, kw * bt).astype(np.uint32) & np.uint32(0x3F003F00)
    else:
        w = rng.standard_normal((n_pan, kw, MR)).astype(np.float32)
        z = rng.standard_normal(kw * bt).astype(np.float32)
    g = np.zeros(n_pan * MR * bt, np.float32)
    steps = 1_000_000 // bt
    t = best(lambda: _panels(w, z, g, bt, steps), rounds=3)
    return 2 * n_pan * MR * kw * bt * steps * (2 if precision == "bf16" else 1) / t / 1e9


def parts(H: int, I: int, T: int, bt: int = 48) -> dict:
    """us per step of one bt-lane bf16 tile: whole kernel, gate product, update, packing; and float32's whole."""
    rng = np.random.default_rng(0)
    out = {}
    for precision in ("float32", "bf16"):
        p = lstm(H, I, np.random.default_rng(0), precision=precision)
        x = rng.standard_normal((bt, T, I), dtype=np.float32)
        out[precision] = best(lambda: kernels.run(p, x, np.full(bt, T, np.int64), None, None, "last", 1)) / T * 1e6
    pk = p.layers[0]
    K = I + H + 2
    z = rng.standard_normal(K * bt).astype(np.float32)
    zq = np.ascontiguousarray(to_operand(z.reshape(K, bt).T, p.precision).T.reshape(-1))
    g = np.zeros(pk.w.shape[0] * MR * bt, np.float32)
    out["product"] = best(lambda: _product(pk.w, pk.kstart, pk.klen, zq, g, bt, T), rounds=3) / T * 1e6
    c, c2, m = (np.zeros(H * bt, np.float32) for _ in range(3))
    hp = kernels.padded_hidden(H)
    out["update"] = best(lambda: _lstm_update(g, c, c2, m, z, (I + 1) * bt, H * bt, hp * bt, T)) / T * 1e6
    out["pack"] = best(lambda: _pack(z, np.zeros_like(zq), pk.w, K, bt, T)) / T * 1e6
    out["gflop"] = 2 * 4 * H * (I + H + 2) * bt / 1e3  # per step, in units that give GFLOP/s from us
    return out


def widths(H: int, I: int, B: int, T: int, bts) -> dict:
    """GFLOP/s of the whole bf16 kernel (one thread) with each tile width forced, alternated over rounds."""
    rng = np.random.default_rng(0)
    p = lstm(H, I, rng, precision="bf16")
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    L = np.full(B, T, np.int64)
    saved = kernels.tile_width
    t = dict.fromkeys(bts, float("inf"))
    try:
        for r in range(4):
            for bt in bts if r % 2 == 0 else bts[::-1]:
                kernels.tile_width = lambda *a, bt=bt: bt
                t[bt] = min(t[bt], best(lambda: kernels.run(p, x, L, None, None, "last", 1), rounds=1))
    finally:
        kernels.tile_width = saved
    return {bt: 2 * 4 * H * (I + H) * T * B / t[bt] / 1e9 for bt in bts}


def main() -> None:
    print(f"## bf16 profile (one thread; load average {', '.join(f'{v:.1f}' for v in os.getloadavg())})\n")
    print("Command: `python -m bench.profile_bf16`.\n")
    print("**Micro-kernel ceiling** (everything in L1), GFLOP/s by SIMD vectors of lanes per tile:\n")
    vecs = (1, 2, 3, 6, 9)
    print("| precision | " + " | ".join(f"{v} ({v * LV} lanes)" for v in vecs) + " |")
    print("|---|" + "---:|" * len(vecs))
    for precision in ("float32", "bf16"):
        print(f"| {precision} | " + " | ".join(f"{ceiling(precision, v):.0f}" for v in vecs) + " |", flush=True)
    print("\n**One 48-lane LSTM tile**, us per step (GFLOP/s in parentheses):\n")
    print("| H, I | float32 whole | bf16 whole | bf16 gate product alone | update alone | packing z alone | rest |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for H, I, T in ((128, 32, 100), (512, 256, 40), (1024, 512, 10)):
        r = parts(H, I, T)
        rest = r["bf16"] - r["product"] - r["update"] - r["pack"]
        print(f"| {H}, {I} | {r['float32']:.1f} ({r['gflop'] / r['float32']:.0f}) | {r['bf16']:.1f} "
              f"({r['gflop'] / r['bf16']:.0f}) | {r['product']:.1f} ({r['gflop'] / r['product']:.0f}) | "
              f"{r['update']:.1f} | {r['pack']:.1f} | {rest:.1f} |", flush=True)  # fmt: skip
    print("\n**Tile widths** (whole bf16 kernel, one thread), GFLOP/s:\n")
    for H, I, B, T, bts in ((512, 256, 288, 20, (48, 96, 144, 288)), (1024, 512, 144, 8, (48, 144))):
        res = widths(H, I, B, T, bts)
        print(f"- H={H}, B={B}: " + ", ".join(f"{bt} lanes {g:.0f}" for bt, g in res.items()), flush=True)


if __name__ == "__main__":
    sys.exit(main())
