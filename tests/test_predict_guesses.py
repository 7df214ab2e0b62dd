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
