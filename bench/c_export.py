"""The generated C (`rnnjit export-c`) against the numba engine, interleaved in one process.

Two LSTM models (I=32, H=32 and H=128, one layer, then fc and sigmoid, output
"last"), T=100 steps, at a batch of one and B=256. The C is built twice as a
shared library (``-O2``; ``-O3 -march=native``, both ``-std=c99`` so no FMA
contraction) and called through ctypes (``NAME_score_batch``, one thread: the
generated C never starts threads); the numba engine is ``Model.predict`` with
1 and 2 threads. ``python -m bench.c_export`` times every engine of a case in
turn, round after round, and prints the minimum wall and process-CPU time
per engine as a Markdown table with the load average; bench/test_bench_c.py is the pytest-benchmark case.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODELS = {"lstm-H32": 32, "lstm-H128": 128}
BATCHES = (1, 256)
T, I = 100, 32
C_FLAGS = {"c -O2": ["-O2"], "c -O3 -march=native": ["-O3", "-march=native"]}
NUMBA_THREADS = (1, 2)


@dataclass
class Built:
    model: object
    libs: dict  # label -> ctypes.CDLL
    compile_s: dict  # label -> seconds


def build(name: str, work: Path) -> Built:
    """Make the torch-free bundle (random weights, saturating scale), export it, compile both builds."""
    import rnnjit
    from rnnjit.export.c import write
    from rnnjit.export.c_check import STRICT, find_cc

    H = MODELS[name]
    rng = np.random.default_rng(0)
    s = 1 / np.sqrt(H)
    sd = {"lstm.weight_ih_l0": rng.uniform(-s, s, (4 * H, I)), "lstm.weight_hh_l0": rng.uniform(-s, s, (4 * H, H)),
          "lstm.bias_ih_l0": rng.uniform(-s, s, 4 * H), "lstm.bias_hh_l0": rng.uniform(-s, s, 4 * H),
          "fc.weight": rng.uniform(-s, s, (1, H)), "fc.bias": rng.uniform(-s, s, 1)}
    work.mkdir(parents=True, exist_ok=True)
    np.savez(work / f"{name}.npz", **{k: (3 * v).astype(np.float32) for k, v in sd.items()})
    model = rnnjit.convert(work / f"{name}.npz", work / f"{name}-bundle.npz", chain="lstm,fc,sigmoid", output="last")
    write(model, work, "m")
    cc = find_cc()
    if cc is None:
        raise RuntimeError("no C compiler")
    libs, compile_s = {}, {}
    for label, flags in C_FLAGS.items():
        lib = work / f"lib{name}-{len(libs)}.so"
        t0 = time.perf_counter()
        subprocess.run([*cc.split(), *STRICT, *flags, "-shared", "-fPIC", "-o", str(lib), str(work / "m.c"), "-lm"],
                       check=True)
        compile_s[label] = time.perf_counter() - t0
        libs[label] = ctypes.CDLL(str(lib))
    return Built(model, libs, compile_s)


def data(B: int):
    rng = np.random.default_rng(B)
    return rng.standard_normal((B, T, I)).astype(np.float32), np.full(B, T, np.int64)


def callers(built: Built, B: int) -> dict:
    """label -> zero-argument call scoring the same batch."""
    x, lengths = data(B)
    y = np.zeros((B, 1), np.float32)
    fns = {}
    for label, lib in built.libs.items():
        f = lib.m_score_batch
        args = (x.ctypes.data_as(ctypes.c_void_p), lengths.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(B),
                ctypes.c_int64(T), y.ctypes.data_as(ctypes.c_void_p), None)

        def call(f=f, args=args):
            if f(*args) != 0:
                raise RuntimeError("score_batch failed")

        fns[label] = call
    for n in NUMBA_THREADS:
        fns[f"numba {n} thread{'s' if n > 1 else ''}"] = (
            lambda n=n: built.model.predict(x, lengths=lengths, engine="numba", threads=n))
    return fns


def interleaved(fns: dict, budget_s: float = 2.0) -> tuple[dict, dict]:
    """Minimum wall and process-CPU seconds per call of each function, called in turn, round after round.

    On a loaded machine a long call is preempted in every round, so its wall
    minimum overstates it; the process CPU time (all threads) does not count
    the time other processes ran.
    """
    for f in fns.values():
        f()  # warm-up: numba compilation, first-call setup
    wall = {k: float("inf") for k in fns}
    cpu = dict(wall)
    t_end = time.perf_counter() + budget_s
    rounds = 0
    while rounds < 5 or (time.perf_counter() < t_end and rounds < 2000):
        for k, f in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            f()
            wall[k] = min(wall[k], time.perf_counter() - t0)
            cpu[k] = min(cpu[k], time.process_time() - c0)
        rounds += 1
    return wall, cpu


def main(argv=None) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        lines = [f"Load average when it started: {', '.join(f'{v:.2f}' for v in os.getloadavg())}.", "",
                 "| model | B | engine | wall per call | CPU per call | sequences/s (wall) | "
                 "vs numba 1 thread (wall) | vs numba 1 thread (CPU) |",
                 "|---|---|---|---|---|---|---|---|"]
        compile_lines = []
        for name in MODELS:
            built = build(name, Path(tmp) / name)
            compile_lines.append(f"{name}: " + ", ".join(f"{k} {v:.2f} s" for k, v in built.compile_s.items()))
            for B in BATCHES:
                wall, cpu = interleaved(callers(built, B))
                for k in wall:
                    lines.append(f"| {name} T={T} I={I} | {B} | {k} | {wall[k] * 1e3:.3f} ms | {cpu[k] * 1e3:.3f} ms | "
                                 f"{B / wall[k]:,.0f} | {wall['numba 1 thread'] / wall[k]:.2f}x | "
                                 f"{cpu['numba 1 thread'] / cpu[k]:.2f}x |")
        lines += ["", f"Load average when it ended: {', '.join(f'{v:.2f}' for v in os.getloadavg())}.", "",
                  "Compile time (shared library, one file): " + "; ".join(compile_lines) + "."]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
