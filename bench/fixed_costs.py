"""The fixed costs of a small `Model.predict` call, one by one, in this thread's CPU time (issue 17, a batch of one).

    python -m bench.fixed_costs [--cases tagger_b1,gru_b4] [--calls 2000] [--rounds 7]

For each case of `bench.predict_overhead` (its models and inputs), the
best over rounds of the mean CPU time (``time.thread_time_ns``, steady on a
busy machine) of ``calls`` calls, in us:

- ``predict``: the public entry;
- per worker call predict makes (recorded on a first call): the call
  itself; the same call with its tile counter exhausted (numba's dispatch,
  the unboxing of its arguments, its scratch and set-up before a first
  tile: what it costs whatever the work); an empty ``@njit`` function
  taking the same arguments (dispatch and unboxing alone);
- the input checks (`check_features`/`check_tokens`, `check_lengths`, and
  an embedding's token-id range check);
- predict with every worker launch a no-op: all of its Python.
"""

from __future__ import annotations

import argparse
import time

import numba

from bench.predict_overhead import Small, _launchers, _record
from rnnjit.inputs import check_lengths, check_tokens
from rnnjit.steps import check_token_ids


def _best(fn, calls: int, rounds: int) -> float:
    best = None
    for _ in range(rounds):
        t0 = time.thread_time_ns()
        for _ in range(calls):
            fn()
        dt = (time.thread_time_ns() - t0) / calls / 1e3
        best = dt if best is None or dt < best else best
    return best


def _params(f):
    py = getattr(f, "py_func", f)
    return py.__code__.co_varnames[: py.__code__.co_argcount]


def _empty_like(n: int):
    """A compiled function of ``n`` arguments doing nothing: what calling a worker costs before its first line."""
    names = ", ".join(f"a{j}" for j in range(n))
    ns: dict = {}
    exec(f"def empty({names}):\n    return 0", ns)  # noqa: S102 - a generated signature, no input
    return numba.njit(ns["empty"])


def measure(case: Small, calls: int, rounds: int) -> dict[str, float]:
    m, x, lengths = case.model, case.x, case.lengths
    pred = case.predict(2)
    pred()  # compilation
    out = {"predict": _best(pred, calls, rounds)}
    for i, (f, args) in enumerate(_record(pred)):
        names = _params(f)
        counter = args[names.index(next(n for n in ("next_tile", "next_block", "sync") if n in names))]
        if "sync" in names:
            continue  # a team's call: its counters are its sync words, not one tile counter
        args = tuple(args)

        def full(f=f, args=args, counter=counter):
            counter[:] = 0
            f(*args)

        def none_left(f=f, args=args, counter=counter):
            counter[:] = 1 << 40
            f(*args)

        empty = _empty_like(len(args))
        empty(*args)  # compilation
        out[f"worker {i} ({f.__name__}), whole call"] = _best(full, calls, rounds)
        out[f"worker {i}, no tile left: dispatch, arguments, scratch"] = _best(none_left, calls, rounds)
        out[f"worker {i}, an empty function of its {len(args)} arguments"] = _best(lambda: empty(*args), calls, rounds)
    if m.takes_tokens:
        emb = m.embedding
        out["check_tokens"] = _best(lambda: check_tokens(x, lengths, emb.in_features), calls, rounds)
        out["token-id range check"] = _best(lambda: check_token_ids(emb, m._scoring, x, lengths), calls, rounds)
    out["check_lengths"] = _best(lambda: check_lengths(lengths, x.shape[0], x.shape[1]), calls, rounds)
    saved = _launchers()
    for mod, name, _ in saved:
        setattr(mod, name, lambda *a: (0.0, 0.0))  # run_in_order's (ran, waited); truthy for run_team_hot
    try:
        out["predict's Python (worker launches no-ops)"] = _best(pred, calls, rounds)
    finally:
        for mod, name, f in saved:
            setattr(mod, name, f)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="tagger_b1,gru_b4")
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args(argv)
    import torch

    for name in a.cases.split(","):
        res = measure(Small(name, 2, torch, False), a.calls, a.rounds)
        print(f"\n{name}: us, this thread's CPU time, best of {a.rounds} rounds of {a.calls} calls\n")
        print("| cost | us |\n|---|---:|")
        for k, v in res.items():
            print(f"| {k} | {v:.2f} |")


if __name__ == "__main__":
    main()
