"""Where a recurrent step's time goes, part by part, on one thread: prints a Markdown section.

    python -m bench.profile_parts

1. LSTM tile of one micro-kernel row (48 float32 sequences), T=100: the whole
   kernel (`rnnjit.kernels.run`, one thread) against its gate product alone
   (the same `mk_lanes` calls on the same buffers) and its activations and
   state update alone (the same loops); the rest is bookkeeping (x_t gather,
   outputs, loop control).
2. Weight traffic at large H: the packed weights, and the time per
   sequence-step with 48-lane tiles against the wide tiles `tile_width` picks
   (each weight panel read once per tile and step).
3. Batch of one: the matrix-vector product alone (`mk_rows_grouped`) against
   the whole step, on one thread (what `rnnjit.kernels` runs while the weights
   fit in L2) and with the two-thread team (forced).

Single-thread timings in the thread's CPU time (`time.thread_time`), best of
several rounds: time the OS gave to other processes is not counted, so these
are steadier than the engine comparison on a shared machine (caches are still
shared). The two-thread team is wall-clock.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from rnnjit import kernels
from rnnjit.kernels import team_policy
from rnnjit.kernels._simd import MR, NV, P_ROWS, mk_lanes, mk_rows_grouped
from rnnjit.kernels.config import JIT
from rnnjit.kernels.update import cell_update
from rnnjit.spec import RNNSpec

PJIT = dict(JIT, cache=False)


@njit(**PJIT)
def _product(w, kstart, klen, z, g, bt, steps):
    n_pan, K = w.shape[0], w.shape[1]
    wf = w.reshape(w.size)
    for _ in range(steps):
        for p in range(n_pan):
            ks = kstart[p]
            for v in range(0, bt, NV * (16 if z.itemsize == 4 else 8)):
                mk_lanes(wf, (p * K + ks) * MR, z, ks * bt + v, bt, g, p * MR * bt + v, bt, klen[p])


@njit(**PJIT)
def _lstm_update(g, c, c2, m, z, h_at, NB, GB, steps):
    zh = z[h_at : h_at + NB]
    cs = np.concatenate((c, c2))  # c and c' in one array, as the kernels keep them
    for _ in range(steps):
        cell_update(0, g, GB, 0, NB, cs, 0, c.shape[0], m, zh, m)
        for q in range(NB):
            zh[q] = m[q]


@njit(**PJIT)
def _gemv(wg, z, g, steps):
    n_grp, K = wg.shape[0], wg.shape[1]
    wf = wg.reshape(wg.size)
    for _ in range(steps):
        for q in range(n_grp):
            mk_rows_grouped(wf, q * K * P_ROWS * MR, z, 0, g, q * P_ROWS * MR, K)


def best(fn, rounds=7, clock=time.thread_time):
    """Best of ``rounds`` calls; by default in this thread's CPU time (time the OS gave to another process is not counted)."""
    fn()
    t = 1e9
    for _ in range(rounds):
        t0 = clock()
        fn()
        t = min(t, clock() - t0)
    return t


def lstm(H, I, rng, dtype=np.float32, precision=None):
    w = {
        "weight_ih_l0": rng.standard_normal((4 * H, I), dtype=dtype) * 0.2,
        "weight_hh_l0": rng.standard_normal((4 * H, H), dtype=dtype) * 0.2,
        "bias_ih_l0": np.zeros(4 * H, dtype),
        "bias_hh_l0": np.zeros(4 * H, dtype),
    }
    return kernels.prepare(RNNSpec("lstm", I, H), w, precision)


def parts(H, I=32, T=100, dtype=np.float32):
    """One full micro-kernel row (48 float32 / 24 float64 sequences): whole kernel, gate product, activations."""
    bt = NV * (16 if np.dtype(dtype).itemsize == 4 else 8)
    rng = np.random.default_rng(0)
    p = lstm(H, I, rng, dtype)
    pk = p.layers[0]
    # Per step: the difference between 2T and T steps, so per-call costs (the
    # wrapper, scratch allocation) do not count as per-step bookkeeping.
    xs = {n: rng.standard_normal((bt, n, I), dtype=dtype) for n in (T, 2 * T)}
    runs = [best(lambda n=n: kernels.run(p, xs[n], np.full(bt, n, np.int64), None, None, "last", 1))
            for n in (T, 2 * T)]  # fmt: skip
    total = runs[1] - runs[0]
    K = pk.w.shape[1]
    z = rng.standard_normal(K * bt, dtype=dtype)
    g = np.zeros(pk.w.shape[0] * MR * bt, dtype)
    prod = best(lambda: _product(pk.w, pk.kstart, pk.klen, z, g, bt, T))
    hp = kernels.padded_hidden(H)
    c, c2, m = (np.zeros(H * bt, dtype) for _ in range(3))
    act = best(lambda: _lstm_update(g, c, c2, m, z, (I + 1) * bt, H * bt, hp * bt, T))
    gflop = 2 * 4 * H * (I + H + 2) * bt * T / 1e9
    return total, prod, act, gflop


