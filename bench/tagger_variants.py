"""Small calls of models with a wide per-step head: the polyphone tagger's shape and variants, against onnxruntime.

    python -m bench.tagger_variants [--threads 2] [--rounds 9] [--calls 30]

Each variant is an embedding (V x E), a bidirectional LSTM H, a linear
2H -> M + relu and a linear M -> O per token (bench/real_models.py's
``tagger`` with other sizes), one sentence of T tokens (a batch of one),
converted and loaded as a user does. In one process, calls interleaved in
rounds (`bench.predict_overhead.time_rounds`: each round runs every
measurement in a new random order and keeps its fastest call; the table
gives the median over rounds, us):

- ``predict``: `Model.predict`;
- ``lanes head``: the same with the last linear layer on the lane layout
  (`rnnjit.kernels.rows.ROWS_OUT_FROM` out of reach), what it ran on before;
- ``onnxruntime``: the torch forward exported to ONNX, built as
  bench/real_models.py builds it; ``ort / predict`` > 1 means rnnjit is faster.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np

from bench.predict_overhead import time_rounds
from bench.real_models import _export, _session

VARIANTS = [  # (V, E, H, M, O, T): the tagger first, then other vocabularies, widths and lengths
    (5398, 64, 32, 32, 876, 24),
    (5398, 64, 32, 32, 876, 1),
    (5398, 64, 32, 32, 876, 60),
    (20000, 128, 64, 64, 100, 24),
    (1000, 32, 16, 32, 400, 12),
    (5398, 64, 32, 64, 2000, 24),
    (8000, 64, 48, 128, 4000, 40),
]


class Variant:
    """One variant: the torch module, the rnnjit model, one sentence, and what bench.real_models' session needs."""

    def __init__(self, V, E, H, M, O, T, torch):
        nn = torch.nn
        torch.manual_seed(0)

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = nn.Embedding(V, E)
                self.lstm = nn.LSTM(E, H, bidirectional=True, batch_first=True)
                self.fc1 = nn.Linear(2 * H, M)
                self.fc2 = nn.Linear(M, O)

            def forward(self, x, lengths):
                return self.fc2(torch.relu(self.fc1(self.lstm(self.emb(x))[0])))

        self.net = Net().eval()
        rng = np.random.default_rng(0)
        self.x = rng.integers(0, V, (1, T)).astype(np.int64)
        self.lengths = np.full(1, T, np.int64)
        self.xt, self.lengths_t = torch.from_numpy(self.x), torch.from_numpy(self.lengths)
        with torch.inference_mode():
            self.expected = self.net(self.xt, self.lengths_t).numpy()
        import rnnjit

        with tempfile.TemporaryDirectory() as d:
            torch.save(self.net.state_dict(), Path(d) / "m.pth")
            rnnjit.convert(Path(d) / "m.pth", Path(d) / "m.npz", chain="emb,lstm,fc1,relu,fc2", output="all",
                           reference=False)  # fmt: skip
            self.model = rnnjit.load(Path(d) / "m.npz")
        self.onnx = None

    def exported(self):
        if self.onnx is None:
            self.onnx = _export(self)
        return self.onnx


def measure(v: Variant, threads: int, rounds: int, calls: int) -> dict[str, float]:
    import copy

    from rnnjit.kernels import rows

    lanes = copy.copy(v.model)
    lanes._prepared, lanes._schedules, lanes._small_calls = {}, {}, {}  # its own prepared steps
    keep = rows.ROWS_OUT_FROM
    rows.ROWS_OUT_FROM = 10**9
    try:
        lanes.predict(v.x, v.lengths, engine="numba", threads=threads)  # prepared with the lane layout
    finally:
        rows.ROWS_OUT_FROM = keep
    fns = {
        "predict": lambda: v.model.predict(v.x, v.lengths, engine="numba", threads=threads),
        "lanes": lambda: lanes.predict(v.x, v.lengths, engine="numba", threads=threads),
    }
    ort = _session(v, "onnxruntime", threads)
    if not isinstance(ort, str):
        fns["ort"] = ort
    for f in fns.values():
        f()  # compilation, and the sessions' first run
    assert np.array_equal(fns["predict"](), fns["lanes"]())
    res = time_rounds(fns, calls, rounds)
    return {n: statistics.median(t) / 1e3 for n, t in res.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--calls", type=int, default=30)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    print(f"threads={a.threads} rounds={a.rounds}; us per call, median over rounds of the fastest of {a.calls}\n")
    print("| V x E, BiLSTM H, M, head O, tokens T | predict | lanes head | onnxruntime | ort / predict |")
    print("|---|---:|---:|---:|---:|")
    for V, E, H, M, O, T in VARIANTS:
        r = measure(Variant(V, E, H, M, O, T, torch), a.threads, a.rounds, a.calls)
        ort = f"{r['ort']:.1f} | {r['ort'] / r['predict']:.2f}x" if "ort" in r else "- | -"
        print(f"| {V}x{E}, H={H}, M={M}, O={O}, T={T} | {r['predict']:.1f} | {r['lanes']:.1f} | {ort} |", flush=True)


if __name__ == "__main__":
    main()
