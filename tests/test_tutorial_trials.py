"""The models of common PyTorch tutorials, tried as a new user would: save, convert, score, compare with torch.

Each `Trial` is a tutorial's model class (written as the tutorial writes it,
with its own ``forward``), the convert flags that state what its forward()
does, and how its input looks. Every trial is saved as a plain state_dict and
as a training checkpoint (``model_state_dict`` + optimizer state), converted
with the CLI, and scored through ``predict``, Parquet in the list layout and
in the long layout; every path must give torch's numbers (float32 tolerance),
where torch runs the tutorial's forward() on each sequence alone (unpadded, as
the tutorial does at prediction time). Saving the whole module
(``torch.save(model)``) must stop with one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from cli_helpers import run
from torch import nn

import rnnjit

N_LETTERS, N_CATEGORIES, VOCAB, TAGS = 12, 5, 30, 4


class CharRNN(nn.Module):
    """"NLP From Scratch: classifying names with a character-level RNN" (current version)."""

    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size)
        self.h2o = nn.Linear(hidden_size, output_size)
        self.softmax = nn.LogSoftmax(dim=1)

    def forward(self, line_tensor):  # (T, 1, n_letters), one-hot
        rnn_out, hidden = self.rnn(line_tensor)
        return self.softmax(self.h2o(hidden[0]))


class LSTMTagger(nn.Module):
    """"Sequence models and LSTM networks": the part-of-speech tagger."""

    def __init__(self, embedding_dim, hidden_dim, vocab_size, tagset_size):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.word_embeddings = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_dim)
        self.hidden2tag = nn.Linear(hidden_dim, tagset_size)

    def forward(self, sentence):  # (T,) word ids
        embeds = self.word_embeddings(sentence)
        lstm_out, _ = self.lstm(embeds.view(len(sentence), 1, -1))
        tag_space = self.hidden2tag(lstm_out.view(len(sentence), -1))
        return torch.log_softmax(tag_space, dim=1)


class EncoderRNN(nn.Module):
    """"NLP From Scratch: translation with a sequence to sequence network": the encoder."""

    def __init__(self, input_size, hidden_size, dropout_p=0.1):
        super().__init__()
        self.embedding = nn.Embedding(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, input):
        embedded = self.dropout(self.embedding(input))
        output, hidden = self.gru(embedded)
        return output, hidden


class LSTMRegressor(nn.Module):
    """The time-series forecaster of many tutorials: stacked LSTM, a linear layer on the last step."""

    def __init__(self, input_dim=1, hidden_dim=10, num_layers=2, output_dim=1, use_hn=False):
        super().__init__()
        self.use_hn = use_hn
        self.lstm = nn.LSTM(input_dim, hidden_dim, num_layers, batch_first=True)
        self.fc = nn.Linear(hidden_dim, output_dim)

    def forward(self, x):
        out, (hn, cn) = self.lstm(x)
        return self.fc(hn[-1] if self.use_hn else out[:, -1, :])


class GRUSentiment(nn.Module):
    """A GRU sentiment classifier fed packed padded sequences; the score from the final hidden state."""

    def __init__(self, vocab_size, embedding_dim, hidden_dim):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.gru = nn.GRU(embedding_dim, hidden_dim, batch_first=True)
        self.fc = nn.Linear(hidden_dim, 1)

    def forward(self, text, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(text), lengths, batch_first=True,
                                                   enforce_sorted=False)
        _, hidden = self.gru(packed)
        return torch.sigmoid(self.fc(hidden[-1]))


class BiLSTMClassifier(nn.Module):
    """A bidirectional 2-layer LSTM over sensor features; the classes from ``cat((hn[-2], hn[-1]), 1)``."""

    def __init__(self, n_features, hidden, n_classes):
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden, num_layers=2, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, n_classes)

    def forward(self, x):
        _, (hn, _) = self.lstm(x)
        return torch.softmax(self.fc(torch.cat((hn[-2], hn[-1]), 1)), dim=1)


@dataclass
class Trial:
    make: Callable[[], nn.Module]
    flags: list[str]
    run_one: Callable  # (model, one sequence as numpy) -> torch output for it, (O,) or (T, O)
    tokens: bool = False
    input_size: int = 1
    univariate: bool = False  # list<float> in Parquet (input_size 1)
    per_step: bool = False

    @property
    def notes(self) -> list[str]:
        """Assumptions these flags leave unstated: an inferred embedding's max_norm (stating it takes a --chain)."""
        return ["max_norm"] if self.tokens else []


