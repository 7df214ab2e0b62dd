"""The numba engine against the reference engine and against PyTorch.

Every cell x layers x directions x bias x proj x lengths x initial states x
output mode, float32 (max abs error 1e-5) and float64 (1e-10), with weights
scaled so the gates saturate; corner cases; a long sequence; the activations'
own error; thread handling; and that compile flags live only in config.py.
"""

from __future__ import annotations

import io
import itertools
import re
import tokenize
from pathlib import Path

import numba
import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnjit import kernels, reference
from rnnjit.spec import RNNSpec

TOL = {np.float32: 1e-5, np.float64: 1e-10}
# x3 saturates the gates; a relu RNN has none and grows geometrically with its
# weights, so it gets x1.5 and its tolerance is relative to its magnitude.
SCALE = {"lstm": 3.0, "lstmp": 3.0, "gru": 3.0, "rnn_tanh": 3.0, "rnn_relu": 1.5}
SELECTS = ("all", "last", "final", "sum", "mean", "max")  # the last three: pooled in the output pass
KERNEL_DIR = Path(kernels.__file__).parent


def build(cell, I, H, layers, bidir, bias, dtype, seed=0):
    """A torch module and (spec, weights) for it, weights scaled by SCALE[cell]."""
    torch.manual_seed(seed)
    proj = 3 if cell == "lstmp" else 0
    name = "lstm" if cell == "lstmp" else cell
    kw = dict(num_layers=layers, bidirectional=bidir, bias=bias, batch_first=True)
    if name == "lstm":
        mod = torch.nn.LSTM(I, H, proj_size=proj, **kw)
    elif name == "gru":
        mod = torch.nn.GRU(I, H, **kw)
    else:
        mod = torch.nn.RNN(I, H, nonlinearity=name[4:], **kw)
    with torch.no_grad():
        for p in mod.parameters():
            p.mul_(SCALE[cell])
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    mod = mod.to(tdt).eval()
    weights = {k: v.detach().numpy().copy() for k, v in mod.state_dict().items()}
    return mod, RNNSpec(name, I, H, layers, bidir, bias, proj), weights


def torch_run(mod, x, lengths, h0, c0):
    """What PyTorch returns: padded per-step outputs and final states (packed when lengths vary)."""
    B, T, _ = x.shape
    xt = torch.from_numpy(x)
    hx = None
    if h0 is not None:
        hx = (torch.from_numpy(h0), torch.from_numpy(c0)) if c0 is not None else torch.from_numpy(h0)
    with torch.inference_mode():
        if np.all(lengths == T):
            out, st = mod(xt, hx)
        else:
            packed = pack_padded_sequence(xt, torch.from_numpy(lengths), batch_first=True, enforce_sorted=False)
            out, st = mod(packed, hx)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
    hn, cn = st if isinstance(st, tuple) else (st, None)
    return out.numpy(), hn.numpy(), (cn.numpy() if cn is not None else None)


def max_err(a, b, rel=False):
    if a is None or b is None:
        assert a is None and b is None
        return 0.0
    assert a.shape == b.shape, (a.shape, b.shape)
    if a.size == 0:
        return 0.0
    err = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
    return err / max(1.0, float(np.max(np.abs(b)))) if rel else err


def pooled_tol(tol, select, T):
    """A sum over T steps adds up T per-step errors (each within ``tol``); the other selects keep ``tol``."""
    return tol * T if select == "sum" else tol


def check(cell, layers, bidir, bias, varlen, states, dtype, B=7, T=6, I=4, H=5, seed=0, torch_too=True):
    rng = np.random.default_rng(seed)
    mod, spec, weights = build(cell, I, H, layers, bidir, bias, dtype, seed)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    lengths = rng.integers(1, T + 1, B) if varlen else np.full(B, T)
    lengths = lengths.astype(np.int64)
    h_shape, c_shape = spec.state_shapes(B)
    h0 = rng.standard_normal(h_shape).astype(dtype) if states else None
    c0 = rng.standard_normal(c_shape).astype(dtype) if (states and c_shape) else None
    tol, rel = TOL[dtype], cell == "rnn_relu"
    prepared, ref_prepared = kernels.prepare(spec, weights), reference.prepare(spec, weights)
    for select in SELECTS:
        got = kernels.run(prepared, x, lengths, h0, c0, select, None)
        want = reference.run(ref_prepared, x, lengths, h0, c0, select)
        assert got[0].dtype == dtype and got[0].flags.c_contiguous
        for name, g, w in zip(("y", "hn", "cn"), got, want):
            bound = pooled_tol(tol, select, T) if name == "y" else tol
            assert max_err(g, w, rel) <= bound, f"{select} {name} vs reference: {max_err(g, w, rel):.3g}"
    if torch_too:
        y, hn, cn = kernels.run(prepared, x, lengths, h0, c0, "all", None)
        ty, thn, tcn = torch_run(mod, x, lengths, h0, c0)
        for name, g, w in zip(("y", "hn", "cn"), (y, hn, cn), (ty, thn, tcn)):
            assert max_err(g, w, rel) <= tol, f"{name} vs torch: {max_err(g, w, rel):.3g}"


