"""convert(): architecture inference, overrides, errors, verify, and a torch-free process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import rnnjit
from rnnjit.errors import ArchitectureError, BundleError
from rnnjit.verify import compare_weights, verify_reference

torch = pytest.importorskip("torch")
nn = torch.nn
REPO = Path(__file__).resolve().parent.parent


class Classifier(nn.Module):
    def __init__(self, rnn: nn.Module, out: int = 1):
        super().__init__()
        self.rnn = rnn
        width = rnn.hidden_size if getattr(rnn, "proj_size", 0) == 0 else rnn.proj_size
        self.fc = nn.Linear(width * (2 if rnn.bidirectional else 1), out)


def save(module: nn.Module, path: Path) -> Path:
    torch.save(module.state_dict(), path)
    return path


@pytest.mark.parametrize(
    "rnn, cell",
    [
        (nn.LSTM(3, 5, num_layers=2, bidirectional=True), "lstm"),
        (nn.LSTM(3, 6, proj_size=2), "lstm"),
        (nn.GRU(3, 4, bias=False), "gru"),
        (nn.RNN(3, 4, num_layers=3), "rnn_tanh"),
    ],
    ids=["lstm-2layer-bidir", "lstmp", "gru-nobias", "rnn-3layer"],
)
def test_inference_recovers_constructor_arguments(tmp_path, rnn, cell):
    model = rnnjit.convert(save(Classifier(rnn), tmp_path / "m.pth"), tmp_path / "b.npz")
    s = model.spec
    assert (s.cell, s.input_size, s.hidden_size, s.num_layers) == (cell, 3, rnn.hidden_size, rnn.num_layers)
    assert (s.bidirectional, s.bias, s.proj_size, s.prefix) == (rnn.bidirectional, rnn.bias, rnn.proj_size, "rnn.")
    assert [st.name for st in model.head] == ["fc"]  # the single linear layer, no activation
    assert model.output == "last"


def test_relu_rnn_needs_the_flag_and_then_matches_torch(tmp_path):
    torch.manual_seed(0)
    rnn = nn.RNN(3, 4, nonlinearity="relu", batch_first=True)
    path = save(rnn, tmp_path / "m.pth")
    x = torch.randn(2, 5, 3)
    expected = rnn(x)[0][:, -1].detach().numpy()
    relu = rnnjit.convert(path, tmp_path / "relu.npz", nonlinearity="relu")
    tanh = rnnjit.convert(path, tmp_path / "tanh.npz")
    assert relu.spec.cell == "rnn_relu" and tanh.spec.cell == "rnn_tanh"
    np.testing.assert_allclose(relu.predict(x.numpy(), engine="numpy"), expected, atol=1e-6)
    assert not np.allclose(tanh.predict(x.numpy(), engine="numpy"), expected, atol=1e-3)


def test_several_recurrent_modules_are_listed_and_one_can_be_chosen(tmp_path):
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.GRU(3, 4)
            self.decoder = nn.LSTM(4, 4)

    path = save(Two(), tmp_path / "two.pth")
    with pytest.raises(ArchitectureError, match=r"'encoder', 'decoder'.*chain='encoder,decoder'.*or pick "
                                                r"one with rnn_prefix$"):
        rnnjit.convert(path, tmp_path / "b.npz")
    assert not (tmp_path / "b.npz").exists()
    # picking one drops the other's tensors: refused unless that is said out loud
    with pytest.raises(ArchitectureError, match=r"encoder\.weight_ih_l0.*\(a GRU\?\).*ignore=\['encoder'\]$"):
        rnnjit.convert(path, tmp_path / "b.npz", rnn_prefix="decoder")
    model = rnnjit.convert(path, tmp_path / "b.npz", rnn_prefix="decoder", ignore=["encoder"])
    assert model.spec.cell == "lstm" and model.config["ignored"] == ["encoder"]
    with pytest.raises(ArchitectureError, match="'nope.'.*found 'encoder.', 'decoder.'"):
        rnnjit.convert(path, tmp_path / "c.npz", rnn_prefix="nope")


def test_chained_linear_layers_need_an_explicit_head(tmp_path):
    class Deep(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(3, 4, batch_first=True)
            self.head = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))

    torch.manual_seed(1)
    net = Deep()
    path = save(net, tmp_path / "deep.pth")
    with pytest.raises(ArchitectureError, match=r"head\.0 -> head\.2.*head='head\.0,relu,head\.2,sigmoid'"):
        rnnjit.convert(path, tmp_path / "b.npz")
    model = rnnjit.convert(path, tmp_path / "b.npz", head="head.0,relu,head.2,softmax", output="final")
    x = torch.randn(4, 6, 3)
    _, hn = net.gru(x)
    expected = torch.softmax(net.head(hn[-1]), -1).detach().numpy()
    np.testing.assert_allclose(model.predict(x.numpy(), engine="numpy"), expected, atol=1e-6)
    assert model.output_dim == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"head": "fc,fc"}, "'fc' takes 4 inputs but receives 1"),
        ({"head": "lstm,sigmoid"}, "neither an activation .* nor a linear layer .*linear layers: fc"),
        ({"nonlinearity": "relu"}, "nonlinearity applies to nn.RNN only"),
        ({"output": "middle"}, "output mode 'middle' is not known"),
        ({"feature_names": ["a", "b"]}, "2 feature names .* input_size=3"),
        ({"config": {"hed": "fc"}}, r"unknown config keys \['hed'\]"),
    ],
    ids=["head-width", "head-unknown-name", "nonlinearity-for-lstm", "output-mode", "feature-names", "config-key"],
)
def test_bad_overrides_are_one_line_errors(tmp_path, kwargs, message):
    path = save(Classifier(nn.LSTM(3, 4)), tmp_path / "m.pth")
    with pytest.raises(ArchitectureError, match=message) as info:
        rnnjit.convert(path, tmp_path / "b.npz", **kwargs)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "b.npz").exists()


def test_config_mapping_and_explicit_arguments(tmp_path):
    path = save(Classifier(nn.GRU(3, 4)), tmp_path / "m.pth")
    cfg = {"head": "fc,sigmoid", "output": "final", "feature_names": "a,b,c"}
    model = rnnjit.convert(path, tmp_path / "b.npz", config=cfg, output="last")
    assert model.output == "last"  # the explicit argument wins over the config
    assert [s.name for s in model.head] == ["fc", "sigmoid"]
    assert model.feature_names == ["a", "b", "c"]


def test_bundle_is_self_describing_and_verifies(tmp_path):
    path = save(Classifier(nn.LSTM(3, 4, num_layers=2)), tmp_path / "m.pth")
    rnnjit.convert(path, tmp_path / "b.npz", head="fc,sigmoid")
    with np.load(tmp_path / "b.npz", allow_pickle=False) as npz:
        doc = json.loads(str(npz["__rnnjit__"]))
        keys = set(npz.files)
    assert doc["format"] == "rnnjit-bundle" and doc["format_version"] == 2
    assert doc["chain"][0]["rnn"]["cell"] == "lstm" and doc["dtype"] == "float32"
    assert doc["provenance"]["source"] == "m.pth" and len(doc["provenance"]["sha256"]) == 64
    assert keys == set(Classifier(nn.LSTM(3, 4, num_layers=2)).state_dict()) | {"__rnnjit__"}
    model = rnnjit.load(tmp_path / "b.npz")
    report = verify_reference(model, engine="numpy")
    assert report["ok"] and report["max_abs_error"] <= report["tolerance"]
    assert compare_weights(model, path)["ok"]


def test_verify_notices_changed_weights(tmp_path):
    net = Classifier(nn.GRU(3, 4))
    path = save(net, tmp_path / "m.pth")
    model = rnnjit.convert(path, tmp_path / "b.npz")
    with torch.no_grad():
        net.rnn.weight_hh_l0[0, 0] += 1.0
    save(net, path)
    report = compare_weights(model, path)
    assert not report["ok"] and report["different"] == ["rnn.weight_hh_l0"]
    model.weights["rnn.weight_hh_l0"][0, 0] += 1.0
    assert not verify_reference(model, engine="numpy")["ok"]


def test_bundle_without_reference_cannot_be_verified(tmp_path):
    path = save(nn.GRU(3, 4), tmp_path / "m.pth")
    model = rnnjit.convert(path, tmp_path / "b.npz", reference=False)
    with pytest.raises(BundleError, match="no reference input"):
        verify_reference(model)


def test_float64_models_stay_float64(tmp_path):
    net = nn.LSTM(3, 4, batch_first=True).double()
    model = rnnjit.convert(save(net, tmp_path / "m.pth"), tmp_path / "b.npz")
    assert model.dtype == np.float64
    x = torch.randn(2, 9, 3, dtype=torch.float64)
    expected = net(x)[0][:, -1].detach().numpy()
    np.testing.assert_allclose(model.predict(x.numpy(), engine="numpy"), expected, atol=1e-12)
    assert rnnjit.load(tmp_path / "b.npz", dtype="float32").predict(x.numpy(), engine="numpy").dtype == np.float32


def _run_isolated(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where importing torch (and, if asked, numba) fails."""
    script = tmp_path / "isolated.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=REPO, timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


