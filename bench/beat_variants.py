"""Variants of the beat tracker's architecture (linear -> LSTM stack -> narrow linear + softmax per frame): a table.

    python -m bench.beat_variants --threads 2 --rounds 5

Issue 17's goals are judged on variants of the named architectures, not only
on their shapes: other widths (H not a multiple of 8 or 16), batches that are
not a multiple of the tile width, 1-3 layers. For each variant, `Model.predict`
(numba) and the model's own torch forward, calls alternated, best of
``--rounds`` (wall-clock, ``--threads`` each), and `predict` on one thread in
the thread's CPU time (steadier on a shared machine). Needs torch.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

VARIANTS = (  # (input width, hidden, layers, outputs, B, T)
    (262, 150, 2, 3, 64, 375),
    (262, 200, 2, 3, 100, 200),
    (262, 120, 2, 3, 40, 300),
    (100, 100, 1, 5, 17, 300),
    (262, 300, 3, 3, 200, 100),
    (80, 130, 2, 2, 77, 250),
)


def build(torch, fin, H, layers, fout):
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc_in = nn.Linear(fin, H)
            self.lstm = nn.LSTM(H, H, layers, batch_first=True)
            self.fc_out = nn.Linear(H, fout)

        def forward(self, x):
            return torch.softmax(self.fc_out(self.lstm(self.fc_in(x))[0]), dim=-1)

    torch.manual_seed(0)
    return Net().eval()


def main(argv=None):
    import torch

    import rnnjit

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    print("| variant | B | T | rnnjit ms | torch ms | torch / rnnjit | rnnjit 1 thread CPU ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for fin, H, layers, fout, B, T in VARIANTS:
        net = build(torch, fin, H, layers, fout)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((B, T, fin)).astype(np.float32)
        lengths = np.full(B, T, np.int64)
        with tempfile.TemporaryDirectory() as d:
            torch.save(net.state_dict(), Path(d) / "m.pth")
            rnnjit.convert(Path(d) / "m.pth", Path(d) / "m.npz", chain="fc_in,lstm,fc_out,softmax", output="all",
                           reference=False)  # fmt: skip
            model = rnnjit.load(Path(d) / "m.npz")
        xt = torch.from_numpy(x)

        def ours(threads=a.threads):
            return model.predict(x, lengths=lengths, engine="numba", threads=threads)

        def theirs():
            with torch.inference_mode():
                return net(xt)

        assert np.abs(ours() - theirs().numpy()).max() < 1e-4  # warm-up (compilation) and parity
        best = [np.inf, np.inf, np.inf]
        for _ in range(a.rounds):
            for k, (fn, clock) in enumerate(((ours, time.perf_counter), (theirs, time.perf_counter),
                                             (lambda: ours(1), time.thread_time))):  # fmt: skip
                t0 = clock()
                fn()
                best[k] = min(best[k], clock() - t0)
        name = f"linear {fin}->{H}, LSTM {H} x{layers}, linear {fout} + softmax"
        print(f"| {name} | {B} | {T} | {best[0] * 1e3:.1f} | {best[1] * 1e3:.1f} | {best[1] / best[0]:.2f}x "
              f"| {best[2] * 1e3:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
