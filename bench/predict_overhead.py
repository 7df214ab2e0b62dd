"""What `Model.predict` adds over its compiled kernels on small calls, phase by phase (issue 17, a batch of one).

    python -m bench.predict_overhead [--threads 2] [--rounds 15] [--cases lstm_b1,tagger_b1,...] [--ort]

For each case, in one process, calls interleaved in rounds (each round
runs every measurement in a new random order, ``calls`` calls each, and
keeps the fastest call; the table gives the median over rounds, in us):

- ``predict``: the public entry as a user calls it;
- ``workers``: the compiled workers alone (`run_worker`, `rows_worker`),
  called with the arguments predict gave them (recorded on a first call),
  one after the other on this thread (where predict runs two at once, e.g.
  the directions of a long bidirectional layer, predict can take less):
  what no Python layer can remove;
- ``python``: predict with every worker launch replaced by a no-op, i.e.
  what the layers around the kernels cost; split into ``run`` (inside the
  engine's ``run``: conversions, scratch and state arrays, tile planning,
  kernel arguments, dispatch), ``run_steps`` (the per-vector steps' call)
  and ``predict`` (input checks, lengths, states, the chain loop, output
  assembly): the rest;
- ``checks``: the input checks alone (`check_features`/`check_tokens` and
  `check_lengths` on the same input);
- ``ort``: onnxruntime on the same model and input (``--ort``; the ratio is
  ort / predict, > 1 means rnnjit is faster).

Cases: ``lstm_b1`` (LSTM I=32 H=128, B=1 T=100, the issue's goal shape),
``tagger_b1`` and ``onset_b1`` (bench/real_models.py, batch of one),
``gru_b4`` (GRU I=16 H=64, B=4 T=12, ragged lengths), ``bilstm_b8`` (two
bidirectional LSTM layers I=8 H=32 and a linear 64->5 + softmax per step,
B=8 T=20, ragged): the general small call, not only the named shapes.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np

from rnnjit import kernels
from rnnjit.inputs import check_features, check_lengths, check_tokens
from rnnjit.kernels import rows as rows_mod
from rnnjit.kernels import team_policy
from rnnjit.kernels.team import NTH, run_team

CALLS = 30  # timed calls per measurement and round
LAUNCHERS = ((kernels, "parallel"), (kernels, "run_jobs"), (rows_mod, "parallel"), (kernels, "run_in_order"),
             (kernels, "run_team_hot"))  # fmt: skip


def _launchers():
    """(module, name, function) of each launcher this version of the kernels has."""
    return [(m, n, getattr(m, n)) for m, n in LAUNCHERS if hasattr(m, n)]


def _record(fn):
    """Call ``fn`` once with the worker launches recorded: [(worker, args)], run as usual."""
    calls, saved = [], _launchers()
    real = {n: f for _, n, f in saved}  # kernels.parallel and rows.parallel are the pool's one function

    def par(workers, f, args):
        calls.append((f, args))
        return real["parallel"](workers, f, args)

    def jobs(js):
        calls.extend(js)
        return real["run_jobs"](js)

    def in_order(workers, js):
        calls.extend(js)
        return real["run_in_order"](workers, js)

    def hot(values):  # a team with the hot helper: recorded as its `run_team`
        calls.append((run_team, kernels.kernel_args(run_team, values)))
        return real["run_team_hot"](values)

    spies = {"parallel": par, "run_jobs": jobs, "run_in_order": in_order, "run_team_hot": hot}
    try:
        for m, n, _ in saved:
            setattr(m, n, spies[n])
        fn()
    finally:
        for m, n, f in saved:
            setattr(m, n, f)
    return calls


def _workers_alone(calls):
    """A callable running the recorded worker calls, each with its shared counter reset: a tile or block counter
    (``next_tile``, ``next_block``) to 0, a team's ``sync`` words to a team of one (this thread takes every chunk)."""
    counters = []
    for f, args in calls:
        py = getattr(f, "py_func", f)
        names = py.__code__.co_varnames[: py.__code__.co_argcount]
        counters.append(args[names.index(next(n for n in ("next_tile", "next_block", "sync") if n in names))])

    def run():
        for (f, args), counter in zip(calls, counters):
            counter[:] = 0
            if f is run_team:
                counter[NTH] = 1
            f(*args)

    return run


def _stubbed(fn, timed):
    """``fn`` with worker launches as no-ops; ``timed``: name -> [ns] filled with the inclusive time of
    `kernels.run` and `kernels.run_steps` inside it."""
    saved = _launchers()
    # `kernels.run_planned` (a small call's launch, `rnnjit.small_call`) counts as the engine's run
    inner = {n: getattr(kernels, n) for n in ("run", "run_planned", "run_steps") if hasattr(kernels, n)}

    def wrap(name):
        f, into = inner[name], "run" if name == "run_planned" else name

        def w(*a, **k):
            t0 = time.perf_counter_ns()
            try:
                return f(*a, **k)
            finally:
                timed[into][-1] += time.perf_counter_ns() - t0

        return w

    wrapped = {n: wrap(n) for n in inner}

    def call():
        for name in timed:
            timed[name].append(0)
        for m, n, _ in saved:
            setattr(m, n, (lambda *a: (0.0, 0.0)))  # run_in_order's (ran, waited); truthy for run_team_hot (it ran)
        for n, f in wrapped.items():
            setattr(kernels, n, f)
        alone = team_policy.note_alone
        team_policy.note_alone = lambda a: None  # a team not run is not a team the other thread never joined
        try:
            fn()
        finally:
            for m, n, f in saved:
                setattr(m, n, f)
            for n, f in inner.items():
                setattr(kernels, n, f)
            team_policy.note_alone = alone

    return call


