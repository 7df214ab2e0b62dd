"""The embedding + LSTM text classifier of the sentiment tutorial: rnnjit vs torch, one warm process.

    python bench/measure_text_classifier.py [--batch 1024] [--steps 64] [--vocab 20000]
        [--embedding 64] [--hidden 128] [--repeat 3] [--threads 1]

Model: nn.Embedding(V, E, padding_idx=1) -> bidirectional nn.LSTM(E, H) fed
packed sequences -> fc(cat(h_n fwd, h_n bwd)), converted with
``--output-mode final`` (the chain embedding,rnn,fc is inferred). Data: token
ids, lengths uniform in [8, T]. Prints best-of-``--repeat`` seconds per batch
for rnnjit (numba engine; the embedding lookup is a numpy gather per batch,
timed apart) and torch, both on ``--threads`` threads, and the max abs
difference. On a shared machine keep one thread: torch with 2 threads under
load was measured 8x slower than with 1 (oversubscription), which says
nothing about either library. torch is needed here; rnnjit itself never imports it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=20000)
    ap.add_argument("--embedding", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    import torch
    from torch import nn

    import rnnjit
    from rnnjit.steps import embed

    torch.set_num_threads(a.threads)
    class Sentiment(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(a.vocab, a.embedding, padding_idx=1)
            self.rnn = nn.LSTM(a.embedding, a.hidden, bidirectional=True, batch_first=True)
            self.fc = nn.Linear(2 * a.hidden, 1)

        def forward(self, x, lengths):
            packed = nn.utils.rnn.pack_padded_sequence(self.embedding(x), lengths, batch_first=True,
                                                       enforce_sorted=False)
            _, (h, _) = self.rnn(packed)
            return self.fc(torch.cat((h[-2], h[-1]), 1))

    torch.manual_seed(0)
    net = Sentiment().eval()
    rng = np.random.default_rng(0)
    B, T = a.batch, a.steps
    lengths = rng.integers(min(8, T), T + 1, size=B)
    lengths[0] = T
    ids = rng.integers(2, a.vocab, size=(B, T))
    ids[np.arange(T)[None] >= lengths[:, None]] = 1
    with tempfile.TemporaryDirectory() as d:
        torch.save(net.state_dict(), Path(d) / "m.pth")
        model = rnnjit.convert(Path(d) / "m.pth", Path(d) / "m.npz", output="final")
    model.predict(ids[:2], lengths=np.minimum(lengths[:2], T), engine="numba")  # compilation

    def best(f):
        times = []
        for _ in range(a.repeat):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return min(times)

    t_rnnjit = best(lambda: model.predict(ids, lengths=lengths, engine="numba", threads=a.threads))
    t_gather = best(lambda: embed(model.embedding, model.weights, ids, lengths))
    xt, lt = torch.from_numpy(ids), torch.from_numpy(lengths)
    with torch.no_grad():
        t_torch = best(lambda: net(xt, lt))
        diff = float(np.abs(model.predict(ids, lengths=lengths, engine="numba") - net(xt, lt).numpy()).max())
    print(f"B={B} T={T} V={a.vocab} E={a.embedding} H={a.hidden} bidirectional LSTM; torch threads "
          f"{torch.get_num_threads()}")
    print("| engine | s/batch | sequences/s |\n|---|---|---|")
    print(f"| rnnjit numba | {t_rnnjit:.3f} (embedding gather {t_gather:.3f}) | {B / t_rnnjit:,.0f} |")
    print(f"| torch | {t_torch:.3f} | {B / t_torch:,.0f} |")
    print(f"max abs difference {diff:.1e}")


if __name__ == "__main__":
    main()
