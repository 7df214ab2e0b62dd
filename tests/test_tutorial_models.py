"""The models of common PyTorch tutorials, saved as they save them, converted with at most one flag.

Issue #8 is done when the embedding-LSTM sentiment classifier of a typical
tutorial converts with at most one flag and scores token-id Parquet with
torch's numbers. `SentimentLSTM` is that model (the "packed padded
sequences" sentiment tutorial): embedding with a padding index, dropout, a
2-layer bidirectional LSTM fed packed sequences, the two last hidden states
concatenated, a linear layer giving a logit (trained with BCEWithLogitsLoss).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

import rnnjit
from cli_helpers import flag, run
from torch_models import TOL, max_abs

VOCAB, EMB, HID, PAD = 50, 8, 6, 1

MODE = flag("convert", "--output-mode", "--output")
SEQ = flag("score", "--sequence-column", "--features-column")


class SentimentLSTM(nn.Module):
    def __init__(self, vocab_size, embedding_dim, hidden_dim, output_dim, n_layers, bidirectional, dropout, pad_idx):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_idx)
        self.rnn = nn.LSTM(embedding_dim, hidden_dim, num_layers=n_layers, bidirectional=bidirectional,
                           dropout=dropout)
        self.fc = nn.Linear(hidden_dim * 2, output_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, text, text_lengths):  # text: (T, B), sequence first as in the tutorial
        embedded = self.dropout(self.embedding(text))
        packed = nn.utils.rnn.pack_padded_sequence(embedded, text_lengths.to("cpu"), enforce_sorted=False)
        packed_output, (hidden, cell) = self.rnn(packed)
        hidden = self.dropout(torch.cat((hidden[-2, :, :], hidden[-1, :, :]), dim=1))
        return self.fc(hidden)


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory):
    d = tmp_path_factory.mktemp("tutorial")
    torch.manual_seed(0)
    model = SentimentLSTM(VOCAB, EMB, HID, 1, 2, True, 0.5, PAD)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)  # trained weights are not at init scale
    model.eval()
    torch.save(model.state_dict(), d / "tut1-model.pt")
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 12, size=9)
    reviews = [rng.integers(2, VOCAB, size=n).tolist() for n in lengths]
    text = torch.full((int(lengths.max()), len(reviews)), PAD, dtype=torch.int64)
    for b, r in enumerate(reviews):
        text[: len(r), b] = torch.tensor(r)
    with torch.no_grad():
        expect = model(text, torch.as_tensor(lengths)).numpy()[:, 0]
    pq.write_table(pa.table({"review_id": pa.array(range(len(reviews)), pa.int64()),
                             "tokens": pa.array(reviews, pa.list_(pa.int64()))}), d / "reviews.parquet")
    return d, reviews, expect


def test_sentiment_tutorial_converts_with_one_flag_and_scores_token_parquet(tutorial, engine):
    d, reviews, expect = tutorial
    r = run("convert", d / "tut1-model.pt", "-o", d / "sentiment.npz", MODE, "final", "--overwrite")
    assert r.exit_code == 0, r.stderr
    assert "embedding" in r.stdout and "rnn: lstm" in r.stdout
    model = rnnjit.load(d / "sentiment.npz")
    assert model.describe() == "embedding,rnn,fc" and model.takes_tokens
    r = run("score", "-m", d / "sentiment.npz", "-i", d / "reviews.parquet", "-o", d / f"scores-{engine}.parquet",
            SEQ, "tokens", "--engine", engine, "--quiet")
    assert r.exit_code == 0, r.stderr
    out = pq.read_table(d / f"scores-{engine}.parquet")
    assert out.column("review_id").to_pylist() == list(range(len(reviews)))
    assert max_abs(np.asarray(out.column("score").to_pylist()), expect) <= TOL["float32"]
    # the API takes the same token lists
    assert max_abs(model.predict(reviews, engine=engine)[:, 0], expect) <= TOL["float32"]
    r = run("verify", d / "sentiment.npz", "--against", d / "tut1-model.pt")
    assert r.exit_code == 0 and "torch: ok" in r.stdout, r.stdout


def test_sentiment_tutorial_long_layout_integer_column(tutorial, engine):
    d, reviews, expect = tutorial
    assert run("convert", d / "tut1-model.pt", "-o", d / "s.npz", MODE, "final", "--overwrite").exit_code == 0
    rows = [(b, t, tok) for b, r in enumerate(reviews) for t, tok in enumerate(r)]
    long = pa.table({"review_id": [r[0] for r in rows], "pos": [r[1] for r in rows],
                     "token": pa.array([r[2] for r in rows], pa.int32())})
    pq.write_table(long, d / "long.parquet")
    r = run("score", "-m", d / "s.npz", "-i", d / "long.parquet", "-o", d / f"long-{engine}.parquet",
            "--layout", "long", "--key-column", "review_id", "--order-column", "pos", "--feature-columns", "token",
            "--engine", engine, "--quiet")
    assert r.exit_code == 0, r.stderr
    got = np.asarray(pq.read_table(d / f"long-{engine}.parquet").column("score").to_pylist())
    assert max_abs(got, expect) <= TOL["float32"]


def test_token_id_out_of_range_names_the_row(tutorial, tmp_path):
    d, reviews, _ = tutorial
    assert run("convert", d / "tut1-model.pt", "-o", tmp_path / "s.npz", MODE, "final").exit_code == 0
    bad = [r[:] for r in reviews]
    bad[3][1] = VOCAB  # one past the table
    pq.write_table(pa.table({"review_id": range(len(bad)), "tokens": pa.array(bad, pa.list_(pa.int64()))}),
                   tmp_path / "bad.parquet")
    r = run("score", "-m", tmp_path / "s.npz", "-i", tmp_path / "bad.parquet", "-o", tmp_path / "o.parquet",
            SEQ, "tokens", "--id-column", "review_id", "--quiet")
    assert r.exit_code == 2
    assert "row 3" in r.stderr and f"token id {VOCAB}" in r.stderr and f"0..{VOCAB - 1}" in r.stderr
    r = run("score", "-m", tmp_path / "s.npz", "-i", tmp_path / "bad.parquet", "-o", tmp_path / "o.parquet",
            SEQ, "tokens", "--on-invalid", "skip", "--quiet")
    assert r.exit_code == 0
    scores = pq.read_table(tmp_path / "o.parquet").column("score").to_pylist()
    assert scores[3] is None and all(s is not None for i, s in enumerate(scores) if i != 3)


def test_float_features_for_a_token_model_are_refused(tutorial, tmp_path):
    d, _, _ = tutorial
    model = rnnjit.convert(d / "tut1-model.pt", tmp_path / "s.npz", output="final")
    with pytest.raises(rnnjit.InputError, match="takes integer token ids"):
        model.predict(np.zeros((2, 3), np.float32))
    with pytest.raises(rnnjit.InputError, match="token id 50 at step 0 is out of range .* 50 rows"):
        model.predict([np.array([50, 1])])
    pq.write_table(pa.table({"tokens": pa.array([[[0.5]]], pa.list_(pa.list_(pa.float32())))}), tmp_path / "f.parquet")
    r = run("score", "-m", tmp_path / "s.npz", "-i", tmp_path / "f.parquet", "-o", tmp_path / "o.parquet",
            SEQ, "tokens", "--quiet")
    assert r.exit_code == 2 and "takes token ids" in r.stderr
