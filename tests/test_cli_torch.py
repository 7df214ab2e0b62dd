"""End to end against PyTorch: .pth -> rnnjit convert -> rnnjit score -> compare with torch."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import list_table, long_table, random_sequences, run, write

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

TOL = 2e-5


class Net(nn.Module):
    def __init__(self, cell, I, H, layers, bidir, O):
        super().__init__()
        cls = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = cls(I, H, num_layers=layers, bidirectional=bidir, batch_first=True)
        self.head = nn.Linear(H * (2 if bidir else 1), O)

    def forward(self, seqs, h0=None):
        """Per sequence: sigmoid(head(output at the last valid step)), and the final states."""
        lengths = torch.tensor([len(s) for s in seqs])
        x = torch.zeros(len(seqs), int(lengths.max()), seqs[0].shape[1])
        for b, s in enumerate(seqs):
            x[b, : len(s)] = torch.from_numpy(s)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed, h0)
        out, _ = pad_packed_sequence(out, batch_first=True)
        last = out[torch.arange(len(seqs)), lengths - 1]
        return torch.sigmoid(self.head(last)).numpy(), state


def _net(tmp_path, cell="lstm", I=3, H=6, layers=2, bidir=False, O=1, seed=0):
    torch.manual_seed(seed)
    net = Net(cell, I, H, layers, bidir, O).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)  # push the gates away from the linear regime
    torch.save(net.state_dict(), tmp_path / "model.pth")
    r = run("convert", tmp_path / "model.pth", "--output", tmp_path / "b.npz", "--head", "head,sigmoid")
    assert r.exit_code == 0, r.stderr
    return net, tmp_path / "b.npz"


def _score(bundle, src, out, *extra):
    r = run("score", "--model", bundle, "--input", src, "--output", out, "-q", *extra)
    assert r.exit_code == 0, r.stderr
    return pq.read_table(out)


@pytest.mark.parametrize("engine", ["numpy", "default"])
@pytest.mark.parametrize("cell,bidir", [("lstm", True), ("gru", False)])
def test_list_layout_matches_torch(tmp_path, cell, bidir, engine):
    net, bundle = _net(tmp_path, cell, bidir=bidir, O=2)
    seqs = random_sequences(37, 3, seed=1, min_len=1, max_len=12)
    src = write(list_table(seqs), tmp_path / "in.parquet", row_group_size=10)
    extra = () if engine == "default" else ("--engine", engine)
    t = _score(bundle, src, tmp_path / "o.parquet", "--batch-rows", "8", *extra)
    with torch.no_grad():
        expected, _ = net(seqs)
    np.testing.assert_allclose(np.array(t.column("score").to_pylist()), expected, atol=TOL, rtol=0)


def test_long_layout_matches_torch(tmp_path):
    net, bundle = _net(tmp_path, "lstm", bidir=True)
    seqs = random_sequences(29, 3, seed=2, min_len=1, max_len=15)
    ids = [f"user-{i:03d}" for i in range(len(seqs))]
    src = write(long_table(seqs, ids=ids), tmp_path / "long.parquet", row_group_size=17)
    t = _score(bundle, src, tmp_path / "o.parquet", "--layout", "long", "--key-column", "id", "--order-column", "t",
               "--feature-columns", "f0,f1,f2", "--batch-rows", "5", "--engine", "numpy")
    assert t.column("id").to_pylist() == ids
    with torch.no_grad():
        expected, _ = net(seqs)
    np.testing.assert_allclose(t.column("score").to_numpy(), expected[:, 0], atol=TOL, rtol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_state_carried_across_two_runs(tmp_path, cell):
    """Today's --emit-state fed back as h0/c0 tomorrow == one run over the whole sequences."""
    net, bundle = _net(tmp_path, cell, layers=2)
    rng = np.random.default_rng(3)
    full = random_sequences(21, 3, seed=4, min_len=2, max_len=14)
    cut = [int(rng.integers(0, len(s))) for s in full]  # day 1 may be empty: then day 2 starts from zeros
    day1 = [s[:k] for s, k in zip(full, cut)]
    day2 = [s[k:] for s, k in zip(full, cut)]
    ids = list(range(100, 121))

    t1 = _score(bundle, write(list_table(day1, ids=ids), tmp_path / "d1.parquet"), tmp_path / "s1.parquet",
                "--emit-state", "--batch-rows", "4", "--engine", "numpy")
    assert t1.column_names == ["id", "score", "hn"] + (["cn"] if cell == "lstm" else [])
    state_cols = {"h0": t1.column("hn")}
    if cell == "lstm":
        state_cols["c0"] = t1.column("cn")
    d2 = list_table(day2, ids=ids, **state_cols)
    t2 = _score(bundle, write(d2, tmp_path / "d2.parquet"), tmp_path / "s2.parquet", "--emit-state",
                "--batch-rows", "4", "--engine", "numpy")

    with torch.no_grad():
        expected, state = net(full)
    np.testing.assert_allclose(t2.column("score").to_numpy(), expected[:, 0], atol=TOL, rtol=0)
    hn = state[0] if cell == "lstm" else state
    rows = hn.numpy().transpose(1, 0, 2).reshape(len(full), -1)  # the state column layout
    np.testing.assert_allclose(np.array(t2.column("hn").to_pylist()), rows, atol=TOL, rtol=0)
    if cell == "lstm":
        cn = state[1].numpy().transpose(1, 0, 2).reshape(len(full), -1)
        np.testing.assert_allclose(np.array(t2.column("cn").to_pylist()), cn, atol=TOL, rtol=0)


def test_multi_file_dataset_directory(tmp_path):
    net, bundle = _net(tmp_path, "gru", layers=1)
    seqs = random_sequences(40, 3, seed=6, min_len=1, max_len=10)
    d = tmp_path / "day=2026-11-23"
    d.mkdir()
    for k in range(4):
        part = list(range(k * 10, k * 10 + 10))
        write(list_table([seqs[i] for i in part], ids=part, label=pa.array([i % 2 for i in part])),
              d / f"part-{k:05d}.parquet")
    t = _score(bundle, d, tmp_path / "o.parquet", "--id-column", "id", "--batch-rows", "7", "--engine", "numpy")
    assert t.column_names == ["id", "score"] and t.column("id").to_pylist() == list(range(40))
    with torch.no_grad():
        expected, _ = net(seqs)
    np.testing.assert_allclose(t.column("score").to_numpy(), expected[:, 0], atol=TOL, rtol=0)
    r = run("verify", bundle, "--against", tmp_path / "model.pth", "--engine", "numpy")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "torch: ok" in r.stdout
