"""Real training checkpoints: objects pickled next to the weights, and the usual wrappers.

Every file here is written by ``torch.save`` from real objects (argparse, numpy,
pathlib, the user's dataclasses in tests/formats_user.py, torch.compile,
AveragedModel); rnnjit must find the weights, set the rest aside as inert
placeholders, and never import or call anything the file names.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from formats_user import Phase, Split, TouchOnReduce, Tracker, TrainConfig
from torch.optim.swa_utils import AveragedModel
from torch_models import Arch, Net, make_batch, torch_forward

import rnnjit
from rnnjit.errors import WeightFileError
from rnnjit.formats import read_state_dict

SAVES = {
    "zip": lambda obj, path: torch.save(obj, path),
    "legacy": lambda obj, path: torch.save(obj, path, _use_new_zipfile_serialization=False),
}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _net() -> Net:
    return Net(Arch("lstm", input_size=3, hidden_size=4), ("linear:1", "sigmoid"))


def _same(sd: dict, ref: dict) -> None:
    assert list(sd) == list(ref)
    for key, t in ref.items():
        np.testing.assert_array_equal(sd[key], t.detach().numpy(), err_msg=key)


def _real_checkpoint(net: Net) -> dict:
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    args = argparse.Namespace(hidden=4, lr=1e-3, data=pathlib.Path("/data/train"), layers=[1, 2])
    return {
        "model": net.state_dict(),
        "optimizer": opt.state_dict(),
        "args": args,
        "epoch": np.int64(3),
        "best_loss": np.float32(0.25),
        "path": pathlib.Path("runs/7/best.pth"),
        "cfg": TrainConfig(hidden=4, lr=0.1),
        "phase": Phase.EVAL,
        "tracker": Tracker(),
        "feature_mean": np.arange(3.0),
        "dtype": np.dtype("float32"),
    }


def _placeholder_names(info) -> dict[str, str]:
    """``{"args": "argparse.Namespace", ...}`` from ``info["placeholders"]``."""
    out = {}
    for entry in info["placeholders"]:
        name, _, where = entry.partition(" (at ")
        out[where.rstrip(")").strip("'")] = name
    return out


# ------------------------------------------------------- objects beside weights


@pytest.mark.parametrize("fmt", list(SAVES), ids=lambda f: f"fmt={f}")
def test_checkpoint_with_namespace_numpy_pathlib_and_user_classes_loads(tmp_path, fmt):
    net = _net()
    SAVES[fmt](_real_checkpoint(net), tmp_path / "ckpt.pth")
    sd, info = read_state_dict(tmp_path / "ckpt.pth")
    _same(sd, net.state_dict())
    assert info["unwrapped"] == "model"
    names = _placeholder_names(info)
    assert names["args"] == "argparse.Namespace"
    assert names["epoch"].endswith("core.multiarray.scalar") and names["best_loss"] == names["epoch"]
    assert names["path"].startswith("pathlib.") and names["path"].endswith("PosixPath")
    assert names["cfg"] == "formats_user.TrainConfig"
    assert names["phase"] == "formats_user.Phase"
    assert names["tracker"] == "formats_user.Tracker"
    assert names["feature_mean"].endswith("core.multiarray._reconstruct")  # a numpy array is not a weight
    assert names["dtype"] == "numpy.dtype"
    assert len(info["placeholders"]) == 9
    assert "args (at" not in " ".join(info["placeholders"])  # the Namespace's insides are not listed


def test_enum_pickled_by_name_and_simple_namespace_load(tmp_path):
    net = _net()
    ckpt = {"model": net.state_dict(), "split": Split.VALID, "hp": types.SimpleNamespace(lr=0.1)}
    torch.save(ckpt, tmp_path / "c.pth")
    sd, info = read_state_dict(tmp_path / "c.pth")
    _same(sd, net.state_dict())
    assert info["placeholders"] == ["builtins.getattr (at 'split')", "types.SimpleNamespace (at 'hp')"]


def test_converted_checkpoint_scores_like_torch(tmp_path):
    net = _net()
    torch.save(_real_checkpoint(net), tmp_path / "ckpt.pth")
    model = rnnjit.convert(tmp_path / "ckpt.pth", tmp_path / "m.npz", head=net.head_spec)
    x, lengths = make_batch(np.random.default_rng(0), net.arch, B=3, T=5, variable=True)
    want, _, _ = torch_forward(net, x, lengths)
    np.testing.assert_allclose(model.predict(x.astype(np.float32), lengths=lengths), want, rtol=1e-5, atol=1e-6)


def test_reading_a_checkpoint_imports_nothing_it_names(tmp_path):
    """In a fresh interpreter where importing any module the file names fails (poisoned in sys.modules)."""
    torch.save(_real_checkpoint(_net()), tmp_path / "ckpt.pth")
    code = (
        "import sys\n"
        "from rnnjit.formats import read_state_dict\n"
        "for name in ('formats_user', 'argparse', 'pathlib', 'enum', 'dataclasses', 'torch', 'numpy.core'):\n"
        "    sys.modules[name] = None  # an import of it now raises\n"
        f"sd, info = read_state_dict({str(tmp_path / 'ckpt.pth')!r})\n"
        "print(len(sd), len(info['placeholders']))"
    )
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(len(_net().state_dict())), "9"]


# ------------------------------------------------------ placeholders are inert


def test_a_user_function_in_the_file_is_never_called(tmp_path):
    marker = tmp_path / "pwned"
    net = _net()
    torch.save({"model": net.state_dict(), "hook": TouchOnReduce(str(marker))}, tmp_path / "c.pth")
    sd, info = read_state_dict(tmp_path / "c.pth")
    _same(sd, net.state_dict())
    assert info["placeholders"] == ["formats_user.touch (at 'hook')"]
    assert not marker.exists()


def test_a_placeholder_among_the_weights_is_an_error_not_a_weight(tmp_path):
    marker = tmp_path / "pwned"
    sd = dict(_net().state_dict())
    sd["head.0.bias"] = TouchOnReduce(str(marker))
    torch.save(sd, tmp_path / "c.pth")
    with pytest.raises(WeightFileError, match=r"entry head\.0\.bias of the state_dict is pickled as formats_user\.touch"):
        read_state_dict(tmp_path / "c.pth")
    assert not marker.exists()


def test_a_tensor_saved_through_an_unknown_rebuild_function_is_refused(tmp_path):
    """A tensor with Python attributes pickles through torch._tensor._rebuild_from_type_v2: never guessed."""
    sd = dict(_net().state_dict())
    tagged = sd["rnn.weight_hh_l0"].clone()
    tagged.note = "tied"
    sd["rnn.weight_hh_l0"] = tagged
    torch.save(sd, tmp_path / "c.pth")
    with pytest.raises(WeightFileError, match=r"rnn\.weight_hh_l0 .*pickled as torch\._tensor\._rebuild_from_type_v2"):
        read_state_dict(tmp_path / "c.pth")


def test_whole_pickled_model_inside_a_checkpoint_is_named(tmp_path):
    torch.save({"model": _net(), "epoch": 2}, tmp_path / "c.pth")  # the user's class: only its __dict__ tells
    with pytest.raises(WeightFileError, match=r"whole pickled model: torch_models\.Net \(at 'model', a pickled nn\.Module\)"):
        read_state_dict(tmp_path / "c.pth")


def test_numpy_arrays_pickled_as_weights_get_a_hint(tmp_path):
    torch.save({k: v.numpy() for k, v in _net().state_dict().items()}, tmp_path / "np.pth")
    with pytest.raises(WeightFileError, match=r"objects set aside: numpy\..*_reconstruct \(at 'rnn\..*np\.savez"):
        read_state_dict(tmp_path / "np.pth")


# ------------------------------------------------------------- wrappers (#7)


def test_pytorch_tutorial_checkpoint_is_unwrapped(tmp_path):
    """https://pytorch.org/tutorials/beginner/saving_loading_models.html: 'loss' is a 0-d tensor at the top."""
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    loss = net.head(torch.randn(2, 4)).sum()
    loss.backward()
    opt.step()
    ckpt = {"epoch": 5, "model_state_dict": net.state_dict(), "optimizer_state_dict": opt.state_dict(), "loss": loss}
    torch.save(ckpt, tmp_path / "tutorial.pt")
    sd, info = read_state_dict(tmp_path / "tutorial.pt")
    _same(sd, net.state_dict())
    assert info["unwrapped"] == "model_state_dict"
    assert info["skipped"] == ["epoch", "optimizer_state_dict", "loss"]


