"""The networks from the questions this project answers, rebuilt as their authors wrote them.

Each model class is saved with ``torch.save(model.state_dict(), path)``,
converted with `rnnjit.convert`, loaded and compared with the module's own
``forward`` (not with a helper's idea of it).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import rnnjit
from torch_models import TOL, max_abs, max_scaled, saturate_


def convert(module_or_sd, tmp_path, **kwargs) -> rnnjit.Model:
    sd = module_or_sd.state_dict() if isinstance(module_or_sd, nn.Module) else module_or_sd
    torch.save(sd, tmp_path / "model.pth")
    rnnjit.convert(tmp_path / "model.pth", tmp_path / "bundle.npz", **kwargs)
    return rnnjit.load(tmp_path / "bundle.npz")


# ---------------------------------------------------------------------------
class RNNClassifier(nn.Module):
    """2-layer nn.RNN; ``classifier = Sequential(Linear, Sigmoid)`` on the last step."""

    def __init__(self, input_size=6, hidden_size=8, num_layers=2, num_classes=1):
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, num_layers, batch_first=True)
        self.classifier = nn.Sequential(nn.Linear(hidden_size, num_classes), nn.Sigmoid())

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.classifier(out[:, -1, :])


def test_two_layer_rnn_classifier_with_sigmoid_on_last_step(tmp_path, engine):
    torch.manual_seed(0)
    net = saturate_(RNNClassifier(), 3.0).eval()
    model = convert(net, tmp_path, head="classifier.0,sigmoid", output="last")
    assert model.spec.cell == "rnn_tanh" and model.spec.num_layers == 2 and model.output_dim == 1
    x = torch.randn(5, 9, 6)
    with torch.no_grad():
        expect = net(x).numpy()
    y = model.predict(x.numpy(), engine=engine)
    assert y.shape == (5, 1)
    assert max_abs(y, expect) <= TOL["float32"]
    assert np.all((y > 0) & (y < 1))


# ---------------------------------------------------------------------------
class LSTMTagger(nn.Module):
    """``nn.LSTM(10, 20, 2)`` (seq-first) and ``hidden2out`` with a sigmoid at every step."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(10, 20, 2)
        self.hidden2out = nn.Linear(20, 1)

    def forward(self, x):
        lstm_out, _ = self.lstm(x)
        return torch.sigmoid(self.hidden2out(lstm_out))


def test_lstm_10_20_2_with_per_step_sigmoid_output_all(tmp_path, engine):
    torch.manual_seed(1)
    net = saturate_(LSTMTagger(), 3.0).eval()
    # the single linear layer is found from the weights; the activation cannot be
    model = convert(net, tmp_path, head="hidden2out,sigmoid", output="all")
    x = torch.randn(7, 3, 10)  # (seq, batch, feature): nn.LSTM's default layout
    with torch.no_grad():
        expect = net(x).transpose(0, 1).numpy()  # rnnjit is batch-first
    y = model.predict(x.transpose(0, 1).numpy(), engine=engine)
    assert y.shape == (3, 7, 1)
    assert max_abs(y, expect) <= TOL["float32"]


def test_head_is_inferred_when_one_linear_layer_takes_the_rnn_output(tmp_path):
    torch.manual_seed(1)
    net = LSTMTagger()
    model = convert(net, tmp_path, output="all")
    assert [(s.kind, s.name) for s in model.head] == [("linear", "hidden2out")]


# ---------------------------------------------------------------------------
def test_gru_3_4_batch_first_saved_alone(tmp_path, engine):
    torch.manual_seed(2)
    gru = saturate_(nn.GRU(3, 4, batch_first=True), 3.0)
    model = convert(gru, tmp_path, output="all")
    assert model.spec.cell == "gru" and model.spec.prefix == "" and model.head == ()
    x = torch.randn(2, 5, 3)
    with torch.no_grad():
        out, hn = gru(x)
    y, hn_r = model.predict(x.numpy(), return_state=True, engine=engine)
    assert max_abs(y, out.numpy()) <= TOL["float32"]
    assert hn_r.shape == (1, 2, 4)
    assert max_abs(hn_r, hn.numpy()) <= TOL["float32"]
    final = model.predict(x.numpy(), output="final", engine=engine)
    assert max_abs(final, hn[0].numpy()) <= TOL["float32"]


# ---------------------------------------------------------------------------
def test_lstm_with_proj_size_and_given_h0_c0(tmp_path, engine):
    torch.manual_seed(3)
    lstm = saturate_(nn.LSTM(4, 5, batch_first=True, proj_size=3), 3.0)
    model = convert(lstm, tmp_path, output="all")
    assert (model.spec.hidden_size, model.spec.proj_size) == (5, 3)
    x = torch.randn(2, 6, 4)
    h0 = torch.randn(1, 2, 3)
    c0 = torch.randn(1, 2, 5)
    with torch.no_grad():
        out, (hn, cn) = lstm(x, (h0, c0))
    y, (hn_r, cn_r) = model.predict(x.numpy(), h0=h0.numpy(), c0=c0.numpy(), return_state=True, engine=engine)
    assert y.shape == (2, 6, 3) and hn_r.shape == (1, 2, 3) and cn_r.shape == (1, 2, 5)
    assert max_abs(y, out.numpy()) <= TOL["float32"]
    assert max_abs(hn_r, hn.numpy()) <= TOL["float32"]
    assert max_scaled(cn_r, cn.numpy()) <= TOL["float32"]


