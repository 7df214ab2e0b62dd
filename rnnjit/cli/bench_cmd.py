"""``rnnjit bench``: throughput of the numba engine on this machine, vs torch when it is installed."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import numpy as np
import typer

from rnnjit.cli._common import fail

# (name, cell, input_size, hidden, proj, batch, steps): quick shapes, then the --full extras.
QUICK_SHAPES = [
    ("lstm H=32", "lstm", 32, 32, 0, 1024, 50),
    ("lstm H=128", "lstm", 32, 128, 0, 1024, 50),
    ("gru H=128", "gru", 32, 128, 0, 1024, 50),
    ("rnn_tanh H=128", "rnn_tanh", 32, 128, 0, 1024, 50),
]
FULL_SHAPES = [
    ("lstm H=32", "lstm", 32, 32, 0, 4096, 100),
    ("lstm H=128", "lstm", 32, 128, 0, 4096, 100),
    ("lstm H=512", "lstm", 64, 512, 0, 1024, 100),
    ("lstmp H=256 P=64", "lstm", 32, 256, 64, 4096, 100),
    ("gru H=128", "gru", 32, 128, 0, 4096, 100),
    ("rnn_tanh H=128", "rnn_tanh", 32, 128, 0, 4096, 100),
    ("lstm H=128 batch 1", "lstm", 32, 128, 0, 1, 100),
]
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1}


def numba_version() -> str:
    import numba

    return numba.__version__


def _best(fn, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _weights(cell, I, H, P, rng):
    g, h_out = GATES[cell], P or H
    w = {
        "weight_ih_l0": rng.standard_normal((g * H, I), dtype=np.float32) / np.sqrt(H),
        "weight_hh_l0": rng.standard_normal((g * H, h_out), dtype=np.float32) / np.sqrt(H),
        "bias_ih_l0": rng.standard_normal(g * H, dtype=np.float32) * 0.1,
        "bias_hh_l0": rng.standard_normal(g * H, dtype=np.float32) * 0.1,
    }
    if P:
        w["weight_hr_l0"] = rng.standard_normal((P, H), dtype=np.float32) / np.sqrt(H)
    return {k: v.astype(np.float32) for k, v in w.items()}  # (dividing by np.sqrt gave float64)


def _torch_runner(torch, cell, I, H, P, w, x, threads):
    torch.set_num_threads(threads)
    if cell == "lstm":
        mod = torch.nn.LSTM(I, H, proj_size=P, batch_first=True)
    elif cell == "gru":
        mod = torch.nn.GRU(I, H, batch_first=True)
    else:
        mod = torch.nn.RNN(I, H, nonlinearity="tanh", batch_first=True)
    mod.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()})
    mod.eval()
    xt = torch.from_numpy(x)

    def run():
        with torch.inference_mode():
            mod(xt)

    return run


def bench_command(
    quick: Annotated[
        bool, typer.Option("--quick/--full", help="A few small shapes (default), or the benchmark report's grid.")
    ] = True,
    threads: Annotated[
        Optional[int],
        typer.Option("--threads", min=1, metavar="N", help="Threads for rnnjit and torch (default: all cores)."),
    ] = None,
    vs_torch: Annotated[
        bool, typer.Option("--torch/--no-torch", help="Also time torch on the same data when it is installed.")
    ] = True,
    rounds: Annotated[
        int, typer.Option("--rounds", min=1, metavar="N", help="Timed rounds per shape; the best counts.")
    ] = 3,
) -> None:
    """Measure scoring throughput (sequences/s) on this machine, vs torch CPU if installed."""
    from rnnjit.engines import engine_threads, get_engine, numba_load_error
    from rnnjit.spec import RNNSpec

    problem = numba_load_error()
    if problem is not None:  # bench times the compiled kernels: nothing to measure without them
        raise fail(f"rnnjit bench times the numba engine, which cannot be loaded here: {problem.reason}; "
                   f"to benchmark, {problem.fix}")
    kernels = get_engine("numba")
    n = engine_threads("numba", threads)
    from rnnjit.engines import cache_plan

    typer.echo(f"numba {numba_version()}, compiled-kernel cache: {cache_plan().describe()}")
    torch = None
    if vs_torch:
        try:
            import torch  # noqa: F811
        except ImportError:
            typer.echo("torch is not installed: timing rnnjit only", err=True)
    rng = np.random.default_rng(0)
    header = f"{'shape':<20} {'batch x steps':>13} {'rnnjit seq/s':>13} {'GFLOP/s':>8}"
    if torch is not None:
        header += f" {'torch seq/s':>12} {'speed-up':>9}"
    typer.echo(f"rnnjit bench: {n} threads, output 'last', float32, best of {rounds} rounds")
    typer.echo(header)
    typer.echo("-" * len(header))
    for name, cell, I, H, P, B, T in QUICK_SHAPES if quick else FULL_SHAPES:
        w = _weights(cell, I, H, P, rng)
        prepared = kernels.prepare(RNNSpec(cell, I, H, proj_size=P), w)
        x = rng.standard_normal((B, T, I), dtype=np.float32)
        lengths = np.full(B, T, np.int64)

        def run_rnnjit():
            kernels.run(prepared, x, lengths, None, None, "last", n)

        run_rnnjit()  # warm-up: compiles on the very first use (cached on disk afterwards)
        t = _best(run_rnnjit, rounds)
        h_out = P or H
        flop = 2 * GATES[cell] * H * (I + h_out) * B * T + (2 * H * P * B * T if P else 0)
        line = f"{name:<20} {f'{B} x {T}':>13} {B / t:>13,.0f} {flop / t / 1e9:>8.1f}"
        if torch is not None:
            run_torch = _torch_runner(torch, cell, I, H, P, w, x, n)
            run_torch()  # warm-up
            tt = _best(run_torch, rounds)
            line += f" {B / tt:>12,.0f} {tt / t:>8.2f}x"
        typer.echo(line)