GRID = [
    pytest.param(c, nl, bd, bs, vl, st, id=f"{c=}-{nl=}-{bd=}-{bs=}-{vl=}-{st=}".replace("'", ""))
    for c, nl, bd, bs, vl, st in itertools.product(
        ("lstm", "lstmp", "gru", "rnn_tanh", "rnn_relu"), (1, 2, 3), (False, True), (True, False), (True, False), (True, False)
    )
]


@pytest.mark.parametrize("cell, layers, bidir, bias, varlen, states", GRID)
def test_parity_float32(cell, layers, bidir, bias, varlen, states):
    # B=53: one full tile of 48 float32 sequences plus a partial one (the lanes path).
    check(cell, layers, bidir, bias, varlen, states, np.float32, B=53)


@pytest.mark.parametrize("cell, layers, bidir, bias, varlen, states", GRID[::3])
def test_parity_small_batch_float32(cell, layers, bidir, bias, varlen, states):
    # B=3: one sequence per tile (the matrix-vector path).
    check(cell, layers, bidir, bias, varlen, states, np.float32, B=3)


@pytest.mark.parametrize("cell, layers, bidir, bias, varlen, states", GRID[::2])
def test_parity_float64(cell, layers, bidir, bias, varlen, states):
    # B=29: a full tile of 24 float64 sequences plus a partial one.
    check(cell, layers, bidir, bias, varlen, states, np.float64, B=29)


@pytest.mark.parametrize("cell", ["lstm", "lstmp", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: f"dtype={d.__name__}")
@pytest.mark.parametrize(
    "B, T, varlen",
    [(1, 1, False), (1, 9, True), (50, 1, False), (2, 5, True)],
    ids=lambda v: str(v),
)
def test_corner_shapes(cell, dtype, B, T, varlen):
    check(cell, 2, True, True, varlen, True, dtype, B=B, T=T)


@pytest.mark.parametrize("cell", ["lstm", "lstmp", "gru", "rnn_tanh"])
@pytest.mark.parametrize("B", [50, 5], ids=lambda b: f"{b=}")
def test_all_lengths_different(cell, B):
    """Every sequence a different length (a permutation of 1..B), bidirectional."""
    mod, spec, weights = build(cell, 3, 6, 2, True, True, np.float32)
    rng = np.random.default_rng(1)
    lengths = rng.permutation(np.arange(1, B + 1)).astype(np.int64)
    x = rng.standard_normal((B, B, 3)).astype(np.float32)
    y, hn, cn = kernels.run(kernels.prepare(spec, weights), x, lengths, None, None, "all", None)
    ty, thn, tcn = torch_run(mod, x, lengths, None, None)
    assert max_err(y, ty) <= 1e-5 and max_err(hn, thn) <= 1e-5 and max_err(cn, tcn) <= 1e-5
    padding = np.arange(B)[None, :] >= lengths[:, None]
    assert np.all(y[padding] == 0)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_relu"])
def test_empty_batch(cell):
    _, spec, weights = build(cell, 4, 5, 2, True, True, np.float32)
    prepared = kernels.prepare(spec, weights)
    x = np.zeros((0, 6, 4), np.float32)
    for select, shape in (("all", (0, 6, 10)), ("last", (0, 10)), ("final", (0, 10))):
        y, hn, cn = kernels.run(prepared, x, np.zeros(0, np.int64), None, None, select, None)
        assert y.shape == shape and hn.shape == (4, 0, 5)
        assert (cn is None) == (cell != "lstm")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("B", [1, 48], ids=lambda b: f"{b=}")
def test_long_sequence_no_drift(cell, B):
    """T=2000 with saturated gates: errors must not accumulate along the sequence."""
    mod, spec, weights = build(cell, 4, 8, 1, False, True, np.float32, seed=3)
    x = np.random.default_rng(2).standard_normal((B, 2000, 4)).astype(np.float32)
    lengths = np.full(B, 2000, np.int64)
    y, hn, cn = kernels.run(kernels.prepare(spec, weights), x, lengths, None, None, "all", None)
    ty, thn, tcn = torch_run(mod, x, lengths, None, None)
    assert max_err(y, ty) <= 1e-5
    assert max_err(y[:, -100:], ty[:, -100:]) <= 1e-5
    assert max_err(hn, thn) <= 1e-5


def test_activation_error():
    """The float32 rational tanh and sigmoid, against float64 tanh on a dense grid."""
    from rnnjit.kernels.activations import evaluate

    for dtype, tol in ((np.float32, 4e-7), (np.float64, 1e-15)):
        xs = np.linspace(-30, 30, 600_001).astype(dtype)
        t, s = evaluate(xs)
        x = xs.astype(np.float64)
        assert np.max(np.abs(t - np.tanh(x))) <= tol
        assert np.max(np.abs(s - 0.5 * (1 + np.tanh(0.5 * x)))) <= tol
        assert t.dtype == dtype


def test_threads_give_identical_results_and_keep_numba_setting():
    mod, spec, weights = build("lstm", 4, 9, 2, True, True, np.float32)
    prepared = kernels.prepare(spec, weights)
    x = np.random.default_rng(5).standard_normal((100, 7, 4)).astype(np.float32)
    lengths = np.random.default_rng(6).integers(1, 8, 100).astype(np.int64)
    before = numba.get_num_threads()
    one = kernels.run(prepared, x, lengths, None, None, "all", 1)
    assert numba.get_num_threads() == before
    two = kernels.run(prepared, x, lengths, None, None, "all", 2)
    four = kernels.run(prepared, x, lengths, None, None, "all", 4)
    assert numba.get_num_threads() == before
    for a, b, c in zip(one, two, four):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    with pytest.raises(ValueError, match="threads"):
        kernels.run(prepared, x, lengths, None, None, "all", 0)


def test_input_order_and_dtype_conversion():
    """Results come back in input order; float64 input to a float32 model is converted once."""
    _, spec, weights = build("gru", 4, 6, 1, False, True, np.float32)
    prepared = kernels.prepare(spec, weights)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((50, 8, 4))
    lengths = rng.integers(1, 9, 50).astype(np.int64)
    y, hn, _ = kernels.run(prepared, x, lengths, None, None, "last", None)
    perm = rng.permutation(50)
    y2, hn2, _ = kernels.run(prepared, x[perm], lengths[perm], None, None, "last", None)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[perm], y2, atol=1e-6)
    np.testing.assert_allclose(hn[:, perm], hn2, atol=1e-6)


