"""Test helpers: build PyTorch modules, saturate them, run them, convert them.

torch is the oracle. Every parity test goes through the path a user takes:
torch module -> ``torch.save(state_dict)`` -> `rnnjit.convert` -> `rnnjit.load`
-> ``Model.predict``; `torch_forward` computes what PyTorch itself returns for
the same batch (``pack_padded_sequence`` for variable lengths).
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnjit
from rnnjit.engines import numba_available


def modules(**named) -> nn.Module:
    """A module holding ``named`` children in order (state_dict keys ``name.weight``, ...)."""
    m = nn.Module()
    for name, child in named.items():
        m.add_module(name, child)
    return m


def LSTM(i: int = 3, h: int = 4, **kw) -> nn.LSTM:  # noqa: N802 - reads as the module it builds
    """A batch-first ``nn.LSTM(i, h)`` (the small recurrent module of the model-mistake and guess tables)."""
    return nn.LSTM(i, h, batch_first=True, **kw)


def available_engines() -> list[str]:
    """``numpy`` always; ``numba`` once `rnnjit.kernels` provides the engine and numba loads."""
    engines = ["numpy"]
    try:
        kernels = importlib.import_module("rnnjit.kernels")
    except ImportError:
        return engines
    if hasattr(kernels, "run") and hasattr(kernels, "prepare") and numba_available():
        engines.append("numba")
    return engines


ENGINES = available_engines()

TORCH_CLASS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn_tanh": nn.RNN, "rnn_relu": nn.RNN}
TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}
# Max abs error against torch promised by the project (DESIGN, issue #2).
TOL = {"float32": 1e-5, "float64": 1e-10}
# Weight multipliers. Trained models are not at init scale: x3 drives the gates
# into saturation. A relu RNN has no gates and grows geometrically with its
# weights (x3 gives values ~1e2 after a few steps, where 1e-5 absolute is below
# float32 resolution), so it gets a milder push.
SCALE = {"lstm": 3.0, "gru": 3.0, "rnn_tanh": 3.0, "rnn_relu": 1.5}

ACTIVATION_MODULES = {
    "sigmoid": nn.Sigmoid,
    "softmax": lambda: nn.Softmax(dim=-1),
    "log_softmax": lambda: nn.LogSoftmax(dim=-1),
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "identity": nn.Identity,
}


@dataclass(frozen=True)
class Arch:
    """A recurrent module as its constructor sees it (plus the rnnjit cell name)."""

    cell: str
    input_size: int = 3
    hidden_size: int = 5
    num_layers: int = 1
    bidirectional: bool = False
    bias: bool = True
    proj_size: int = 0

    @property
    def D(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def h_out(self) -> int:
        return self.proj_size or self.hidden_size

    @property
    def out_size(self) -> int:
        return self.D * self.h_out

    def with_(self, **kw) -> Arch:
        return replace(self, **kw)


def build_rnn(arch: Arch, *, batch_first: bool = True) -> nn.Module:
    kwargs = dict(
        num_layers=arch.num_layers,
        bidirectional=arch.bidirectional,
        bias=arch.bias,
        batch_first=batch_first,
    )
    if arch.cell == "lstm":
        kwargs["proj_size"] = arch.proj_size
    elif arch.cell.startswith("rnn_"):
        kwargs["nonlinearity"] = arch.cell[4:]
    return TORCH_CLASS[arch.cell](arch.input_size, arch.hidden_size, **kwargs)


def build_head(tokens, in_features: int, *, prefix: str = "head") -> tuple[nn.Sequential, str]:
    """Build an ``nn.Sequential`` head from tokens and return it with rnnjit's head string.

    Tokens are ``"linear:N"`` (an ``nn.Linear`` with N outputs),
    ``"linear_nobias:N"`` or an activation name. The head string names linear
    layers by their state_dict prefix (``head.0``), as `rnnjit.convert` expects.
    """
    layers, names = [], []
    width = in_features
    for tok in tokens:
        if tok.startswith("linear"):
            kind, n = tok.split(":")
            layers.append(nn.Linear(width, int(n), bias=kind == "linear"))
            names.append(f"{prefix}.{len(layers) - 1}")
            width = int(n)
        else:
            layers.append(ACTIVATION_MODULES[tok]())
            names.append(tok)
    return nn.Sequential(*layers), ",".join(names)


class Net(nn.Module):
    """An RNN (attribute ``rnn``, batch-first) followed by an ``nn.Sequential`` head."""

    def __init__(self, arch: Arch, head_tokens=(), *, seed: int = 0, scale: float | None = None):
        super().__init__()
        torch.manual_seed(seed)
        self.arch = arch
        self.rnn = build_rnn(arch)
        self.head, self.head_spec = build_head(head_tokens, arch.out_size)
        saturate_(self, SCALE[arch.cell] if scale is None else scale)


def saturate_(module: nn.Module, scale: float) -> nn.Module:
    """Multiply every parameter in place, as training away from init does."""
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(scale)
    return module


def as_dtype(module: nn.Module, dtype: str) -> nn.Module:
    """A copy of ``module`` in ``dtype`` (float64 copies hold the same float32 values)."""
    return copy.deepcopy(module).to(TORCH_DTYPE[dtype])


# ----------------------------------------------------------------- torch side
def torch_state(h0, c0, arch: Arch, batch: int, dtype):
    """PyTorch's ``hx`` for the given numpy h0/c0 (None when both are None)."""
    if h0 is None and c0 is None:
        return None
    ld = arch.num_layers * arch.D
    h = torch.zeros(ld, batch, arch.h_out, dtype=dtype) if h0 is None else torch.from_numpy(h0).to(dtype)
    if arch.cell != "lstm":
        return h
    c = torch.zeros(ld, batch, arch.hidden_size, dtype=dtype) if c0 is None else torch.from_numpy(c0).to(dtype)
    return (h, c)


