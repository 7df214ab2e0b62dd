"""Variants of the five real architectures (other widths, depths, cells, vocabularies, batches): a table of ratios.

    python -m bench.variant_sweep --threads 2 2>/dev/null            # the whole sweep, ~5 minutes
    python -m bench.variant_sweep -k speaker -k lstm --settle 0    # some variants; calls back to back

Issue 17's goals are judged on variants of the architectures of
bench/real_models.py that are not named there. Each variant here is built
with random weights (speed does not depend on the values), converted the way
a user does (``torch.save`` -> ``rnnjit.convert`` -> ``rnnjit.load``) and run
at a few batch sizes: 1, 8, its architecture's named batch and an odd one
(not a multiple of the tile width). Engines: ``Model.predict`` (numba), the
model's own torch forward (packed where lengths vary) and onnxruntime (the
same forward exported with torch.onnx), ``--threads`` each, calls
interleaved in one process (rnnjit, torch, onnxruntime, rnnjit, ...), best
of N (N from a time budget per call, at least ``--rounds``). The ratio is
other / rnnjit: below 1 means rnnjit is slower.

Each engine's turn is a pause of ``--settle`` ms (default 10) and then
until the process's other threads are quiet (`bench.timing.wait_quiet`),
an untimed call and the timed call (`bench.timing.settled_call`): libgomp
(torch's OpenMP pool) keeps its threads spinning for several milliseconds
after a call and onnxruntime's pool for 30-200 ms, and on a 2-core machine
a spinning thread holds the core the next engine's second thread wants
(bench/after_torch.py; in this order rnnjit's turn comes right after
onnxruntime's, and with the pause alone its short calls ran on one thread:
bench/report_notes.md, "Short sequences"). With the wait each timed call
finds the machine as a process running only that engine does;
``--settle 0`` times one call right after the other engine's
(what a process alternating engines sees). ``--order`` picks the turn order.
``--cpu``: one thread each (onnxruntime and torch then run in the calling
thread), timed in that thread's CPU time: the single-thread efficiency of
each engine, steady on a machine busy with other jobs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.real_models import RealBench


@dataclass(frozen=True)
class Variant:
    """One architecture variant: ``arch`` (a key of `BUILDERS`), its parameters, T and the batches to time."""

    arch: str
    params: dict = field(default_factory=dict)
    T: int = 100
    batches: tuple[int, ...] = (1, 8)
    varlen: bool = False

    @property
    def name(self) -> str:
        return self.arch + " " + " ".join(f"{k}={v}" for k, v in self.params.items())


def _variants() -> list[Variant]:
    V = Variant
    return [
        # speaker encoder: LSTM I->H x L, final state, linear H + relu (named: H=256 L=3 B=256 T=160)
        V("speaker", dict(H=128, L=3), 160, (1, 8, 256, 37)),
        V("speaker", dict(H=384, L=3), 160, (1, 8, 64, 37)),
        V("speaker", dict(H=512, L=2), 160, (1, 8, 64, 37)),
        V("speaker", dict(H=256, L=2), 160, (1, 8, 256, 37)),
        V("speaker", dict(H=256, L=4), 160, (1, 8, 100)),
        V("speaker", dict(H=256, L=3), 40, (64, 1)),  # the quick grid's reduced shape
        # beat tracker: linear 262->H, cell H x L, linear 3 + softmax per frame (named: H=150 LSTM L=2 B=64 T=375)
        V("beat", dict(H=100, L=2, cell="lstm"), 375, (1, 8, 64, 37)),
        V("beat", dict(H=200, L=2, cell="lstm"), 375, (1, 8, 64, 37)),
        V("beat", dict(H=150, L=1, cell="lstm"), 375, (1, 8, 64, 37)),
        V("beat", dict(H=150, L=3, cell="lstm"), 375, (1, 8, 64)),
        V("beat", dict(H=150, L=2, cell="gru"), 375, (1, 8, 64, 37)),
        # OCR head: [BiLSTM H (input 256) + linear 2H->H] x blocks, linear 97 per column (named: H=256 x2 B=64 T=199)
        V("ocr", dict(H=128, blocks=2), 199, (1, 8, 64, 37)),
        V("ocr", dict(H=384, blocks=2), 199, (1, 8, 37)),
        V("ocr", dict(H=256, blocks=1), 199, (1, 8, 64, 37)),
        V("ocr", dict(H=256, blocks=2), 40, (64,)),  # the quick grid's reduced shape
        # tagger: embedding V x 64, BiLSTM H, linear 32 + relu, linear heads per token, ragged T 8..40 (named:
        # V=5398 H=32 heads=876 B=2048)
        V("tagger", dict(V=1000, H=32, heads=876), 40, (1, 8, 2048, 333), varlen=True),
        V("tagger", dict(V=20000, H=32, heads=876), 40, (1, 8, 2048, 333), varlen=True),
        V("tagger", dict(V=5398, H=64, heads=876), 40, (1, 8, 2048, 333), varlen=True),
        V("tagger", dict(V=5398, H=128, heads=200), 40, (1, 8, 2048, 333), varlen=True),
        V("tagger", dict(V=5398, H=32, heads=2000), 40, (1, 8, 2048, 333), varlen=True),
        # onset detector: Bi-cell 266->H x3, linear 1 + sigmoid per frame (named: RNN tanh H=25 B=32 T=1000)
        V("onset", dict(H=16, cell="rnn"), 1000, (1, 8, 32, 13)),
        V("onset", dict(H=64, cell="rnn"), 1000, (1, 8, 32, 13)),
        V("onset", dict(H=25, cell="gru"), 1000, (1, 8, 32, 13)),
        V("onset", dict(H=64, cell="gru"), 1000, (1, 8, 32, 13)),
        # a plain LSTM, final state, linear 1 (the quick grid's H=256 B=256 T=20 case)
        V("lstm", dict(I=64, H=256), 20, (256, 1, 8, 77)),
        # short sequences of other widths, cells and depths (final state, linear 1)
        V("lstm", dict(I=64, H=128), 20, (1, 8, 77)),
        V("lstm", dict(I=64, H=512), 20, (1, 8, 77)),
        V("lstm", dict(I=64, H=256, cell="gru"), 20, (1, 8, 77)),
        V("lstm", dict(I=64, H=256, cell="rnn"), 20, (1, 8, 77)),
        V("lstm", dict(I=64, H=256, L=2), 20, (1, 8, 77)),
        V("lstm", dict(I=64, H=256), 5, (8, 77)),
        # a single layer over a core's L2 at a batch of 2-8 (a FEW-sequence tile runs as a team at 3-4)
        V("lstm", dict(I=64, H=384), 100, (2, 4, 8, 12)),
        V("beat", dict(H=384, L=1, cell="gru"), 375, (4,)),
    ]


def build(v: Variant, torch):
    """(module in eval mode, chain, output mode, input width or vocabulary) of variant ``v``; seeded."""
    nn = torch.nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    p = v.params
    cells = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            H = p["H"]
            if v.arch == "speaker":
                self.rnn = nn.LSTM(40, H, p["L"], batch_first=True)
                self.fc = nn.Linear(H, H)
            elif v.arch == "beat":
                self.fc_in = nn.Linear(262, H)
                self.rnn = cells[p["cell"]](H, H, p["L"], batch_first=True)
                self.fc_out = nn.Linear(H, 3)
            elif v.arch == "ocr":
                width = 256
                for k in range(p["blocks"]):
                    setattr(self, f"rnn{k}", nn.LSTM(width, H, bidirectional=True, batch_first=True))
                    setattr(self, f"fc{k}", nn.Linear(2 * H, H))
                    width = H
                self.out = nn.Linear(H, 97)
            elif v.arch == "tagger":
                self.emb = nn.Embedding(p["V"], 64)
                self.rnn = nn.LSTM(64, H, bidirectional=True, batch_first=True)
                self.fc1 = nn.Linear(2 * H, 32)
                self.fc2 = nn.Linear(32, p["heads"])
            elif v.arch == "onset":
                self.rnn = cells[p["cell"]](266, H, 3, bidirectional=True, batch_first=True)
                self.fc = nn.Linear(2 * H, 1)
            else:
                self.rnn = cells[p.get("cell", "lstm")](p["I"], H, p.get("L", 1), batch_first=True)
                self.fc = nn.Linear(H, 1)

        def forward(self, x, lengths):
            if v.arch == "speaker":
                _, (h, _) = self.rnn(x)
                return torch.relu(self.fc(h[-1]))
            if v.arch == "beat":
                return torch.softmax(self.fc_out(self.rnn(self.fc_in(x))[0]), dim=-1)
            if v.arch == "ocr":
                for k in range(p["blocks"]):
                    x = getattr(self, f"fc{k}")(getattr(self, f"rnn{k}")(x)[0])
                return self.out(x)
            if v.arch == "tagger":
                T = x.shape[1]
                pk = pack_padded_sequence(self.emb(x), lengths, batch_first=True, enforce_sorted=False)
                y, _ = pad_packed_sequence(self.rnn(pk)[0], batch_first=True, total_length=T)
                return self.fc2(torch.relu(self.fc1(y)))
            if v.arch == "onset":
                return torch.sigmoid(self.fc(self.rnn(x)[0]))
            h = self.rnn(x)[1]  # LSTM: (h_n, c_n); GRU, RNN: h_n
            return self.fc((h[0] if isinstance(h, tuple) else h)[-1])

    chains = {
        "speaker": ("rnn,fc,relu", "final", 40),
        "beat": ("fc_in,rnn,fc_out,softmax", "all", 262),
        "ocr": (",".join(f"rnn{k},fc{k}" for k in range(p.get("blocks", 0))) + ",out", "all", 256),
        "tagger": ("emb,rnn,fc1,relu,fc2", "all", p.get("V")),
        "onset": ("rnn,fc,sigmoid", "all", 266),
        "lstm": ("rnn,fc", "final", p.get("I")),
    }
    torch.manual_seed(0)
    return (Net().eval(), *chains[v.arch])


class VariantBench(RealBench):
    """A variant at one batch: the torch module, the converted model, the batch (`RealBench`'s export and sessions)."""

    def __init__(self, v: Variant, B: int, torch, net, chain: str, output: str, width: int, rnnjit_model):
        self.net, self.model = net, rnnjit_model
        rng = np.random.default_rng(B)
        T = v.T
        if v.varlen:
            self.lengths = rng.integers(min(8, T), T + 1, B).astype(np.int64)
            self.lengths[0] = T  # the padded width is the longest sequence, as a collate function pads
        else:
            self.lengths = np.full(B, T, np.int64)
        if v.arch == "tagger":
            self.x = rng.integers(0, width, (B, T)).astype(np.int64)
            self.x[np.arange(T)[None, :] >= self.lengths[:, None]] = 0
        else:
            self.x = rng.standard_normal((B, T, width)).astype(np.float32)
        self.xt, self.lengths_t = torch.from_numpy(self.x), torch.from_numpy(self.lengths)
        with torch.inference_mode():
            self.expected = net(self.xt, self.lengths_t).numpy()
        self.onnx = None
        self._sessions = {}


def convert(net, chain: str, output: str, torch):
    import rnnjit

    with tempfile.TemporaryDirectory() as d:
        torch.save(net.state_dict(), Path(d) / "m.pth")
        rnnjit.convert(Path(d) / "m.pth", Path(d) / "m.npz", chain=chain, output=output, reference=False)
        return rnnjit.load(Path(d) / "m.npz")


def time_interleaved(fns: dict, order: list[str], rounds: int, budget_s: float, settle_s: float,
                     clock=time.perf_counter) -> dict:  # fmt: skip
    """Best seconds per engine, turns interleaved in ``order``; rounds: at least ``rounds``, about ``budget_s`` each.

    ``settle_s`` > 0: each turn is a pause (and `bench.timing.wait_quiet`), an untimed call and the timed
    call (`bench.timing.settled_call`); 0: one timed call right after the other engine's.
    """
    from bench.timing import fresh_back_off, settled_call

    best = {k: float("inf") for k in fns}
    t_start = time.perf_counter()
    n = 0
    while n < rounds or (time.perf_counter() - t_start < budget_s * len(fns) and n < 200):
        for k in order:
            if k == "rnnjit":
                fresh_back_off()  # the team/wavefront back-off reacts to the other engines' spinning threads
            if settle_s:
                best[k] = min(best[k], settled_call(fns[k], settle_s, clock))
            else:
                t0 = clock()
                fns[k]()
                best[k] = min(best[k], clock() - t0)
        n += 1
    return best


def main(argv=None):
    import torch

    from bench.real_models import PARITY_ATOL, max_abs_diff

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="at least this many interleaved rounds")
    ap.add_argument("--budget", type=float, default=0.3, help="seconds of calls per engine and case (about)")
    ap.add_argument("--settle", type=float, default=10.0,
                    help="ms of pause (then an untimed call) before each engine's timed call; 0: calls back to back")
    ap.add_argument("--order", default="rnnjit,torch,onnxruntime", help="engine order within a round")
    ap.add_argument("--no-ort", action="store_true", help="torch only")
    ap.add_argument("--cpu", action="store_true",
                    help="one thread each, timed in the calling thread's CPU time (steady on a busy machine)")
    ap.add_argument("-k", action="append", default=[], help="only variants whose name contains this (repeatable)")
    ap.add_argument("-b", type=int, action="append", default=[], help="only these batch sizes (repeatable)")
    a = ap.parse_args(argv)
    if a.cpu:
        a.threads = 1
    clock = time.thread_time if a.cpu else time.perf_counter
    torch.set_num_threads(a.threads)
    order = [e for e in a.order.split(",") if not (a.no_ort and e == "onnxruntime")]
    print(f"threads {a.threads}, {'thread CPU time' if a.cpu else 'wall-clock'}, settle {a.settle} ms, "
          f"order {','.join(order)}; load {os.getloadavg()[0]:.2f}")  # fmt: skip
    print("| variant | B | T | rnnjit ms | torch ms | ort ms | torch / rnnjit | ort / rnnjit |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    t_all = time.perf_counter()
    for v in _variants():
        if a.k and not any(k in v.name for k in a.k):
            continue
        net, chain, output, width = build(v, torch)
        model = convert(net, chain, output, torch)
        for B in v.batches:
            if a.b and B not in a.b:
                continue
            b = VariantBench(v, B, torch, net, chain, output, width, model)
            fns = {
                "rnnjit": lambda b=b: b.model.predict(b.x, lengths=b.lengths, engine="numba", threads=a.threads),
                "torch": lambda b=b: b.net(b.xt, b.lengths_t),
            }
            diff = max_abs_diff(b, fns["rnnjit"]())  # compilation, and parity
            assert diff <= PARITY_ATOL, f"{v.name} B={B}: rnnjit differs from torch by {diff:.1e}"
            if "onnxruntime" in order:
                sess = b.session("onnxruntime", a.threads)
                if callable(sess):
                    fns["onnxruntime"] = sess
                else:
                    print(f"<!-- {v.name} B={B}: onnxruntime: {sess} -->")
            with torch.inference_mode():
                best = time_interleaved(fns, [e for e in order if e in fns], a.rounds, a.budget, a.settle / 1e3,
                                        clock)  # fmt: skip
            r, t = best["rnnjit"], best["torch"]
            o = best.get("onnxruntime")
            ort_ms, ort_ratio = (f"{o * 1e3:.2f}", f"{o / r:.2f}x") if o else ("-", "-")
            flag = " **<1**" if t / r < 1 or (o and o / r < 1) else ""
            print(f"| {v.name} | {B} | {v.T} | {r * 1e3:.2f} | {t * 1e3:.2f} | {ort_ms} | {t / r:.2f}x | "
                  f"{ort_ratio}{flag} |", flush=True)  # fmt: skip
    print(f"<!-- {time.perf_counter() - t_all:.0f} s; load {os.getloadavg()[0]:.2f} -->")


if __name__ == "__main__":
    main()