def traffic(H, I, B, T):
    rng = np.random.default_rng(0)
    p = lstm(H, I, rng)
    x = rng.standard_normal((B, T, I), dtype=np.float32)
    L = np.full(B, T, np.int64)
    wbytes = p.layers[0].w.nbytes
    chosen = kernels.tile_width(B, 1, np.dtype(np.float32), wbytes)
    out = []
    for bt in sorted({NV * 16, chosen}):
        saved = kernels.tile_width
        kernels.tile_width = lambda *a, bt=bt: bt
        try:
            t = best(lambda: kernels.run(p, x, L, None, None, "last", 1), rounds=3)
        finally:
            kernels.tile_width = saved
        out.append((bt, t / (B * T) * 1e9, wbytes * T * -(-B // bt) / t / 1e9))
    return wbytes, out


def batch_of_one(H=128, I=32, T=100):
    rng = np.random.default_rng(0)
    p = lstm(H, I, rng)
    pk = p.layers[0]
    x = rng.standard_normal((1, T, I), dtype=np.float32)
    L = np.full(1, T, np.int64)
    one = best(lambda: kernels.run(p, x, L, None, None, "last", 1), rounds=15)
    saved, way = team_policy.TEAM_MIN_BYTES, team_policy.b1_team
    team_policy.TEAM_MIN_BYTES = 0  # force the team to time it, whatever the policy says
    team_policy.b1_team = lambda weight_bytes: True
    try:
        team_policy._team_paused_until = 0.0
        two = best(lambda: kernels.run(p, x, L, None, None, "last", 2), rounds=15, clock=time.perf_counter)
    finally:
        team_policy.TEAM_MIN_BYTES, team_policy.b1_team = saved, way
    z = rng.standard_normal(pk.w.shape[1], dtype=np.float32)
    g = np.zeros(pk.w.shape[0] * MR, np.float32)
    gemv = best(lambda: _gemv(pk.wg, z, g, T), rounds=15)
    return pk.w.nbytes, one, two, gemv


def main():
    print("## Per-part profile (one thread)\n")
    print("Command: `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python -m bench.profile_parts`.\n")
    print("**LSTM, one tile of a full micro-kernel row (48 float32 / 24 float64 sequences), T=100, I=32**: the whole "
          "kernel vs its parts run alone on the same buffers.\n")
    print("| H | whole us/step | gate product us/step (GFLOP/s) | activations + update us/step | bookkeeping us/step |")
    print("|---|---:|---:|---:|---:|")
    for H, dtype in ((32, np.float32), (128, np.float32), (64, np.float64)):
        total, prod, act, gflop = parts(H, dtype=dtype)
        T = 100
        label = f"{H}" + (" float64" if dtype == np.float64 else "")
        print(f"| {label} | {total / T * 1e6:.2f} | {prod / T * 1e6:.2f} ({gflop / prod:.0f}) | {act / T * 1e6:.2f} "
              f"| {(total - prod - act) / T * 1e6:.2f} |")  # fmt: skip
    print("\n**Weight traffic at large H** (LSTM, I=64, one thread): packed weights per layer, and the time per "
          "sequence-step with one micro-kernel row per tile (48 lanes) vs the tile `tile_width` picks; "
          "GB/s is the weight bytes read per second (each tile reads every panel once per step).\n")  # fmt: skip
    print("| H | weights MB | tile lanes | ns per sequence-step | weight GB/s |")
    print("|---:|---:|---:|---:|---:|")
    for H, B, T in ((512, 192, 20), (1024, 192, 10)):
        wbytes, rows = traffic(H, 64, B, T)
        for bt, ns, gbs in rows:
            print(f"| {H} | {wbytes / 1e6:.1f} | {bt} | {ns:.0f} | {gbs:.1f} |")
    wbytes, one, two, gemv = batch_of_one()
    T = 100
    print("\n**Batch of one** (LSTM H=128, I=32, T=100): the matrix-vector product alone vs the whole step.\n")
    print("| weights KB | product alone us/step (GB/s from L2) | whole, 1 thread us/step | whole, 2-thread team (forced) us/step |")
    print("|---:|---:|---:|---:|")
    print(f"| {wbytes / 1e3:.0f} | {gemv / T * 1e6:.2f} ({wbytes * T / gemv / 1e9:.0f}) | {one / T * 1e6:.2f} "
          f"| {two / T * 1e6:.2f} |\n")  # fmt: skip


if __name__ == "__main__":
    main()