def _t(x, dtype=torch.float32):
    return torch.as_tensor(x, dtype=dtype)


TRIALS = {
    "char-rnn-name-classifier": Trial(
        lambda: CharRNN(N_LETTERS, 16, N_CATEGORIES),
        ["--head", "h2o,log_softmax", "--output-mode", "final", "--nonlinearity", "tanh"],
        lambda m, s: m(_t(s)[:, None, :])[0],
        input_size=N_LETTERS,
    ),
    "lstm-pos-tagger": Trial(
        lambda: LSTMTagger(6, 6, VOCAB, TAGS),
        ["--head", "hidden2tag,log_softmax", "--output-mode", "all"],
        lambda m, s: m(_t(s, torch.int64)),
        tokens=True, per_step=True,
    ),
    "seq2seq-encoder-hidden": Trial(
        lambda: EncoderRNN(VOCAB, 8),
        ["--output-mode", "final"],
        lambda m, s: m(_t(s, torch.int64)[None])[1][0, 0],
        tokens=True,
    ),
    "seq2seq-encoder-outputs": Trial(
        lambda: EncoderRNN(VOCAB, 8),
        ["--output-mode", "all"],
        lambda m, s: m(_t(s, torch.int64)[None])[0][0],
        tokens=True, per_step=True,
    ),
    "timeseries-regressor-out-last": Trial(
        lambda: LSTMRegressor(),
        ["--head", "fc", "--output-mode", "last"],
        lambda m, s: m(_t(s)[None, :, None])[0],
        univariate=True,
    ),
    "timeseries-regressor-hn-last-layer": Trial(
        lambda: LSTMRegressor(use_hn=True),
        ["--head", "fc", "--output-mode", "final"],
        lambda m, s: m(_t(s)[None, :, None])[0],
        univariate=True,
    ),
    "gru-sentiment-packed": Trial(
        lambda: GRUSentiment(VOCAB, 8, 6),
        ["--head", "fc,sigmoid", "--output-mode", "final"],
        lambda m, s: m(_t(s, torch.int64)[None], torch.tensor([len(s)]))[0],
        tokens=True,
    ),
    "bilstm-cat-hn": Trial(
        lambda: BiLSTMClassifier(3, 5, 4),
        ["--head", "fc,softmax", "--output-mode", "final"],
        lambda m, s: m(_t(s)[None])[0],
        input_size=3,
    ),
}


def _model(trial: Trial) -> nn.Module:
    torch.manual_seed(0)
    net = trial.make()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)  # trained weights are not at init scale
    return net.eval()


def _sequences(trial: Trial, n=7, seed=3):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 9, size=n)
    if trial.tokens:
        return [rng.integers(1, VOCAB, size=int(t)).astype(np.int64) for t in lengths]
    if trial.univariate:
        return [rng.standard_normal(int(t)).astype(np.float32) for t in lengths]
    if trial.input_size == N_LETTERS:  # one-hot letters
        return [np.eye(N_LETTERS, dtype=np.float32)[rng.integers(0, N_LETTERS, size=int(t))] for t in lengths]
    return [rng.standard_normal((int(t), trial.input_size)).astype(np.float32) for t in lengths]


def _expected(trial: Trial, net, seqs):
    with torch.no_grad():
        return [trial.run_one(net, s).numpy() for s in seqs]


