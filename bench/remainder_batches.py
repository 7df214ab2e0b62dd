"""Time per sequence against the batch size, so that batches which are not a multiple of the tile width show.

    python -m bench.remainder_batches [--archs speaker,beat,ocr,onset,lstm,gru] [--B 1-40,48,50,...]
        [--T 40] [--ragged] [--threads 2] [--rounds 5] [--engines rnnjit,lanes,torch,onnxruntime]

Each architecture of bench/real_models.py (random weights, its real widths;
``--T`` shortens the sequences, which moves every batch size alike) and a
plain LSTM / GRU layer (I=32, H=128, final state) is built once at the
largest B; every batch size scores the first B sequences. Through
``Model.predict`` (the numba engine), the model's own torch forward
(``inference_mode``, packed for ragged lengths) and onnxruntime (the same
forward exported; equal lengths only for the plain layers, whose export
packs nothing), and with ``lanes`` in ``--engines`` rnnjit with the tile
plan of lane tiles alone (before remainder parts), all on ``--threads`` threads, in the same process: each
round calls every (B, engine) pair in a new random order, and a pair's
figure is its best call over the rounds. The table gives microseconds per
sequence and, for rnnjit, ``vs16``: its time per sequence over the best
per-sequence time of the multiples of 16 next to B (1.00 = as fast as its
neighbours; a step at remainders shows as > 1).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.real_models import ARCHS, RealBench, RealCase, _session

DEFAULT_B = "1-40,48,50,63,64,65,97,100,130,250,256,257"
PLAIN = {"lstm": "nn.LSTM(32, 128)", "gru": "nn.GRU(32, 128)"}


def parse_batches(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return sorted(set(out))


class PlainBench:
    """A plain one-layer LSTM or GRU (I=32, H=128), its final state: the shape of bench/cases.py's batch curve."""

    def __init__(self, cell: str, B: int, T: int, ragged: bool, torch):
        nn = torch.nn
        from torch.nn.utils.rnn import pack_padded_sequence

        torch.manual_seed(0)
        rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(32, 128, batch_first=True).eval()

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = rnn

            def forward(self, x, lengths):
                if ragged:
                    x = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
                h = self.rnn(x)[1]
                return (h[0] if cell == "lstm" else h)[-1]

        self.net = Net().eval()
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((B, T, 32)).astype(np.float32)
        self.lengths = rng.integers(max(T // 2, 1), T + 1, B).astype(np.int64) if ragged else np.full(B, T, np.int64)
        self.lengths[0] = T
        self.xt, self.lengths_t = torch.from_numpy(self.x), torch.from_numpy(self.lengths)
        with tempfile.TemporaryDirectory() as d:
            torch.save(self.net.state_dict(), Path(d) / "m.pth")
            import rnnjit

            rnnjit.convert(Path(d) / "m.pth", Path(d) / "m.npz", chain="rnn", output="final", reference=False)
            self.model = rnnjit.load(Path(d) / "m.npz")
        with torch.inference_mode():
            self.expected = self.net(self.xt, self.lengths_t).numpy()
        self.onnx = None if not ragged else "ragged plain layers are not exported (torch's export packs nothing)"

    def exported(self):
        if self.onnx is None:
            from bench.real_models import _export

            self.onnx = _export(self)
        return self.onnx


def _runners(bench, engines, B, threads, torch):
    """{engine: zero-argument callable on the first ``B`` sequences} (an engine that cannot run is left out)."""
    x, lengths = bench.x[:B], bench.lengths[:B]
    xt, lt = bench.xt[:B], bench.lengths_t[:B]
    out = {}
    if "rnnjit" in engines:
        model = bench.model
        out["rnnjit"] = lambda: model.predict(x, lengths=lengths, engine="numba", threads=threads)
    if "lanes" in engines:  # the plan before remainder parts: lane tiles alone (their own remembered choices)
        model = bench.model
        out["lanes"] = lambda: _lanes_alone(lambda: model.predict(x, lengths=lengths, engine="numba", threads=threads))
    if "torch" in engines:
        net = bench.net

        def run_torch():
            with torch.inference_mode():
                return net(xt, lt)

        out["torch"] = run_torch
    if "onnxruntime" in engines:
        sess = getattr(bench, "_ort", None)
        if sess is None:
            full = _session(bench, "onnxruntime", threads)  # checks the export against torch on the whole batch
            sess = bench._ort = full if isinstance(full, str) else _ort_session(bench, threads)
        if not isinstance(sess, str):
            names = {i.name for i in sess.get_inputs()}
            feed = {k: v for k, v in {"x": x, "lengths": lengths}.items() if k in names}
            out["onnxruntime"] = lambda: sess.run(None, feed)[0]
    return out


_LANES_MEMO = ({}, {})


def _lanes_alone(call):
    """``call()`` with `rnnjit.kernels.tiling` never choosing a remainder part (`MIXED_MARGIN` infinite), its
    remembered widths swapped for a set of their own."""
    from rnnjit.kernels import tiling

    saved = tiling.MIXED_MARGIN, tiling._WIDTHS, tiling._REST
    tiling.MIXED_MARGIN, tiling._WIDTHS, tiling._REST = float("inf"), *_LANES_MEMO
    try:
        return call()
    finally:
        tiling.MIXED_MARGIN, tiling._WIDTHS, tiling._REST = saved


def _ort_session(bench, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(bench.exported(), so, providers=["CPUExecutionProvider"])


def measure(bench, batches, engines, threads, rounds, torch, clock=time.perf_counter):
    """{(B, engine): best seconds per call}, every pair called once per round in a new random order."""
    runners = {B: _runners(bench, engines, B, threads, torch) for B in batches}
    for B in batches:  # compilation and first-call work
        for fn in runners[B].values():
            fn()
    best: dict = {}
    pairs = [(B, e) for B in batches for e in runners[B]]
    for _ in range(rounds):
        random.shuffle(pairs)
        for B, e in pairs:
            t0 = clock()
            runners[B][e]()
            dt = clock() - t0
            best[B, e] = min(best.get((B, e), dt), dt)
    return best


def vs16(best, B, batches):
    """rnnjit's time per sequence at B over the best per-sequence time of the multiples of 16 around it."""
    per = [best[b, "rnnjit"] / b for b in batches if b % 16 == 0 and abs(b - B) < 16 and (b, "rnnjit") in best]
    return (best[B, "rnnjit"] / B) / min(per) if per else float("nan")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default="speaker,beat,ocr,onset,lstm,gru")
    ap.add_argument("--B", default=DEFAULT_B)
    ap.add_argument("--T", type=int, default=40, help="sequence length (the real models' own: 0)")
    ap.add_argument("--ragged", action="store_true", help="lengths uniform in [T/2, T]")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--engines", default="rnnjit,torch,onnxruntime")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: the process's CPU time (every thread's work, so padding shows and a busy machine "
                         "does not; not balance, and not for torch, whose threads spin)")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    batches = parse_batches(a.B)
    engines = a.engines.split(",")
    own_T = {"speaker": 160, "beat": 375, "ocr": 199, "onset": 1000}
    for arch in a.archs.split(","):
        Bmax = max(batches)
        T = a.T or own_T.get(arch, 100)
        if arch in PLAIN:
            bench, what = PlainBench(arch, Bmax, T, a.ragged, torch), f"{PLAIN[arch]}, final state"
        else:
            bench = RealBench(RealCase(arch, arch, Bmax, T, varlen=(max(T // 2, 1), T) if a.ragged else None), torch)
            what = ARCHS[arch][0]
        clock = time.perf_counter if a.clock == "wall" else time.process_time
        best = measure(bench, batches, engines, a.threads, a.rounds, torch, clock)
        found = [e for e in engines if any((B, e) in best for B in batches)]
        print(f"\n{arch}: {what}, T={T}{' ragged' if a.ragged else ''}, threads={a.threads}, best of {a.rounds}; "
              f"us per sequence ({a.clock} clock)")  # fmt: skip
        print("| B | " + " | ".join(found) + " | vs16 | " + " | ".join(f"{e}/rnnjit" for e in found[1:]) + " |")
        print("|---:|" + "---:|" * (2 * len(found)))
        for B in batches:
            cells = [f"{best[B, e] / B * 1e6:.1f}" if (B, e) in best else "-" for e in found]
            ratios = [f"{best[B, e] / best[B, 'rnnjit']:.2f}" if (B, e) in best else "-" for e in found[1:]]
            print(f"| {B} | " + " | ".join(cells) + f" | {vs16(best, B, batches):.2f} | " + " | ".join(ratios) + " |")


if __name__ == "__main__":
    main()