FLAGS = {"fastmath", "error_model", "cache", "parallel", "nogil", "boundscheck"}


def test_compile_flags_live_in_config_only():
    """grep (on code tokens: docstrings and comments may talk about flags) for ``flag=``."""
    offenders = []
    for p in sorted(KERNEL_DIR.glob("*.py")):
        if p.name == "config.py":
            continue
        toks = [t for t in tokenize.generate_tokens(io.StringIO(p.read_text()).readline)
                if t.type not in (tokenize.COMMENT, tokenize.STRING, tokenize.NL, tokenize.NEWLINE)]  # fmt: skip
        for a, b in zip(toks, toks[1:]):
            if a.type == tokenize.NAME and a.string in FLAGS and b.string == "=":
                offenders.append(f"{p.name}:{a.start[0]} {a.string}=")
    assert not offenders, f"compile flags hard-coded outside rnnjit/kernels/config.py: {offenders}"


def test_kernel_modules_import_numpy_and_numba_only():
    allowed = {"numpy", "numba", "llvmlite", "rnnjit", "__future__", "collections", "dataclasses", "platform", "math", "time",
               "concurrent", "threading", "operator", "itertools", "os"}  # fmt: skip
    for p in KERNEL_DIR.glob("*.py"):
        for m in re.findall(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", p.read_text(), re.M):
            assert m in allowed, f"{p.name} imports {m}"


def test_read_only_inputs_reuse_the_compiled_kernel():
    _, spec, weights = build("lstm", 4, 5, 1, False, True, np.float32)
    prepared = kernels.prepare(spec, weights)
    x = np.random.default_rng(8).standard_normal((3, 4, 4)).astype(np.float32)
    lengths = np.full(3, 4, np.int64)
    want = kernels.run(prepared, x, lengths, None, None, "last", None)[0]
    n_sigs = len(getattr(kernels.run_worker, "signatures", []))
    x.flags.writeable = False
    lengths.flags.writeable = False
    got = kernels.run(prepared, x, lengths, None, None, "last", None)[0]
    np.testing.assert_array_equal(got, want)
    assert len(getattr(kernels.run_worker, "signatures", [])) == n_sigs
