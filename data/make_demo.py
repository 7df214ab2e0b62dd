"""Regenerate the demo model, bundle and Parquet file the README uses.

A small LSTM learns to tell whether a noisy multichannel sequence contains a
short oscillation burst (a few cycles of a sine/cosine pair on two channels),
anywhere in a sequence of 20..80 steps. Trains in a few seconds on a CPU with
torch; everything is seeded.

    python data/make_demo.py          # writes data/demo_model.pth, data/demo_bundle.npz,
                                      # data/demo_sequences.parquet, data/demo_steps.parquet

Only this script needs torch; the files it writes are scored without it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
FEATURES = ["vib_x", "vib_y", "temp", "load"]
I, H = len(FEATURES), 24
MIN_LEN, MAX_LEN = 20, 80


def make_sequences(n: int, rng: np.random.Generator):
    """``n`` sequences (list of (T_i, 4) float32 arrays) and labels (1 = burst present)."""
    seqs, labels = [], []
    for _ in range(n):
        T = int(rng.integers(MIN_LEN, MAX_LEN + 1))
        x = np.empty((T, I), dtype=np.float32)
        x[:, 0:2] = rng.normal(0, 0.6, size=(T, 2))
        x[:, 2] = 0.5 * np.sin(np.linspace(0, rng.uniform(1, 3), T)) + rng.normal(0, 0.2, T)  # slow drift
        x[:, 3] = rng.uniform(-1, 1) + rng.normal(0, 0.3, T)  # a load level
        label = int(rng.random() < 0.5)
        if label:
            width = int(rng.integers(8, 13))
            start = int(rng.integers(0, T - width + 1))
            phase = np.linspace(0, 2 * np.pi * rng.uniform(1.5, 2.5), width)
            amp = rng.uniform(1.2, 2.0)
            x[start : start + width, 0] += amp * np.sin(phase)
            x[start : start + width, 1] += amp * np.cos(phase)
        seqs.append(x)
        labels.append(label)
    return seqs, np.array(labels, dtype=np.int8)


def train(seed: int = 0):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    class BurstDetector(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(I, H, batch_first=True)
            self.fc = nn.Linear(H, 1)

        def forward(self, x, lengths):
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.lstm(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
            last = out[torch.arange(x.shape[0]), lengths - 1]
            return self.fc(last).squeeze(-1)  # logits; sigmoid at scoring time

    def batchify(seqs):
        lengths = torch.tensor([len(s) for s in seqs])
        x = torch.zeros(len(seqs), int(lengths.max()), I)
        for b, s in enumerate(seqs):
            x[b, : len(s)] = torch.from_numpy(s)
        return x, lengths

    net = BurstDetector()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss_fn = nn.BCEWithLogitsLoss()
    train_x, train_y = make_sequences(4096, rng)
    for step in range(400):
        idx = rng.integers(0, len(train_x), 64)
        x, lengths = batchify([train_x[i] for i in idx])
        loss = loss_fn(net(x, lengths), torch.from_numpy(train_y[idx].astype(np.float32)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    return net, batchify


def write_steps(table: pa.Table, path: Path, n: int = 200) -> None:
    """The first ``n`` sequences in the long layout (README "Real runs"): customer, t, one column per feature."""
    table = table.slice(0, n)
    seqs = table.column("features").to_pylist()
    lengths = [len(s) for s in seqs]
    steps = np.asarray([step for s in seqs for step in s], np.float32)
    cols = {
        "customer": pa.array(np.repeat(table.column("id").to_numpy(), lengths), pa.int64()),
        "t": pa.array(np.concatenate([np.arange(k) for k in lengths]), pa.int32()),
    }
    cols.update({name: pa.array(steps[:, j]) for j, name in enumerate(FEATURES)})
    pq.write_table(pa.table(cols), path, compression="zstd")


def main() -> None:
    import torch

    sys.path.insert(0, str(HERE.parent))
    import rnnjit

    net, batchify = train()
    pth = HERE / "demo_model.pth"
    torch.save(net.state_dict(), pth)
    model = rnnjit.convert(pth, HERE / "demo_bundle.npz", head="fc,sigmoid", output="last", feature_names=FEATURES)

    rng = np.random.default_rng(1)
    seqs, labels = make_sequences(2000, rng)
    features = pa.array([s.tolist() for s in seqs], pa.list_(pa.list_(pa.float32())))
    table = pa.table(
        {"id": pa.array(np.arange(1, len(seqs) + 1), pa.int64()), "label": pa.array(labels), "features": features}
    )
    pq.write_table(table, HERE / "demo_sequences.parquet", row_group_size=1000, compression="zstd")
    write_steps(table, HERE / "demo_steps.parquet")

    scores = model.predict(seqs, engine="numpy")[:, 0]
    with torch.no_grad():
        x, lengths = batchify(seqs)
        expected = torch.sigmoid(net(x, lengths)).numpy()
    acc = float(((scores > 0.5) == labels).mean())
    print(f"demo: {len(seqs)} sequences, accuracy {acc:.3f}, max |rnnjit - torch| = {np.abs(scores - expected).max():.2e}")
    print(model)


if __name__ == "__main__":
    main()