def test_convert_and_score_in_a_process_without_torch(tmp_path):
    path = save(Classifier(nn.LSTM(3, 4)), tmp_path / "m.pth")
    result = _run_isolated(
        f"""
        import sys
        sys.modules["torch"] = None  # any import of torch now raises ImportError
        import numpy as np, rnnjit
        m = rnnjit.convert({str(path)!r}, {str(tmp_path / 'b.npz')!r}, head="fc,sigmoid")
        y = m.predict(np.ones((2, 3, 3), np.float32), engine="numpy")
        assert y.shape == (2, 1), y.shape
        print("ok", sorted(k for k, v in sys.modules.items() if v is not None and k.split(".")[0] in ("torch", "pyarrow", "typer")))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "[]"]


def test_numpy_engine_works_where_numba_cannot_be_imported(tmp_path):
    path = save(nn.GRU(3, 4), tmp_path / "m.pth")
    result = _run_isolated(
        f"""
        import sys
        sys.modules["numba"] = None  # the old-glibc case: numba fails to import
        import numpy as np, rnnjit
        from rnnjit.engines import default_engine
        m = rnnjit.convert({str(path)!r}, {str(tmp_path / 'b.npz')!r})
        print(default_engine(), m.predict(np.ones((1, 2, 3), np.float32)).shape)
        try:
            m.predict(np.ones((1, 2, 3), np.float32), engine="numba")
        except rnnjit.InputError as exc:
            print("error:", exc)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "numpy (1, 4)"
    assert lines[1].startswith("error: the numba engine cannot be loaded") and "engine='numpy'" in lines[1]


def test_checkpoint_notes_are_recorded_and_printed(tmp_path, monkeypatch):
    """What the reader skipped or found as non-tensor objects is kept in provenance and shown."""
    import rnnjit.formats
    from rnnjit.cli.inspect_cmd import checkpoint_notes

    path = save(Classifier(nn.GRU(3, 4)), tmp_path / "m.pth")
    real = rnnjit.formats.read_state_dict

    def read(p):
        sd, info = real(p)
        return sd, {**info, "skipped": ["optimizer", "n_averaged"], "placeholders": ["epoch: int"]}

    monkeypatch.setattr(rnnjit.formats, "read_state_dict", read)
    model = rnnjit.convert(path, tmp_path / "b.npz")
    prov = model.config["provenance"]
    assert prov["skipped"] == ["optimizer", "n_averaged"] and prov["placeholders"] == ["epoch: int"]
    assert checkpoint_notes(rnnjit.load(tmp_path / "b.npz")) == [
        "skipped (not weights): optimizer, n_averaged", "non-tensor objects in the checkpoint: epoch: int"]


def test_averaged_model_counter_is_not_an_unused_weight(tmp_path):
    """AveragedModel saves n_averaged beside the weights (and BatchNorm its num_batches_tracked)."""
    net = Classifier(nn.LSTM(3, 4))
    sd = {**net.state_dict(), "n_averaged": torch.tensor(7)}
    torch.save(sd, tmp_path / "swa.pth")
    model = rnnjit.convert(tmp_path / "swa.pth", tmp_path / "b.npz")
    assert "n_averaged" in model.config["provenance"]["non_weight_keys"]
