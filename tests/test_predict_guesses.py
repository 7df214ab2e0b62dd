"""``predict`` never guesses which axis is time: an (N, 1) array for a one-input model is refused.

A time-series user holds one series as a column (``values.reshape(-1, 1)``,
the scikit-learn habit) or in PyTorch's sequence-first (T, B=1) layout. Read
as (batch, time), it scored N one-step sequences with no word (exit 0, N
numbers where torch gives one). The unambiguous shapes keep working, with
torch's numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import rnnjit
from rnnjit.errors import InputError


class Forecaster(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(1, 6, batch_first=True)
        self.fc = nn.Linear(6, 1)


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 4)
        self.lstm = nn.LSTM(4, 5, batch_first=True)
        self.fc = nn.Linear(5, 1)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("guess")
    torch.manual_seed(0)
    out = {}
    for name, net in (("series", Forecaster().eval()), ("tokens", Tagger().eval())):
        torch.save(net.state_dict(), d / f"{name}.pth")
        out[name] = (net, rnnjit.convert(d / f"{name}.pth", d / f"{name}.npz", head="fc", output="last"))
    return out


SERIES = np.random.default_rng(0).standard_normal(7).astype(np.float32)
IDS = np.array([3, 1, 4, 1, 5, 9, 2])


@pytest.mark.parametrize("kind, x", [
    ("series", SERIES.reshape(-1, 1)),  # sklearn habit: one series as a column
    ("tokens", IDS.reshape(-1, 1)),  # PyTorch's sequence-first (T, B=1)
], ids=["series-column", "token-ids-sequence-first"])
def test_an_n_by_1_array_is_refused_not_read_as_n_sequences(models, kind, x):
    _, model = models[kind]
    with pytest.raises(InputError) as exc:
        model.predict(x, engine="numpy")
    msg = str(exc.value)
    assert "\n" not in msg
    assert "7 sequences of one step, or one sequence of 7 steps?" in msg and "x.reshape(1, -1)" in msg and "x.T" in msg


@pytest.mark.parametrize("kind, x", [
    ("series", SERIES.reshape(1, -1)), ("series", [SERIES]), ("series", SERIES.reshape(1, -1, 1)),
    ("tokens", IDS.reshape(1, -1)), ("tokens", [IDS]),
], ids=["series-(1,T)", "series-list", "series-(1,T,1)", "tokens-(1,T)", "tokens-list"])
def test_the_unambiguous_shapes_give_torch_numbers(models, kind, x):
    net, model = models[kind]
    with torch.no_grad():
        inp = torch.from_numpy(SERIES.reshape(1, -1, 1)) if kind == "series" else net.emb(torch.from_numpy(IDS)[None])
        out, _ = net.lstm(inp)
        want = net.fc(out[:, -1]).numpy()
    np.testing.assert_allclose(model.predict(x, engine="numpy"), want, atol=1e-5)


def test_one_sequence_of_one_step_is_not_ambiguous(models):
    _, model = models["series"]
    assert model.predict(SERIES[:1].reshape(1, 1), engine="numpy").shape == (1, 1)


def test_lengths_say_which_axis_is_the_batch(models):
    """(N, 1) with N lengths is N one-step sequences, as the caller declared."""
    net, model = models["series"]
    x = SERIES.reshape(-1, 1)
    with torch.no_grad():
        out, _ = net.lstm(torch.from_numpy(x[:, :, None]))
        want = net.fc(out[:, -1]).numpy()
    np.testing.assert_allclose(model.predict(x, lengths=np.ones(7, np.int64), engine="numpy"), want, atol=1e-5)


class CharRNN(nn.Module):
    """The char-RNN name classifier: ``lineToTensor`` gives (T, 1, n_letters), sequence-first."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(6, 8)
        self.h2o = nn.Linear(8, 3)


def test_sequence_first_one_sequence_is_refused_and_its_transpose_is_torch(tmp_path):
    torch.manual_seed(0)
    net = CharRNN().eval()
    torch.save(net.state_dict(), tmp_path / "m.pth")
    model = rnnjit.convert(tmp_path / "m.pth", tmp_path / "b.npz", nonlinearity="tanh", head="h2o,log_softmax",
                           output="final")
    line = np.eye(6, dtype=np.float32)[[1, 4, 2, 5, 0]][:, None, :]  # lineToTensor("...") for 5 letters
    with pytest.raises(InputError) as exc:
        model.predict(line, engine="numpy")
    assert "5 sequences of one step, or one 5-step sequence" in str(exc.value) and "x.transpose(1, 0, 2)" in str(exc.value)
    with torch.no_grad():
        _, hidden = net.rnn(torch.from_numpy(line))
        want = torch.log_softmax(net.h2o(hidden[0]), dim=1).numpy()
    np.testing.assert_allclose(model.predict(line.transpose(1, 0, 2), engine="numpy"), want, atol=1e-5)


def test_one_step_of_carried_sequences_with_a_state_is_not_ambiguous(models):
    """(B, 1, I) with h0: B sequences advanced one step (streaming); torch gives the same."""
    net, model = models["series"]
    x = SERIES[:4].reshape(4, 1, 1)
    h0 = np.random.default_rng(5).standard_normal((1, 4, 6)).astype(np.float32)
    c0 = np.zeros_like(h0)
    with torch.no_grad():
        out, _ = net.lstm(torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0)))
        want = net.fc(out[:, -1]).numpy()
    np.testing.assert_allclose(model.predict(x, h0=h0, c0=c0, engine="numpy"), want, atol=1e-5)