class Small:
    """One small case: a model, its input, and optionally a callable running it in onnxruntime (``ort``)."""

    def __init__(self, name: str, threads: int, torch, ort: bool):
        self.name, self.ort = name, None
        if name in ("tagger_b1", "onset_b1"):
            from bench.real_models import NAMES, REAL_CASES, RealBench

            arch = name.split("_")[0]
            b = RealBench(next(c for c in REAL_CASES if c.name == f"{NAMES[arch]}_b1"), torch)
            self.model, self.x, self.lengths = b.model, b.x, b.lengths
            if ort:
                s = b.session("onnxruntime", threads)
                self.ort = None if isinstance(s, str) else s
            return
        from bench.cases import Case
        from bench.conftest import Bench, runner

        if name == "bilstm_b8":
            self._chain_model(torch, threads, ort)
            return
        case = {
            "lstm_b1": Case("lstm_b1", "lstm", 1, 100, 32, 128),
            "gru_b4": Case("gru_b4", "gru", 4, 12, 16, 64, varlen=(3, 12)),
        }[name]
        b = Bench(case, torch)
        self.model, self.x, self.lengths = b.model, b.x, b.lengths
        if ort and not case.varlen:
            s = runner(b, "onnxruntime", threads)
            self.ort = None if isinstance(s, str) else s

    def _chain_model(self, torch, threads, ort):
        import tempfile
        from pathlib import Path

        import rnnjit

        nn = torch.nn
        torch.manual_seed(0)
        net = nn.ModuleDict({"rnn": nn.LSTM(8, 32, 2, bidirectional=True, batch_first=True), "fc": nn.Linear(64, 5)})
        with tempfile.TemporaryDirectory() as d:
            torch.save(net.state_dict(), Path(d) / "m.pth")
            rnnjit.convert(Path(d) / "m.pth", Path(d) / "m.npz", chain="rnn,fc,softmax", output="all",
                           reference=False)  # fmt: skip
            self.model = rnnjit.load(Path(d) / "m.npz")
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((8, 20, 8)).astype(np.float32)
        self.lengths = rng.integers(5, 21, 8).astype(np.int64)
        self.lengths[0] = 20

    def predict(self, threads):
        m, x, lengths = self.model, self.x, self.lengths
        return lambda: m.predict(x, lengths, engine="numba", threads=threads)

    def checks(self):
        m, x, lengths = self.model, self.x, self.lengths
        if m.takes_tokens:
            return lambda: check_lengths(*check_tokens(x, lengths, m.embedding.in_features)[1:], x.shape[0], x.shape[1])
        return lambda: check_lengths(check_features(x, lengths, m.input_size, m.dtype)[1], x.shape[0], x.shape[1])


def time_rounds(fns, calls, rounds):
    """name -> list of per-round fastest call (ns), calls interleaved (a new random order each round)."""
    res = {n: [] for n in fns}
    for _ in range(rounds):
        names = list(fns)
        random.shuffle(names)
        for n in names:
            best = None
            for _ in range(calls):
                t0 = time.perf_counter_ns()
                fns[n]()
                dt = time.perf_counter_ns() - t0
                best = dt if best is None or dt < best else best
            res[n].append(best)
    return res


def measure(case: Small, threads: int, rounds: int) -> dict[str, float]:
    """The case's phases in us (median over rounds of the fastest call in each)."""
    pred = case.predict(threads)
    pred()  # compilation
    calls = _record(pred)
    timed = {"run": [], "run_steps": []}
    fns = {"predict": pred, "workers": _workers_alone(calls), "python": _stubbed(pred, timed), "checks": case.checks()}
    if case.ort is not None:
        fns["ort"] = case.ort
    for f in fns.values():
        f()
    for v in timed.values():
        v.clear()
    res = time_rounds(fns, CALLS, rounds)
    out = {n: statistics.median(v) / 1e3 for n, v in res.items()}
    # the engine's share of the python phase: the same statistic over the wrapper's inclusive times
    # (each round's CALLS stubbed calls are consecutive)
    for name, v in timed.items():
        per_round = [min(v[i : i + CALLS]) for i in range(0, len(v), CALLS)]
        out[f"python:{name}"] = statistics.median(per_round) / 1e3
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--cases", default="lstm_b1,tagger_b1,onset_b1,gru_b4,bilstm_b8")
    ap.add_argument("--ort", action="store_true", help="also onnxruntime where the case has an export")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    print(f"threads={a.threads} rounds={a.rounds}; us per call, median over rounds of the fastest of 30 calls\n")
    print("| case | predict | workers alone | python (run / run_steps / predict's own) | input checks "
          "| ort (ort/predict) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in a.cases.split(","):
        case = Small(name, a.threads, torch, a.ort)
        r = measure(case, a.threads, a.rounds)
        own = r["python"] - r["python:run"] - r["python:run_steps"]
        ort = f"{r['ort']:.1f} ({r['ort'] / r['predict']:.2f}x)" if "ort" in r else ""
        print(f"| {name} | {r['predict']:.1f} | {r['workers']:.1f} | {r['python']:.1f} ({r['python:run']:.1f} / "
              f"{r['python:run_steps']:.1f} / {own:.1f}) | {r['checks']:.1f} | {ort} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
