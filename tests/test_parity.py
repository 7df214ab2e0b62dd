"""Parity with PyTorch through the user's path: torch.save -> convert -> load -> predict.

The architecture grid is the full product cell x layers x bidirectional x bias
(LSTM with and without proj_size), crossed with dtype, output mode, equal or
variable lengths (``pack_padded_sequence`` in torch) and given or default
initial states. Head chains are crossed with cell and output mode separately.
Weights are scaled so gates saturate (see `torch_models.SCALE`).
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

from torch_models import ENGINES, TOL, Arch, Net, as_dtype, make_batch, make_state, max_abs, max_scaled, torch_forward

CELLS = [("rnn_tanh", 0), ("rnn_relu", 0), ("gru", 0), ("lstm", 0), ("lstm", 2)]


def arch_id(a: Arch) -> str:
    cell, proj, layers, bidir, bias = a.cell, a.proj_size, a.num_layers, a.bidirectional, a.bias
    s = f"{cell=}-{layers=}-{bidir=}-{bias=}"
    return s + (f"-{proj=}" if proj else "")


ARCHS = [
    Arch(cell, proj_size=proj, num_layers=layers, bidirectional=bidir, bias=bias, hidden_size=4 if proj else 5)
    for (cell, proj), layers, bidir, bias in itertools.product(CELLS, (1, 2, 3), (False, True), (True, False))
]


def stable_seed(*parts) -> int:
    """A seed that is the same in every process (``hash`` of a str is salted per process)."""
    return zlib.crc32(repr(parts).encode())


def check_against_torch(net, model, engine, dtype, x, lengths, h0, c0, output):
    """predict() with return_state against torch; y, hn (and cn) within TOL[dtype]."""
    ref = as_dtype(net, dtype) if dtype != "float32" else net
    y_t, hn_t, cn_t = torch_forward(ref, x, lengths, h0, c0, output=output)
    y, state = model.predict(x, lengths=lengths, h0=h0, c0=c0, output=output, return_state=True, engine=engine)
    hn, cn = state if net.arch.cell == "lstm" else (state, None)
    assert y.dtype == np.dtype(dtype)
    tol = TOL[dtype]
    err = max_abs(y, y_t)
    assert err <= tol, f"output {output!r}: max abs error {err:.3g} > {tol:g}"
    err = max_abs(hn, hn_t)
    assert err <= tol, f"hn: max abs error {err:.3g} > {tol:g}"
    if cn_t is not None:
        err = max_scaled(cn, cn_t)  # c is unbounded: relative where |c| > 1
        assert err <= tol, f"cn: max error {err:.3g} (relative where |c| > 1) > {tol:g}"
    else:
        assert cn is None
    return y


@pytest.mark.parametrize("state", ["zeros", "given"], ids=lambda s: f"h0={s}")
@pytest.mark.parametrize("lengths", ["equal", "variable"], ids=lambda s: f"lengths={s}")
@pytest.mark.parametrize("output", ["last", "final", "all"], ids=lambda s: f"{s=}".replace("s=", "output="))
@pytest.mark.parametrize("dtype", ["float32", "float64"], ids=lambda s: f"dtype={s}")
@pytest.mark.parametrize("arch", ARCHS, ids=arch_id)
def test_rnn_matches_torch(arch, dtype, output, lengths, state, engine, model_cache):
    net, model = model_cache(arch, lambda: (Net(arch, ("linear:2",), seed=stable_seed(arch)), {}), dtype)
    rng = np.random.default_rng(stable_seed(arch, output, lengths, state))
    x, lens = make_batch(rng, arch, B=4, T=6, variable=lengths == "variable", dtype=dtype)
    h0, c0 = make_state(rng, arch, 4, dtype) if state == "given" else (None, None)
    check_against_torch(net, model, engine, dtype, x, lens, h0, c0, output)


HEADS = [
    (),
    ("linear:1",),
    ("linear:1", "sigmoid"),
    ("linear:4", "relu", "linear:3", "softmax"),
    ("linear:4", "tanh", "linear_nobias:3", "log_softmax"),
    ("linear_nobias:2", "identity"),
    ("relu", "linear:2", "sigmoid"),
]


@pytest.mark.parametrize("output", ["last", "final", "all"], ids=lambda s: f"output={s}")
@pytest.mark.parametrize("head", HEADS, ids=lambda h: "head=" + ("+".join(h) or "none"))
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: f"cell={c[0]}" + (f"-proj={c[1]}" if c[1] else ""))
def test_head_chain_matches_torch(cell, head, output, engine, model_cache):
    arch = Arch(cell[0], proj_size=cell[1], num_layers=2, bidirectional=True)
    net, model = model_cache((arch, head), lambda: (Net(arch, head, seed=len(head)), {}))
    rng = np.random.default_rng(len(head))
    x, lens = make_batch(rng, arch, B=5, T=7, variable=True)
    h0, c0 = make_state(rng, arch, 5)
    y = check_against_torch(net, model, engine, "float32", x, lens, h0, c0, output)
    if head and head[-1] in ("softmax",):
        sums = y.sum(axis=-1)
        if output == "all":
            sums = sums[np.arange(7)[None, :] < lens[:, None]]
        np.testing.assert_allclose(sums, 1.0, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"], ids=lambda s: f"dtype={s}")
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: f"cell={c[0]}" + (f"-proj={c[1]}" if c[1] else ""))
def test_long_sequences_T1000_match_torch(cell, dtype, engine, model_cache):
    """T=1000 with saturated gates: errors must not accumulate over the sequence."""
    arch = Arch(cell[0], proj_size=cell[1], num_layers=2, bidirectional=True)
    net, model = model_cache(("T1000", arch), lambda: (Net(arch, ("linear:2", "sigmoid"), seed=7), {}), dtype)
    rng = np.random.default_rng(1000)
    x, _ = make_batch(rng, arch, B=3, T=1000, variable=False, dtype=dtype)
    lens = np.array([1000, 617, 3])
    x[1, 617:] = 7.0
    x[2, 3:] = 7.0
    h0, c0 = make_state(rng, arch, 3, dtype)
    for output in ("all", "final"):
        check_against_torch(net, model, engine, dtype, x, lens, h0, c0, output)


@pytest.mark.parametrize("layers", [1, 2], ids=lambda n: f"layers={n}")
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: f"cell={c[0]}" + (f"-proj={c[1]}" if c[1] else ""))
def test_chunked_scoring_with_carried_state_equals_whole(cell, layers, engine, model_cache):
    """Score steps [0,5), [5,9), [9,T) passing hn->h0 (cn->c0): same as one call.

    Within the float32 tolerance, not bit for bit: an engine may batch the
    input projection over all steps, and BLAS may sum differently per shape.
    """
    arch = Arch(cell[0], proj_size=cell[1], num_layers=layers)
    net, model = model_cache(("chunks", arch), lambda: (Net(arch, ("linear:2",), seed=3), {}))
    rng = np.random.default_rng(5)
    B, T = 4, 12
    x, _ = make_batch(rng, arch, B=B, T=T, variable=False)
    lens = np.array([12, 10, 11, 10])  # every sequence reaches the last chunk
    for b, n in enumerate(lens):
        x[b, n:] = 7.0
    h0, c0 = make_state(rng, arch, B)
    whole_all, whole_state = model.predict(x, lens, h0=h0, c0=c0, output="all", return_state=True, engine=engine)
    whole_last = model.predict(x, lens, h0=h0, c0=c0, output="last", engine=engine)

    pieces, h, c = [], h0, c0
    for start, stop in [(0, 5), (5, 9), (9, T)]:
        chunk_x, chunk_lens = x[:, start:stop], np.minimum(lens, stop) - start
        if stop == T:  # the final chunk's "last" is the whole sequence's "last"
            chunk_last = model.predict(chunk_x, chunk_lens, h0=h, c0=c, output="last", engine=engine)
        y, state = model.predict(chunk_x, chunk_lens, h0=h, c0=c, output="all", return_state=True, engine=engine)
        h, c = state if arch.cell == "lstm" else (state, None)
        pieces.append(y)
    np.testing.assert_allclose(chunk_last, whole_last, atol=TOL["float32"], rtol=0)
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole_all, atol=TOL["float32"], rtol=0)
    if arch.cell == "lstm":
        np.testing.assert_allclose(h, whole_state[0], atol=TOL["float32"], rtol=0)
        np.testing.assert_allclose(c, whole_state[1], atol=TOL["float32"], rtol=TOL["float32"])
    else:
        np.testing.assert_allclose(h, whole_state, atol=TOL["float32"], rtol=0)
    # torch agrees with the whole-sequence run, so chunked scoring agrees with torch
    y_t, _, _ = torch_forward(net, x, lens, h0, c0, output="last")
    assert max_abs(whole_last, y_t) <= TOL["float32"]


# ------------------------------------------------------------- corner cases
CORNER_CELLS = pytest.mark.parametrize(
    "cell", CELLS, ids=lambda c: f"cell={c[0]}" + (f"-proj={c[1]}" if c[1] else "")
)


def corner_model(cell, model_cache):
    arch = Arch(cell[0], proj_size=cell[1], num_layers=2, bidirectional=True)
    return model_cache(("corner", arch), lambda: (Net(arch, ("linear:2", "tanh"), seed=11), {}))


@CORNER_CELLS
@pytest.mark.parametrize("output", ["last", "final", "all"], ids=lambda s: f"output={s}")
def test_sequences_of_length_one(cell, output, engine, model_cache):
    net, model = corner_model(cell, model_cache)
    rng = np.random.default_rng(1)
    x, _ = make_batch(rng, net.arch, B=3, T=1, variable=False)
    # (3, 1, I) without lengths is refused as ambiguous (sequence-first?): the lengths say three one-step sequences
    check_against_torch(net, model, engine, "float32", x, np.ones(3, np.int64), None, None, output)
    # length-1 sequences inside a longer padded batch
    x, _ = make_batch(rng, net.arch, B=3, T=5, variable=False)
    lens = np.array([1, 5, 1])
    x[lens[:, None] <= np.arange(5)[None, :]] = 7.0
    check_against_torch(net, model, engine, "float32", x, lens, None, None, output)


@CORNER_CELLS
@pytest.mark.parametrize("output", ["last", "final", "all"], ids=lambda s: f"output={s}")
def test_batch_of_one(cell, output, engine, model_cache):
    net, model = corner_model(cell, model_cache)
    rng = np.random.default_rng(2)
    x, _ = make_batch(rng, net.arch, B=1, T=6, variable=False)
    h0, c0 = make_state(rng, net.arch, 1)
    y = check_against_torch(net, model, engine, "float32", x, None, h0, c0, output)
    assert y.shape[0] == 1


@CORNER_CELLS
@pytest.mark.parametrize("output", ["last", "final", "all"], ids=lambda s: f"output={s}")
def test_all_sequences_of_different_lengths(cell, output, engine, model_cache):
    net, model = corner_model(cell, model_cache)
    rng = np.random.default_rng(3)
    T = 6
    lens = rng.permutation(np.arange(1, T + 1))
    x, _ = make_batch(rng, net.arch, B=T, T=T, variable=False)
    x[lens[:, None] <= np.arange(T)[None, :]] = 7.0
    h0, c0 = make_state(rng, net.arch, T)
    y = check_against_torch(net, model, engine, "float32", x, lens, h0, c0, output)
    if output == "all":
        assert np.all(y[lens[:, None] <= np.arange(T)[None, :]] == 0), "padded steps must be exactly zero"


@CORNER_CELLS
@pytest.mark.parametrize("output", ["last", "final", "all"], ids=lambda s: f"output={s}")
def test_empty_batch_gives_empty_outputs_and_states(cell, output, engine, model_cache):
    net, model = corner_model(cell, model_cache)
    arch = net.arch
    x = np.zeros((0, 4, arch.input_size), np.float32)
    y, state = model.predict(x, output=output, return_state=True, engine=engine)
    O = model.output_dim
    assert y.shape == ((0, 4, O) if output == "all" else (0, O))
    assert y.dtype == np.float32
    hn, cn = state if arch.cell == "lstm" else (state, None)
    assert hn.shape == (arch.num_layers * arch.D, 0, arch.h_out)
    if arch.cell == "lstm":
        assert cn.shape == (arch.num_layers * arch.D, 0, arch.hidden_size)
    # with explicit (empty) lengths, and as an empty list
    y = model.predict(x, lengths=np.zeros(0, np.int64), output=output, engine=engine)
    assert y.shape[0] == 0
    y = model.predict([], output=output, engine=engine)
    assert y.shape[0] == 0 and y.shape[-1] == O


@CORNER_CELLS
@pytest.mark.parametrize("output", ["last", "final", "all"], ids=lambda s: f"output={s}")
def test_list_input_equals_padded_input_and_torch(cell, output, engine, model_cache):
    net, model = corner_model(cell, model_cache)
    rng = np.random.default_rng(4)
    lens = np.array([3, 7, 1, 5])
    seqs = [rng.standard_normal((n, net.arch.input_size)).astype(np.float32) for n in lens]
    padded = np.full((4, 7, net.arch.input_size), 7.0, np.float32)
    for b, s in enumerate(seqs):
        padded[b, : len(s)] = s
    y_list = model.predict(seqs, output=output, engine=engine)
    y_pad = check_against_torch(net, model, engine, "float32", padded, lens, None, None, output)
    np.testing.assert_allclose(y_list, y_pad, rtol=0, atol=1e-6)
    # float64 sequences given to a float32 model are converted at the edge
    y64 = model.predict([s.astype(np.float64) for s in seqs], output=output, engine=engine)
    np.testing.assert_allclose(y64, y_pad, rtol=0, atol=1e-6)


# ------------------------------------------------------------ engine options
@CORNER_CELLS
def test_default_engine_and_thread_counts_agree(cell, model_cache):
    """engine=None picks the default engine; threads only changes speed, never results."""
    net, model = corner_model(cell, model_cache)
    rng = np.random.default_rng(6)
    x, lens = make_batch(rng, net.arch, B=9, T=8, variable=True)
    y_t, _, _ = torch_forward(net, x, lens, output="all")
    y = model.predict(x, lens, output="all")
    assert max_abs(y, y_t) <= TOL["float32"]
    for engine in ENGINES:
        for threads in (1, 2):
            y_n = model.predict(x, lens, output="all", engine=engine, threads=threads)
            np.testing.assert_allclose(y_n, y, rtol=0, atol=TOL["float32"])


@pytest.mark.parametrize("given", ["h0", "c0"], ids=lambda g: f"only={g}")
@pytest.mark.parametrize("proj", [0, 2], ids=lambda p: f"{p=}".replace("p=", "proj="))
def test_lstm_with_only_one_initial_state(proj, given, engine, model_cache):
    """h0 without c0 (or c0 without h0): the missing one is zeros, as in PyTorch."""
    arch = Arch("lstm", proj_size=proj, hidden_size=4 if proj else 5, num_layers=2, bidirectional=True)
    net, model = model_cache(("partial", arch), lambda: (Net(arch, ("linear:2",), seed=12), {}))
    rng = np.random.default_rng(12)
    x, lens = make_batch(rng, arch, B=4, T=6, variable=True)
    h0, c0 = make_state(rng, arch, 4)
    h0, c0 = (h0, None) if given == "h0" else (None, c0)
    for output in ("last", "final", "all"):
        check_against_torch(net, model, engine, "float32", x, lens, h0, c0, output)


@pytest.mark.parametrize(
    "as_type",
    [list, tuple, lambda v: np.asarray(v, np.int32), lambda v: np.asarray(v, np.uint8), lambda v: np.asarray(v, float)],
    ids=["list", "tuple", "int32", "uint8", "whole-valued-float"],
)
def test_lengths_in_any_integer_form(as_type, engine, model_cache):
    arch = Arch("gru", bidirectional=True)
    net, model = model_cache(("lengths", arch), lambda: (Net(arch, ("linear:2",), seed=13), {}))
    rng = np.random.default_rng(13)
    x, _ = make_batch(rng, arch, B=3, T=5, variable=False)
    lens = [5, 2, 4]
    y = model.predict(x, as_type(lens), output="all", engine=engine)
    y_t, _, _ = torch_forward(net, x, np.array(lens), output="all")
    assert max_abs(y, y_t) <= TOL["float32"]


@CORNER_CELLS
@pytest.mark.parametrize("output", ["last", "final", "all"], ids=lambda s: f"output={s}")
def test_padding_past_the_longest_sequence(cell, output, engine, model_cache):
    """max(lengths) < T: the padded tail is all padding for every sequence."""
    net, model = corner_model(cell, model_cache)
    rng = np.random.default_rng(7)
    x, _ = make_batch(rng, net.arch, B=3, T=9, variable=False)
    lens = np.array([4, 2, 5])
    x[lens[:, None] <= np.arange(9)[None, :]] = 7.0
    y = check_against_torch(net, model, engine, "float32", x, lens, None, None, output)
    if output == "all":
        assert y.shape[1] == 9 and np.all(y[:, 5:] == 0)


@CORNER_CELLS
def test_nan_in_padding_is_never_read(cell, engine, model_cache):
    """Padded steps may hold anything, NaN included (Parquet nulls often become NaN)."""
    net, model = corner_model(cell, model_cache)
    rng = np.random.default_rng(8)
    x, lens = make_batch(rng, net.arch, B=4, T=6, variable=True)
    x_nan = x.copy()
    x_nan[lens[:, None] <= np.arange(6)[None, :]] = np.nan
    for output in ("last", "final", "all"):
        y, state = model.predict(x_nan, lens, output=output, return_state=True, engine=engine)
        y_ok = model.predict(x, lens, output=output, engine=engine)
        assert np.all(np.isfinite(y)) and np.all(np.isfinite(state[0] if net.arch.cell == "lstm" else state))
        np.testing.assert_allclose(y, y_ok, rtol=0, atol=TOL["float32"])


@CORNER_CELLS
def test_inputs_are_not_modified_and_outputs_have_the_model_dtype(cell, engine, model_cache):
    net, model = corner_model(cell, model_cache)
    rng = np.random.default_rng(9)
    x, lens = make_batch(rng, net.arch, B=3, T=5, variable=True)
    h0, c0 = make_state(rng, net.arch, 3)
    copies = [a.copy() for a in (x, lens, h0) + ((c0,) if c0 is not None else ())]
    for x_in in (x, x.astype(np.float64), np.asfortranarray(x), x[:, ::1, :]):
        y, state = model.predict(x_in, lens, h0=h0, c0=c0, output="all", return_state=True, engine=engine)
        hn, cn = state if net.arch.cell == "lstm" else (state, None)
        assert y.dtype == hn.dtype == np.float32 and (cn is None or cn.dtype == np.float32)
        assert y.flags.c_contiguous
    for before, after in zip(copies, (x, lens, h0, c0)):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("B", [31, 67, 130], ids=lambda b: f"batch={b}")
@CORNER_CELLS
def test_batches_spanning_several_tiles_and_threads(cell, B, engine, model_cache):
    """Odd batch sizes past any tile width, mixed lengths, two threads: tile edges are seams."""
    net, model = corner_model(cell, model_cache)
    rng = np.random.default_rng(B)
    x, lens = make_batch(rng, net.arch, B=B, T=9, variable=True)
    h0, c0 = make_state(rng, net.arch, B)
    y_t, hn_t, _ = torch_forward(net, x, lens, h0, c0, output="all")
    y, state = model.predict(x, lens, h0=h0, c0=c0, output="all", return_state=True, engine=engine, threads=2)
    hn = state[0] if net.arch.cell == "lstm" else state
    assert max_abs(y, y_t) <= TOL["float32"]
    assert max_abs(hn, hn_t) <= TOL["float32"]
