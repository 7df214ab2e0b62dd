"""Property tests: random architectures and batches, torch as the oracle.

Sizes are bounded so each example converts and runs in milliseconds; the
number of examples comes from the "rnnjit" hypothesis profile (conftest.py,
``RNNJIT_HYPOTHESIS_EXAMPLES`` to raise it locally).
"""

from __future__ import annotations

import tempfile

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import naive
from rnnjit.bundle import read_config
from torch_models import ENGINES, TOL, Arch, Net, as_dtype, convert_and_load, max_abs, max_scaled, torch_forward


@st.composite
def architectures(draw):
    cell = draw(st.sampled_from(["lstm", "gru", "rnn_tanh", "rnn_relu"]))
    hidden = draw(st.integers(1, 6))
    proj = draw(st.integers(0, hidden - 1)) if cell == "lstm" and hidden > 1 else 0
    return Arch(
        cell,
        input_size=draw(st.integers(1, 5)),
        hidden_size=hidden,
        num_layers=draw(st.integers(1, 3)),
        bidirectional=draw(st.booleans()),
        bias=draw(st.booleans()),
        proj_size=proj,
    )


HEADS = st.sampled_from(
    [(), ("linear:1",), ("linear:1", "sigmoid"), ("linear:3", "softmax"), ("tanh", "linear:2", "log_softmax"),
     ("linear:3", "relu", "linear_nobias:2", "identity")]
)


@st.composite
def batches(draw, arch: Arch):
    B = draw(st.integers(1, 5))
    T = draw(st.integers(1, 8))
    lengths = draw(st.one_of(st.none(), st.lists(st.integers(1, T), min_size=B, max_size=B).map(np.array)))
    if lengths is None and T == 1 and B > 1:  # (B, 1, I) alone is refused as ambiguous (sequence-first?)
        lengths = np.ones(B, np.int64)
    seed = draw(st.integers(0, 2**32 - 1))
    return B, T, lengths, seed


@given(
    arch=architectures(),
    head=HEADS,
    data=st.data(),
    output=st.sampled_from(["last", "final", "all"]),
    dtype=st.sampled_from(["float32", "float64"]),
    with_state=st.booleans(),
    scale=st.sampled_from([1.0, 3.0]),
    engine=st.sampled_from(ENGINES),
)
def test_random_models_match_torch(arch, head, data, output, dtype, with_state, scale, engine):
    if arch.cell == "rnn_relu":
        scale = min(scale, 1.5)  # see torch_models.SCALE
    B, T, lengths, seed = data.draw(batches(arch))
    net = Net(arch, head, seed=seed % 1000, scale=scale)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, arch.input_size)).astype(dtype)
    h0 = c0 = None
    if with_state:
        ld = arch.num_layers * arch.D
        h0 = rng.standard_normal((ld, B, arch.h_out)).astype(dtype)
        if arch.cell == "lstm":
            c0 = rng.standard_normal((ld, B, arch.hidden_size)).astype(dtype)

    with tempfile.TemporaryDirectory() as tmp:
        model, _ = convert_and_load(net, tmp, dtype=dtype, output=output)
        assert model.output == output
        y, state = model.predict(x, lengths, h0=h0, c0=c0, return_state=True, engine=engine)

    ref = as_dtype(net, dtype)
    y_t, hn_t, cn_t = torch_forward(ref, x, lengths, h0, c0, output=output)
    assert max_abs(y, y_t) <= TOL[dtype]
    hn, cn = state if arch.cell == "lstm" else (state, None)
    assert max_abs(hn, hn_t) <= TOL[dtype]
    if arch.cell == "lstm":
        assert max_scaled(cn, cn_t) <= TOL[dtype]  # c is unbounded: relative where |c| > 1


@given(data=st.data(), arch=architectures(), output=st.sampled_from(["last", "final", "all"]),
       engine=st.sampled_from(ENGINES))
def test_each_sequence_is_scored_independently_of_the_batch(data, arch, output, engine):
    """Scoring a batch equals scoring each sequence alone (and padding content is irrelevant)."""
    B, T, lengths, seed = data.draw(batches(arch))
    if lengths is None:
        lengths = np.full(B, T)
    net = Net(arch, ("linear:2",), seed=seed % 1000)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, arch.input_size)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        model, _ = convert_and_load(net, tmp)
    y = model.predict(x, lengths, output=output, engine=engine)
    x_noise = x.copy()
    pad = np.arange(T)[None, :] >= lengths[:, None]
    x_noise[pad] = rng.standard_normal((int(pad.sum()), arch.input_size)) * 100
    np.testing.assert_allclose(model.predict(x_noise, lengths, output=output, engine=engine), y, rtol=0, atol=TOL["float32"])
    for b in range(B):
        alone = model.predict(x[b : b + 1, : lengths[b]], output=output, engine=engine)
        expect = y[b : b + 1, : lengths[b]] if output == "all" else y[b : b + 1]
        np.testing.assert_allclose(alone, expect, rtol=0, atol=TOL["float32"])  # BLAS paths differ by B


@given(
    arch=architectures(),
    head=HEADS,
    data=st.data(),
    output=st.sampled_from(["last", "final", "all"]),
    with_state=st.booleans(),
    engine=st.sampled_from(ENGINES),
)
def test_random_models_match_the_scalar_loop_reference(arch, head, data, output, with_state, engine):
    """float64 against tests/naive.py: DESIGN §2 as scalar loops, one sequence at a time."""
    B, T, lengths, seed = data.draw(batches(arch))
    lengths = np.full(B, T) if lengths is None else lengths
    net = Net(arch, head, seed=seed % 1000)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, arch.input_size))
    h0 = c0 = None
    if with_state:
        ld = arch.num_layers * arch.D
        h0 = rng.standard_normal((ld, B, arch.h_out))
        c0 = rng.standard_normal((ld, B, arch.hidden_size)) if arch.cell == "lstm" else None
    with tempfile.TemporaryDirectory() as tmp:
        model, bundle = convert_and_load(net, tmp, dtype="float64")
        config = read_config(bundle)
        with np.load(bundle, allow_pickle=False) as npz:
            weights = {k: npz[k].astype(np.float64) for k in npz.files if not k.startswith("__")}
    y = model.predict(x, lengths, h0=h0, c0=c0, output=output, engine=engine)
    expect = naive.predict(config, weights, [x[b, : lengths[b]] for b in range(B)], output, h0, c0)
    for b in range(B):
        got = y[b, : lengths[b]] if output == "all" else y[b]
        np.testing.assert_allclose(got, np.array(expect[b]), rtol=0, atol=TOL["float64"])