def _compiled(module: torch.nn.Module) -> torch.nn.Module:
    # torch.compile wraps lazily: the state_dict carries _orig_mod. without compiling anything.
    return torch.compile(module)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    "wrap, prefix",
    [
        (lambda m: _compiled(m), "_orig_mod."),
        (lambda m: torch.nn.DataParallel(_compiled(m)), "module._orig_mod."),
        (lambda m: _compiled(torch.nn.DataParallel(m)), "_orig_mod.module."),
        (lambda m: {"model": _compiled(m).state_dict(), "step": 10}, "_orig_mod."),
    ],
    ids=["compile", "DataParallel(compile)", "compile(DataParallel)", "checkpoint(compile)"],
)
def test_torch_compile_prefix_is_stripped(tmp_path, wrap, prefix):
    net = _net()
    wrapped = wrap(net)
    obj = wrapped if isinstance(wrapped, dict) else wrapped.state_dict()
    assert all(k.startswith(prefix) for k in (obj["model"] if isinstance(obj, dict) and "model" in obj else obj))
    torch.save(obj, tmp_path / "c.pth")
    sd, info = read_state_dict(tmp_path / "c.pth")
    _same(sd, net.state_dict())
    assert info["stripped_prefix"] == prefix
    fresh = _net()
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})  # plain module keys: loads as is


@pytest.mark.parametrize("compiled", [False, True], ids=lambda c: f"{c=}")
@pytest.mark.parametrize("in_checkpoint", [False, True], ids=lambda c: f"{c=}")
def test_averaged_model_prefix_and_counter(tmp_path, compiled, in_checkpoint):
    net = _net()
    swa = AveragedModel(_compiled(net) if compiled else net)
    swa.update_parameters(net)
    state = swa.state_dict()
    assert "n_averaged" in state and int(state["n_averaged"]) == 1
    obj = {"swa_state_dict": state, "optimizer": {}} if in_checkpoint else state
    torch.save(obj, tmp_path / "swa.pth")
    sd, info = read_state_dict(tmp_path / "swa.pth")
    _same(sd, net.state_dict())  # n_averaged is not a weight: gone
    assert info["stripped_prefix"] == ("module._orig_mod." if compiled else "module.")
    assert "n_averaged" in info["skipped"]
    _net().load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})


def test_n_averaged_is_kept_where_it_is_not_an_averaged_models_counter(tmp_path):
    ref = {"n_averaged": torch.tensor(3), "rnn.weight": torch.ones(2)}  # no module. prefix: a model's own buffer
    torch.save(ref, tmp_path / "c.pth")
    sd, info = read_state_dict(tmp_path / "c.pth")
    assert list(sd) == ["n_averaged", "rnn.weight"] and info["skipped"] == []