# ---------------------------------------------------------------------------
def test_pytorch_docs_lstm_example_reproduced(tmp_path, engine):
    torch.manual_seed(4)
    rnn = nn.LSTM(10, 20, 2)
    input = torch.randn(5, 3, 10)
    h0 = torch.randn(2, 3, 20)
    c0 = torch.randn(2, 3, 20)
    with torch.no_grad():
        output, (hn, cn) = rnn(input, (h0, c0))

    model = convert(rnn, tmp_path, output="all")
    y, (hn_r, cn_r) = model.predict(
        input.transpose(0, 1).numpy(), h0=h0.numpy(), c0=c0.numpy(), return_state=True, engine=engine
    )
    assert y.shape == (3, 5, 20) and hn_r.shape == (2, 3, 20) and cn_r.shape == (2, 3, 20)
    assert max_abs(y, output.transpose(0, 1).numpy()) <= TOL["float32"]
    assert max_abs(hn_r, hn.numpy()) <= TOL["float32"]
    assert max_scaled(cn_r, cn.numpy()) <= TOL["float32"]


# ---------------------------------------------------------------------------
class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 6)  # a linear layer forward() never uses: dropped with --ignore
        self.encoder = nn.Module()
        self.encoder.lstm = nn.LSTM(4, 6, num_layers=2, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(12, 3)

    def forward(self, x):
        out, _ = self.encoder.lstm(x)
        return torch.softmax(self.fc(out[:, -1]), dim=-1)


def test_rnn_as_a_submodule_under_dataparallel_module_prefix(tmp_path, engine):
    torch.manual_seed(5)
    net = saturate_(Encoder(), 3.0).eval()
    wrapped = nn.DataParallel(net)
    sd = wrapped.state_dict()
    assert all(k.startswith("module.") for k in sd)
    model = convert(sd, tmp_path, head="fc,softmax", ignore=["embed"])
    assert model.spec.prefix == "encoder.lstm." and model.spec.bidirectional
    x = torch.randn(3, 8, 4)
    with torch.no_grad():
        expect = net(x).numpy()
    assert max_abs(model.predict(x.numpy(), engine=engine), expect) <= TOL["float32"]
    # the bundle keeps PyTorch's keys of the unwrapped model
    keys = set(np.load(tmp_path / "bundle.npz", allow_pickle=False).files)
    assert "encoder.lstm.weight_ih_l1_reverse" in keys and "fc.weight" in keys


def test_checkpoint_dict_with_optimizer_state(tmp_path, engine):
    torch.manual_seed(6)
    net = saturate_(Encoder(), 3.0).eval()
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(2, 3, 4)).sum().backward()
    opt.step()
    torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    model = rnnjit.convert(tmp_path / "ckpt.pth", tmp_path / "b.npz", head="fc,softmax", ignore=["embed"])
    x = torch.randn(2, 5, 4)
    with torch.no_grad():
        expect = net(x).numpy()
    assert max_abs(rnnjit.load(tmp_path / "b.npz").predict(x.numpy(), engine=engine), expect) <= TOL["float32"]
    assert max_abs(model.predict(x.numpy(), engine=engine), expect) <= TOL["float32"]


# ---------------------------------------------------------------------------
class ConvHeadGRU(nn.Module):
    """GRU, then a Conv1d(kernel_size=1) over channels per step: a linear layer in disguise."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(3, 5, batch_first=True)
        self.conv = nn.Conv1d(5, 2, kernel_size=1)

    def forward(self, x):
        out, _ = self.gru(x)  # (B, T, 5)
        return torch.log_softmax(self.conv(out.transpose(1, 2)).transpose(1, 2), dim=-1)


def test_conv1d_kernel_size_one_head(tmp_path, engine):
    torch.manual_seed(7)
    net = saturate_(ConvHeadGRU(), 3.0).eval()
    assert net.state_dict()["conv.weight"].shape == (2, 5, 1)
    model = convert(net, tmp_path, head="conv,log_softmax", output="all")
    x = torch.randn(3, 6, 3)
    with torch.no_grad():
        expect = net(x).numpy()
    assert max_abs(model.predict(x.numpy(), engine=engine), expect) <= TOL["float32"]
    # and the bundle loads back into the torch module
    npz = np.load(tmp_path / "bundle.npz", allow_pickle=False)
    net2 = ConvHeadGRU()
    net2.load_state_dict({k: torch.from_numpy(npz[k]) for k in npz.files if not k.startswith("__")})
    with torch.no_grad():
        np.testing.assert_array_equal(net2(x).numpy(), expect)


# ---------------------------------------------------------------------------
class Seq2Seq(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.GRU(3, 4, batch_first=True)
        self.decoder = nn.LSTM(4, 4, batch_first=True)
        self.out = nn.Linear(4, 2)


def test_several_recurrent_modules_need_rnn_prefix(tmp_path, engine):
    torch.manual_seed(8)
    net = saturate_(Seq2Seq(), 3.0)
    torch.save(net.state_dict(), tmp_path / "s2s.pth")
    with pytest.raises(rnnjit.ArchitectureError) as exc:
        rnnjit.convert(tmp_path / "s2s.pth", tmp_path / "b.npz")
    msg = str(exc.value)
    assert "'encoder'" in msg and "'decoder'" in msg and "rnn_prefix" in msg.replace("-", "_")
    assert "chain='encoder,decoder,out'" in msg
    assert "\n" not in msg
    assert not (tmp_path / "b.npz").exists()

    model = rnnjit.convert(tmp_path / "s2s.pth", tmp_path / "b.npz", rnn_prefix="decoder", head="out",
                           ignore=["encoder"])
    assert model.spec.cell == "lstm" and model.spec.prefix == "decoder."
    x = torch.randn(2, 5, 4)
    with torch.no_grad():
        out, _ = net.decoder(x)
        expect = net.out(out[:, -1]).numpy()
    assert max_abs(model.predict(x.numpy(), engine=engine), expect) <= TOL["float32"]
