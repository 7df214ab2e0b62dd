"""Where an int8 step's time goes, part by part, on one thread: prints a Markdown table.

    python -m bench.profile_int8

Per shape (LSTM, random weights, torch-free): the whole kernel per step
(`rnnjit.kernels.run`, one thread, the difference between 2T and T steps) at
float32 and at int8, and int8's parts run alone on buffers of the same
sizes: the two ``vpdpbusd`` products (x segment, h segment), the per-lane
input quantization (`rnnjit.kernels.layer._int8_inputs`) and the rescale
from int32 to float32 (lane tiles: `_int8_panel` per panel; one sequence:
`_int8_rows`); the rest is the float32 cell update, the x_t gather and
loop control. Times in the thread's CPU time, best of several rounds
(`bench.profile_parts.best`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from bench.profile_parts import best
from rnnjit import kernels
from rnnjit.kernels import layer
from rnnjit.kernels._simd import GROUP_ROWS, MR, NV
from rnnjit.kernels.config import JIT
from rnnjit.spec import RNNSpec

PJIT = dict(JIT, cache=False)


@njit(**PJIT)
def _products(w, wg, zq, acc, bt, split, steps):
    n_pan, Kw = w.shape[0], w.shape[1]
    wf, wgf = w.reshape(w.size), wg.reshape(wg.size)
    m = MR * bt
    for _ in range(steps):
        if bt == 1:
            for q in range(n_pan * MR // GROUP_ROWS):
                layer.mk_rows_grouped(wgf, q * Kw * GROUP_ROWS, zq, 0, acc, q * GROUP_ROWS, split)
                layer.mk_rows_grouped(wgf, (q * Kw + split) * GROUP_ROWS, zq, split, acc, n_pan * MR + q * GROUP_ROWS,
                                      Kw - split)  # fmt: skip
            continue
        for p in range(n_pan):
            for v in range(0, bt, NV * 16):
                layer.mk_lanes(wf, p * Kw * MR, zq, v, bt, acc, v, bt, split)
                layer.mk_lanes(wf, (p * Kw + split) * MR, zq, split * bt + v, bt, acc, m + v, bt, Kw - split)


@njit(**PJIT)
def _quantize(z, zq, bt, I, h_out, scales, steps):
    for _ in range(steps):
        layer._int8_inputs(z, zq, bt, 1, I, I + 1, h_out, scales)


@njit(**PJIT)
def _rescale(g, acc, n_pan, bt, qs, qc, scales, steps):
    for _ in range(steps):
        if bt == 1:
            layer._int8_rows(g, acc, n_pan * MR, bt, qs, qc, scales)
        else:
            for p in range(n_pan):
                layer._int8_panel(g, p * MR * bt, acc, bt, qs, qc, p * MR, scales)


def lstm(H, I, precision):
    rng = np.random.default_rng(0)
    w = {
        "weight_ih_l0": rng.standard_normal((4 * H, I), dtype=np.float32) * 0.1,
        "weight_hh_l0": rng.standard_normal((4 * H, H), dtype=np.float32) * 0.1,
        "bias_ih_l0": np.zeros(4 * H, np.float32),
        "bias_hh_l0": np.zeros(4 * H, np.float32),
    }
    return kernels.prepare(RNNSpec("lstm", I, H), w, precision)


def per_step(prepared, I, bt, T, rounds):
    rng = np.random.default_rng(1)
    xs = {n: rng.standard_normal((bt, n, I), dtype=np.float32) for n in (T, 2 * T)}
    t = [best(lambda n=n: kernels.run(prepared, xs[n], np.full(bt, n, np.int64), None, None, "last", 1), rounds)
         for n in (T, 2 * T)]  # fmt: skip
    return (t[1] - t[0]) / T


def parts(H, I, bt, T, rounds):
    whole32 = per_step(lstm(H, I, None), I, bt, T, rounds)
    p8 = lstm(H, I, "int8")
    whole8 = per_step(p8, I, bt, T, rounds)
    pk = p8.layers[0]
    n_pan, Kw = pk.w.shape[0], pk.w.shape[1]
    rng = np.random.default_rng(2)
    zq = rng.integers(0, 2**32, Kw * bt, dtype=np.uint64).astype(np.uint32)
    acc = np.zeros(2 * n_pan * MR * bt, np.int32)
    prod = best(lambda: _products(pk.w, pk.wg, zq, acc, bt, pk.split, T), rounds) / T
    z = rng.standard_normal((I + H + 2) * bt).astype(np.float32)
    scales = np.zeros(2 * bt, np.float32)
    quant = best(lambda: _quantize(z, zq, bt, I, H, scales, T), rounds) / T
    g = np.zeros(n_pan * MR * bt, np.float32)
    resc = best(lambda: _rescale(g, acc, n_pan, bt, pk.qs, pk.qc, scales, T), rounds) / T
    gop = 2 * 4 * H * (I + H) * bt / 1e9
    return whole32, whole8, prod, gop / prod, quant, resc, pk.w.nbytes


def main():
    print("| LSTM | sequences per tile | float32 us/step | int8 us/step (ratio) | int8 products us (GOP/s) "
          "| quantize us | rescale us | rest us | int8 weights MB |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for H, I, bt, T, rounds in ((128, 32, 1, 400, 15), (128, 32, 48, 100, 7), (512, 256, 48, 20, 5),
                                (1024, 512, 48, 20, 5)):  # fmt: skip
        w32, w8, prod, gops, quant, resc, wbytes = parts(H, I, bt, T, rounds)
        us = 1e6
        print(f"| I={I} H={H} | {bt} | {w32 * us:.2f} | {w8 * us:.2f} ({w32 / w8:.2f}x) | {prod * us:.2f} ({gops:.0f}) "
              f"| {quant * us:.2f} | {resc * us:.2f} | {(w8 - prod - quant - resc) * us:.2f} | {wbytes / 1e6:.2f} |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