def torch_rnn(rnn: nn.Module, arch: Arch, x, lengths=None, h0=None, c0=None):
    """Run a batch-first torch RNN on padded numpy ``x``; packed when ``lengths`` is given.

    Returns numpy ``(out (B, T, D*H_out) zero at padding, hn, cn-or-None)``.
    """
    dtype = next(rnn.parameters()).dtype
    B, T, _ = x.shape
    xt = torch.from_numpy(np.asarray(x)).to(dtype)
    hx = torch_state(h0, c0, arch, B, dtype)
    with torch.no_grad():
        if lengths is None:
            out, state = rnn(xt, hx)
        else:
            packed = pack_padded_sequence(
                xt, torch.as_tensor(np.asarray(lengths), dtype=torch.int64), batch_first=True, enforce_sorted=False
            )
            out, state = rnn(packed, hx)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
    hn, cn = state if arch.cell == "lstm" else (state, None)
    return out.numpy(), hn.numpy(), None if cn is None else cn.numpy()


def torch_forward(net: Net, x, lengths=None, h0=None, c0=None, output: str = "last"):
    """What PyTorch gives for ``net`` on this batch, in rnnjit's output layout.

    Returns ``(y, hn, cn)``: y is (B, O) for "last"/"final" and (B, T, O) for
    "all" with zeros at padded steps.
    """
    arch = net.arch
    B, T, _ = x.shape
    out, hn, cn = torch_rnn(net.rnn, arch, x, lengths, h0, c0)
    lens = np.full(B, T) if lengths is None else np.asarray(lengths)
    if output == "last":
        y = out[np.arange(B), lens - 1]
    elif output == "final":
        last = arch.num_layers - 1
        y = np.concatenate([hn[last * arch.D + d] for d in range(arch.D)], axis=1)
    elif output == "all":
        y = out
    else:
        raise ValueError(output)
    with torch.no_grad():
        y = net.head(torch.from_numpy(np.ascontiguousarray(y))).numpy()
    if output == "all":
        y = np.where((np.arange(T)[None, :] < lens[:, None])[:, :, None], y, 0)
    return y, hn, cn


# ---------------------------------------------------------------- rnnjit side
def save_state_dict(module: nn.Module, path: Path, *, prefix: str = "") -> Path:
    """``torch.save(module.state_dict(), path)``, optionally with every key prefixed."""
    sd = module.state_dict()
    if prefix:
        sd = type(sd)((prefix + k, v) for k, v in sd.items())
    torch.save(sd, path)
    return Path(path)


def convert_and_load(
    module: nn.Module,
    tmp_dir: Path,
    *,
    name: str = "model",
    dtype: str | None = None,
    **convert_kwargs,
):
    """Save ``module``'s state_dict, convert it to a bundle and load the bundle.

    Returns ``(model, bundle_path)``. ``Net`` modules get their head string and
    nonlinearity passed to `rnnjit.convert` unless given.
    """
    tmp_dir = Path(tmp_dir)
    pth = save_state_dict(module, tmp_dir / f"{name}.pth")
    if isinstance(module, Net):
        convert_kwargs.setdefault("head", module.head_spec or None)
        if module.arch.cell.startswith("rnn_"):
            convert_kwargs.setdefault("nonlinearity", module.arch.cell[4:])
    bundle = tmp_dir / f"{name}.npz"
    rnnjit.convert(pth, bundle, **convert_kwargs)
    return rnnjit.load(bundle, dtype=dtype), bundle


# --------------------------------------------------------------------- data
def make_batch(rng: np.random.Generator, arch: Arch, B: int, T: int, *, variable: bool, dtype="float32"):
    """A padded batch and its lengths (None when every sequence is T long).

    Padded steps hold a large constant, so a kernel that reads padding shows up.
    """
    x = rng.standard_normal((B, T, arch.input_size))
    lengths = None
    if variable:
        lengths = rng.integers(1, T + 1, size=B)
        if B:
            lengths[0] = T
        x[np.arange(T)[None, :] >= lengths[:, None]] = 7.0
    return x.astype(dtype), lengths


def make_state(rng: np.random.Generator, arch: Arch, B: int, dtype="float32"):
    ld = arch.num_layers * arch.D
    h0 = rng.standard_normal((ld, B, arch.h_out)).astype(dtype)
    c0 = rng.standard_normal((ld, B, arch.hidden_size)).astype(dtype) if arch.cell == "lstm" else None
    return h0, c0


def max_scaled(a, b) -> float:
    """Max of ``|a - b| / max(1, |b|)``: absolute error where |b| <= 1, relative above.

    For LSTM cell states: c is a running sum that reaches |c| ~ 30 over
    T=1000 saturated steps, where one float32 ulp is 2e-6 and torch itself is
    6e-6 away from float64; an absolute 1e-5 there measures luck, not
    correctness. Outputs and h are compared in absolute terms (`max_abs`).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shape {a.shape} != {b.shape}"
    return float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)))) if a.size else 0.0


def max_abs(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shape {a.shape} != {b.shape}"
    return float(np.max(np.abs(a - b))) if a.size else 0.0