def _close(got, want, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    err = float(np.max(np.abs(got - want))) if got.size else 0.0
    assert err <= 1e-5 * max(1.0, float(np.max(np.abs(want)))), f"{what}: max abs error {err:.2e}"


def _row_scores(col: pa.ChunkedArray, trial: Trial, lengths):
    """The score column as a list of (O,) or (T, O) arrays."""
    out = []
    for v, n in zip(col.to_pylist(), lengths, strict=True):
        a = np.asarray(v, np.float64)
        if trial.per_step:
            a = a.reshape(n, -1)
        out.append(a.reshape(-1) if not trial.per_step else a)
    return out


@pytest.fixture(scope="module", params=sorted(TRIALS), ids=sorted(TRIALS))
def converted(request, tmp_path_factory):
    trial = TRIALS[request.param]
    d = tmp_path_factory.mktemp(request.param)
    net = _model(trial)
    torch.save(net.state_dict(), d / "model.pth")
    opt = torch.optim.Adam(net.parameters())
    torch.save({"epoch": 3, "model_state_dict": net.state_dict(), "optimizer_state_dict": opt.state_dict(),
                "loss": 0.25}, d / "checkpoint.pth")
    seqs = _sequences(trial)
    return trial, net, d, seqs, _expected(trial, net, seqs)


@pytest.mark.parametrize("source", ["model.pth", "checkpoint.pth"])
def test_convert_and_predict_gives_torch_numbers(converted, source):
    trial, net, d, seqs, want = converted
    r = run("convert", d / source, "-o", d / f"{source}.npz", *trial.flags, "--overwrite")
    assert r.exit_code == 0, r.stderr
    notes = [ln for ln in r.stderr.splitlines() if ln.startswith("note:")]
    # every flag the forward() needs was given: nothing else left to guess
    assert [a["what"] for a in rnnjit.bundle.read_config(d / f"{source}.npz")["assumed"]] == trial.notes, notes
    assert len(notes) == len(trial.notes), notes
    model = rnnjit.load(d / f"{source}.npz")
    for engine in ("numpy", "numba"):
        got = model.predict(list(seqs), engine=engine)
        for b, w in enumerate(want):
            _close(got[b, : len(seqs[b])] if trial.per_step else got[b], w, f"{engine} sequence {b}")
    v = run("verify", d / f"{source}.npz", "--against", d / source)
    ok = "torch: ok for the model as converted, max abs error" if trial.notes else "torch: ok, max abs error"
    assert v.exit_code == 0 and ok in v.stdout, v.stdout + v.stderr


def test_parquet_list_layout_gives_torch_numbers(converted):
    trial, net, d, seqs, want = converted
    assert run("convert", d / "model.pth", "-o", d / "b.npz", *trial.flags, "--overwrite").exit_code == 0
    if trial.tokens:
        typ = pa.list_(pa.int64())
    elif trial.univariate:
        typ = pa.list_(pa.float32())
    else:
        typ = pa.list_(pa.list_(pa.float32()))
    pq.write_table(pa.table({"id": list(range(len(seqs))), "features": pa.array([s.tolist() for s in seqs], typ)}),
                   d / "list.parquet")
    r = run("score", "-m", d / "b.npz", "-i", d / "list.parquet", "-o", d / "list_scores.parquet", "--overwrite")
    assert r.exit_code == 0, r.stderr
    got = _row_scores(pq.read_table(d / "list_scores.parquet")["score"], trial, [len(s) for s in seqs])
    for b, w in enumerate(want):
        _close(got[b], w.reshape(got[b].shape) if not trial.per_step else w, f"list row {b}")


def test_parquet_long_layout_gives_torch_numbers(converted):
    trial, net, d, seqs, want = converted
    assert run("convert", d / "model.pth", "-o", d / "b.npz", *trial.flags, "--overwrite").exit_code == 0
    ids = np.concatenate([np.full(len(s), i) for i, s in enumerate(seqs)])
    t = np.concatenate([np.arange(len(s)) for s in seqs])
    flat = np.concatenate([s.reshape(len(s), -1) for s in seqs])
    names = ["token"] if trial.tokens else [f"x{j}" for j in range(flat.shape[1])]
    cols = {"sensor": ids, "t": t, **{n: flat[:, j] for j, n in enumerate(names)}}
    pq.write_table(pa.table(cols), d / "long.parquet")
    r = run("score", "-m", d / "b.npz", "-i", d / "long.parquet", "-o", d / "long_scores.parquet", "--overwrite",
            "--layout", "long", "--key-column", "sensor", "--order-column", "t", "--feature-columns", ",".join(names))
    assert r.exit_code == 0, r.stderr
    table = pq.read_table(d / "long_scores.parquet")
    assert table["sensor"].to_pylist() == list(range(len(seqs)))
    got = _row_scores(table["score"], trial, [len(s) for s in seqs])
    for b, w in enumerate(want):
        _close(got[b], w.reshape(got[b].shape) if not trial.per_step else w, f"long id {b}")


def test_whole_module_saved_with_torch_save_is_one_line(converted):
    """``torch.save(model, path)`` pickles the class: rnnjit refuses it and says to save the state_dict."""
    trial, net, d, seqs, want = converted
    torch.save(net, d / "whole.pth")
    r = run("convert", d / "whole.pth", "-o", d / "w.npz", *trial.flags, "--overwrite")
    assert r.exit_code == 2, r.stdout
    err = r.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert "state_dict" in err, err
    assert not (d / "w.npz").exists()
