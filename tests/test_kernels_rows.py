"""The compiled per-vector steps (`rnnjit.kernels.rows`) against the numpy reference and torch.

Each step kind on its own and in runs, both dtypes, widths that are not
multiples of the panel height or the lanes, rows read and written through
indexes; the same bits for a row whatever else is in its call and on any
thread count; and whole models whose linear layers sit in front of, between
and after recurrent modules (`Model.predict`) against torch, with bit-identity
across batch splits and threads.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnjit import kernels, reference
from rnnjit.kinds import ACTIVATIONS
from rnnjit.model import Model
from rnnjit.spec import RNNSpec, Step, rnn_step

TOL = {"float32": 2e-5, "float64": 1e-12}


def _weights(step_list, width, rng, dtype):
    w = {}
    for s in step_list:
        p = s.prefix
        if s.kind == "linear":
            w[f"{p}weight"] = rng.standard_normal((s.out_features, s.in_features)).astype(dtype) / np.sqrt(s.in_features)
            if s.bias:
                w[f"{p}bias"] = rng.standard_normal(s.out_features).astype(dtype)
        elif s.kind == "layernorm" and s.name:
            if s.affine:
                w[f"{p}weight"] = rng.standard_normal(s.in_features).astype(dtype)
            if s.bias:
                w[f"{p}bias"] = rng.standard_normal(s.in_features).astype(dtype)
        elif s.kind == "batchnorm":
            n = s.in_features
            w[f"{p}running_mean"] = rng.standard_normal(n).astype(dtype)
            w[f"{p}running_var"] = rng.uniform(0.5, 2.0, n).astype(dtype)
            if s.affine:
                w[f"{p}weight"] = rng.standard_normal(n).astype(dtype)
                w[f"{p}bias"] = rng.standard_normal(n).astype(dtype)
    return w


RUNS = {  # name: (input width, steps)
    "linear": (13, [Step("linear", "fc", 13, 21, bias=True)]),
    "linear_no_bias": (16, [Step("linear", "fc", 16, 8)]),
    "wide_linear": (32, [Step("linear", "fc", 32, 877, bias=True)]),
    "one_output": (50, [Step("linear", "fc", 50, 1, bias=True), Step("activation", "sigmoid")]),
    **{f"act_{a}": (19, [Step("activation", a)]) for a in ACTIVATIONS},
    "layernorm": (24, [Step("layernorm", "ln", 24, 24, bias=True, affine=True, eps=1e-5)]),
    "layernorm_plain": (24, [Step("layernorm", "", eps=1e-3)]),
    "batchnorm": (10, [Step("batchnorm", "bn", 10, 10, affine=True, eps=1e-5)]),
    "batchnorm_plain": (10, [Step("batchnorm", "bn", 10, 10, eps=1e-3)]),
    "l2norm": (23, [Step("l2norm", "", eps=1e-12)]),
    "mlp": (64, [Step("linear", "fc1", 64, 32, bias=True), Step("activation", "relu"), Step("dropout", "d"),
                 Step("linear", "fc2", 32, 97, bias=True), Step("activation", "log_softmax")]),
    "norm_sandwich": (40, [Step("batchnorm", "bn", 40, 40, affine=True), Step("linear", "fc", 40, 33, bias=True),
                           Step("layernorm", "ln", 33, 33, bias=True, affine=True), Step("activation", "tanh")]),
    "plain_chain": (37, [Step("linear", "fc1", 37, 70, bias=True), Step("activation", "relu"),
                         Step("linear", "fc2", 70, 19), Step("activation", "identity"),
                         Step("linear", "fc3", 19, 150, bias=True)]),
}  # fmt: skip


def _run(engine, prep, src, src_idx, n_dst, width, dst_idx, threads):
    dst = np.full((n_dst, width), -7.0, src.dtype)  # rows not written keep -7
    engine.run_steps(prep, src, src_idx, dst, dst_idx, threads)
    return dst


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", RUNS)
def test_run_steps_matches_the_numpy_reference(name, dtype):
    fin, run = RUNS[name]
    rng = np.random.default_rng(len(name))
    w = _weights(run, fin, rng, dtype)
    src = (2 * rng.standard_normal((120, fin))).astype(dtype)
    src_idx = rng.permutation(120)[:101].astype(np.int64)  # 101 rows: two full tiles and a ragged one
    dst_idx = rng.permutation(130)[:101].astype(np.int64)
    fout = next((s.out_features for s in reversed(run) if s.kind == "linear"), fin)
    got = _run(kernels, kernels.prepare_steps(run, w, fin, dtype), src, src_idx, 130, fout, dst_idx, 2)
    want = _run(reference, reference.prepare_steps(run, w, fin, dtype), src, src_idx, 130, fout, dst_idx, 2)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype])
    untouched = np.setdiff1d(np.arange(130), dst_idx)
    assert (got[untouched] == -7).all()


@pytest.mark.parametrize("name", ["wide_linear", "mlp", "norm_sandwich", "act_softmax", "l2norm", "plain_chain"])
def test_a_rows_bits_do_not_depend_on_the_other_rows_or_the_threads(name):
    fin, run = RUNS[name]
    rng = np.random.default_rng(3)
    w = _weights(run, fin, rng, "float32")
    prep = kernels.prepare_steps(run, w, fin, "float32")
    fout = next((s.out_features for s in reversed(run) if s.kind == "linear"), fin)
    src = rng.standard_normal((70, fin)).astype(np.float32)
    every = np.arange(70, dtype=np.int64)
    whole = _run(kernels, prep, src, every, 70, fout, every, 2)
    assert np.array_equal(whole, _run(kernels, prep, src, every, 70, fout, every, 1))
    for r in (0, 17, 69):  # alone, in a one-vector tile
        one = np.array([r], np.int64)
        assert np.array_equal(_run(kernels, prep, src, one, 1, fout, np.zeros(1, np.int64), 2)[0], whole[r])
    shuffled = rng.permutation(70).astype(np.int64)  # other neighbours in every tile
    assert np.array_equal(_run(kernels, prep, src, shuffled, 70, fout, shuffled, 2), whole)


def _torch_model(arch):
    nn = torch.nn
    torch.manual_seed(7)
    if arch == "front":  # linear (+activation) in front of the recurrent module, per-step head
        mods = {"fc_in": nn.Linear(9, 12), "lstm": nn.LSTM(12, 10, 2, batch_first=True), "fc_out": nn.Linear(10, 3)}
        chain = (Step("linear", "fc_in", 9, 12, bias=True), Step("activation", "tanh"),
                 rnn_step(RNNSpec("lstm", 12, 10, 2, False, True, 0, "lstm.")),
                 Step("linear", "fc_out", 10, 3, bias=True), Step("activation", "softmax"))  # fmt: skip

        def fwd(x):
            return torch.softmax(mods["fc_out"](mods["lstm"](torch.tanh(mods["fc_in"](x)))[0]), -1)
    elif arch == "between":  # [BiLSTM + linear] x2, then a linear per step (the OCR head)
        mods = {"r1": nn.LSTM(9, 8, bidirectional=True, batch_first=True), "f1": nn.Linear(16, 7),
                "n1": nn.LayerNorm(7), "r2": nn.GRU(7, 6, bidirectional=True, batch_first=True),
                "f2": nn.Linear(12, 5)}  # fmt: skip
        chain = (rnn_step(RNNSpec("lstm", 9, 8, 1, True, True, 0, "r1.")), Step("linear", "f1", 16, 7, bias=True),
                 Step("layernorm", "n1", 7, 7, bias=True, affine=True), Step("dropout", "d"),
                 rnn_step(RNNSpec("gru", 7, 6, 1, True, True, 0, "r2.")), Step("linear", "f2", 12, 5, bias=True))

        def fwd(x):
            return mods["f2"](mods["r2"](mods["n1"](mods["f1"](mods["r1"](x)[0])))[0])
    else:  # "final": stacked LSTM, last layer's final state, linear + relu (the speaker encoder)
        mods = {"lstm": nn.LSTM(9, 11, 3, batch_first=True), "fc": nn.Linear(11, 13)}
        chain = (rnn_step(RNNSpec("lstm", 9, 11, 3, False, True, 0, "lstm.")),
                 Step("linear", "fc", 11, 13, bias=True), Step("activation", "relu"))

        def fwd(x):
            return torch.relu(mods["fc"](mods["lstm"](x)[1][0][-1]))
    for m in mods.values():
        m.eval()
    weights = {f"{n}.{k}": v.detach().numpy() for n, m in mods.items() for k, v in m.state_dict().items()}
    return chain, weights, fwd


@pytest.mark.parametrize("engine", ["numba", "numpy"])
@pytest.mark.parametrize("arch", ["front", "between", "final"])
def test_models_with_linear_layers_around_recurrent_modules_match_torch(arch, engine):
    chain, weights, fwd = _torch_model(arch)
    model = Model(chain, weights, output="final" if arch == "final" else "all")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((37, 11, 9)).astype(np.float32)
    with torch.inference_mode():
        want = fwd(torch.from_numpy(x)).numpy()
    got = model.predict(x, engine=engine)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["front", "between", "final"])
def test_model_rows_are_the_same_bits_alone_in_any_batch_and_on_any_thread_count(arch):
    chain, weights, _ = _torch_model(arch)
    model = Model(chain, weights, output="final" if arch == "final" else "all")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((53, 12, 9)).astype(np.float32)
    lengths = rng.integers(1, 13, 53)
    lengths[0] = 12
    whole = model.predict(x, lengths, engine="numba", threads=2)
    assert np.array_equal(whole, model.predict(x, lengths, engine="numba", threads=1))
    for lo, hi in ((0, 1), (5, 6), (1, 20), (20, 53)):
        part = model.predict(x[lo:hi], lengths[lo:hi], engine="numba", threads=2)
        if part.ndim == 3:  # a shorter batch pads to its own longest sequence
            assert np.array_equal(part, whole[lo:hi, : part.shape[1]])
            assert not whole[lo:hi, part.shape[1] :].any()
        else:
            assert np.array_equal(part, whole[lo:hi])
    ref = model.predict(x, lengths, engine="numpy")
    np.testing.assert_allclose(whole, ref, atol=1e-5, rtol=1e-5)


TAILS = {"none": [Step("dropout", "d")], "relu": [Step("activation", "relu"), Step("dropout", "d")],
         "gelu_tanh": [Step("activation", "gelu"), Step("activation", "tanh")],
         "sigmoid_elu_leaky": [Step("activation", "sigmoid"), Step("activation", "elu"),
                               Step("activation", "leaky_relu")]}  # fmt: skip
"""Element-wise steps after the last linear layer: they run on its rows, rows-major."""


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("width", [8, 16, 17, 33, 48])  # below one vector, one, one and a value, two and a value
def test_rows_go_into_tiles_and_back_by_blocks_with_every_bit_kept(width, dtype):
    # an identity step moves each value in (`gather_rows`) and out (`scatter_rows`) unchanged: -0.0, infinities,
    # NaN payloads and subnormals included, through whole blocks of rows and features and the ragged rest
    rng = np.random.default_rng(width)
    bits = np.uint32 if dtype == np.float32 else np.uint64
    src = rng.integers(0, np.iinfo(bits).max, (150, width), dtype=bits, endpoint=True).view(dtype)
    src[0, :4] = [-0.0, np.inf, -np.inf, np.finfo(dtype).smallest_subnormal]
    src_idx = rng.permutation(150)[:101].astype(np.int64)  # 101 rows: two full tiles and a ragged one
    dst_idx = rng.permutation(130)[:101].astype(np.int64)
    prep = kernels.prepare_steps([Step("activation", "identity")], {}, width, dtype)
    got = _run(kernels, prep, src, src_idx, 130, width, dst_idx, 2)
    np.testing.assert_array_equal(got[dst_idx].view(bits), src[src_idx].view(bits))
    untouched = np.setdiff1d(np.arange(130), dst_idx)
    assert (got[untouched] == -7).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("tail", list(TAILS))
@pytest.mark.parametrize("fout", [32, 33, 100, 877])
def test_a_last_linear_layer_run_rows_major_and_split_by_columns_gives_the_lane_layouts_bits(fout, tail, dtype,
                                                                                              monkeypatch):
    from rnnjit.kernels import rows

    fin = 29
    run = [Step("linear", "fc1", fin, 40, bias=True), Step("activation", "relu"),
           Step("linear", "fc2", 40, fout, bias=fout % 2 == 0), *TAILS[tail]]  # fmt: skip
    rng = np.random.default_rng(fout)
    w = _weights(run, fin, rng, dtype)
    turned = kernels.prepare_steps(run, w, fin, dtype)
    monkeypatch.setattr(rows, "ROWS_OUT_FROM", 10**9)
    lanes = kernels.prepare_steps(run, w, fin, dtype)
    last = 2  # the program's rows: linear, relu, the last linear, then the tail's activations
    few = turned.few[:2] if turned.few is not None else (turned.prog, turned.wts)  # the program of calls under one tile
    assert few[0][last, 0] == rows.LINEAR_OUT and lanes.prog[last, 0] == rows.LINEAR and lanes.few is None
    # calls of whole tiles keep the lane layout below `ROWS_OUT_TILES_FROM` vectors of outputs
    tiles_rows_out = fout >= rows.ROWS_OUT_TILES_FROM * rows.lanes(dtype)
    assert turned.prog[last, 0] == (rows.LINEAR_OUT if tiles_rows_out else rows.LINEAR)
    src = rng.standard_normal((120, fin)).astype(dtype)
    for n in (1, 7, 8, 9, 24, 49, 101):
        src_idx = rng.permutation(120)[:n].astype(np.int64)
        dst_idx = rng.permutation(130)[:n].astype(np.int64)
        want = _run(kernels, lanes, src, src_idx, 130, fout, dst_idx, 1)
        for threads, split in ((1, False), (2, False), (2, True), (3, True)):
            # split: the output columns of each tile in chunks over the threads, whatever the work
            monkeypatch.setattr(rows, "SPLIT_ROWS_WORK", 0 if split else 10**18)
            assert np.array_equal(_run(kernels, turned, src, src_idx, 130, fout, dst_idx, threads), want)
        for chunks in (2, 5):  # one thread taking every chunk of each tile: the steps before kept, not redone
            dst = np.full((130, fout), -7.0, dtype)
            rows.rows_worker(src, src_idx, dst, dst_idx, *few, turned.width, chunks,
                             np.zeros(1, np.int64))  # fmt: skip
            assert np.array_equal(dst, want)
        got = want
    want = _run(reference, reference.prepare_steps(run, w, fin, dtype), src, src_idx, 130, fout, dst_idx, 2)
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype])


def test_a_small_call_stays_on_the_calling_thread_and_a_large_one_uses_the_threads(monkeypatch):
    import rnnjit.kernels as K
    from rnnjit.kernels import rows

    chain = (rnn_step(RNNSpec("lstm", 8, 16, 1, True, True, 0, "lstm.")), Step("linear", "fc", 32, 40, bias=True))
    rng = np.random.default_rng(4)
    weights = {"lstm.weight_ih_l0": rng.standard_normal((64, 8)), "lstm.weight_hh_l0": rng.standard_normal((64, 16)),
               "lstm.bias_ih_l0": rng.standard_normal(64), "lstm.bias_hh_l0": rng.standard_normal(64),
               "fc.weight": rng.standard_normal((40, 32)), "fc.bias": rng.standard_normal(40)}  # fmt: skip
    weights.update({k.replace("_l0", "_l0_reverse"): v for k, v in weights.items() if k.startswith("lstm.")})
    model = Model(chain, {k: v.astype(np.float32) for k, v in weights.items()}, output="all")
    x = rng.standard_normal((40, 30, 8)).astype(np.float32)
    workers = []

    def spy(real):
        return lambda n, fn, args: (workers.append(n), real(n, fn, args))

    monkeypatch.setattr(K, "parallel", spy(K.parallel))
    monkeypatch.setattr(rows, "parallel", spy(rows.parallel))
    outs = {}
    for name, work in (("small", 10**12), ("split", 0)):  # every call below the threshold, or none
        monkeypatch.setattr(K, "ONE_THREAD_WORK", work)
        monkeypatch.setattr(rows, "SPLIT_ROWS_WORK", work)
        workers.clear()
        outs[name] = model.predict(x, engine="numba", threads=2)
        assert workers and (max(workers) == 1) == (name == "small")
    assert np.array_equal(outs["small"], outs["split"])


def test_a_softmax_after_the_last_linear_layer_keeps_the_lane_layout():
    from rnnjit.kernels import rows

    run = [Step("linear", "fc", 16, 100, bias=True), Step("activation", "log_softmax")]
    w = _weights(run, 16, np.random.default_rng(5), "float32")
    soft = kernels.prepare_steps(run, w, 16, "float32")
    assert soft.prog[0, 0] == rows.LINEAR and soft.few is None
    plain = kernels.prepare_steps(run[:1], w, 16, "float32")  # 100 outputs: rows-major for calls under one tile
    assert plain.few[0][0, 0] == rows.LINEAR_OUT
