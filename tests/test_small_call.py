"""`rnnjit.small_call`: a small call's steps worked out once per lengths, the same bits as `predict`'s general loop.

tests/conftest.py sets the one-thread thresholds to 0 for every test (so
small shapes exercise thread splits); the tests here restore the library's
values, so small calls take the path they take for users, and compare it
with the general loop (`small_call` switched off) and with the numpy engine.
"""

from __future__ import annotations

import numpy as np
import pytest

import rnnjit
from rnnjit import kernels
from rnnjit import model as model_mod
from rnnjit.errors import InputError
from rnnjit.kernels import rows as rows_mod
from rnnjit.small_call import SmallCall

ONE_THREAD_WORK, SPLIT_ROWS_WORK = kernels.ONE_THREAD_WORK, rows_mod.SPLIT_ROWS_WORK  # before conftest's 0


@pytest.fixture
def library_thresholds(monkeypatch):
    monkeypatch.setattr(kernels, "ONE_THREAD_WORK", ONE_THREAD_WORK)
    monkeypatch.setattr(rows_mod, "SPLIT_ROWS_WORK", SPLIT_ROWS_WORK)


def _model(tmp_path, net, chain, output, name="m"):
    import torch

    torch.save(net.state_dict(), tmp_path / f"{name}.pth")
    rnnjit.convert(tmp_path / f"{name}.pth", tmp_path / f"{name}.npz", chain=chain, output=output, reference=False)
    return rnnjit.load(tmp_path / f"{name}.npz")


def _models(tmp_path):
    """(model, takes tokens, output modes) of chains a small call runs: token ids through a fused embedding and
    a per-step head (the polyphone tagger's shape), features with a per-sequence head, a pooling, two modules."""
    import torch

    nn = torch.nn
    torch.manual_seed(0)
    tagger = nn.ModuleDict({"emb": nn.Embedding(40, 8), "rnn": nn.LSTM(8, 12, batch_first=True, bidirectional=True),
                            "fc1": nn.Linear(24, 10), "fc2": nn.Linear(10, 70)})  # fmt: skip
    gru = nn.ModuleDict({"rnn": nn.GRU(5, 9, 2, batch_first=True), "fc": nn.Linear(9, 3)})
    pooled = nn.ModuleDict({"rnn": nn.RNN(4, 6, batch_first=True, bidirectional=True), "fc": nn.Linear(12, 2)})
    two = nn.ModuleDict({"a": nn.LSTM(3, 7, batch_first=True), "b": nn.GRU(7, 5, batch_first=True)})
    return [
        (_model(tmp_path, tagger, "emb,rnn,fc1,relu,fc2", "all", "tagger"), True, ("all", "last", "final")),
        (_model(tmp_path, gru, "rnn,fc,softmax", "last", "gru"), False, ("last", "final", "all")),
        (_model(tmp_path, pooled, "rnn,pool:mean,fc,sigmoid", "all", "pooled"), False, ("all",)),
        (_model(tmp_path, two, "a,b", "all", "two"), False, ("all", "last")),
    ]


def _input(rng, model, B, T, tokens):
    lengths = rng.integers(1, T + 1, B).astype(np.int64)
    lengths[-1] = T
    if tokens:
        return rng.integers(0, 40, (B, T)), lengths
    return rng.standard_normal((B, T, model.input_size)).astype(np.float32), lengths


def _general(monkeypatch, fn):
    with monkeypatch.context() as m:
        m.setattr(model_mod, "small_call", lambda *a: None)
        return fn()


def _same(a, b):
    if isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b)
        for u, v in zip(a, b):
            _same(u, v)
    elif a is None:
        assert b is None
    else:
        assert a.dtype == b.dtype and a.shape == b.shape and a.flags.c_contiguous
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("packed", [False, True], ids=lambda p: f"{p=}")
def test_a_small_call_gives_the_general_loops_bits(tmp_path, monkeypatch, library_thresholds, B, packed):
    rng = np.random.default_rng(B)
    for model, tokens, modes in _models(tmp_path):
        for mode in modes:
            for T in (1, 5, 9):
                x, lengths = _input(rng, model, B, T, tokens)
                for threads in (1, 2):
                    kw = dict(output=mode, engine="numba", threads=threads, packed=packed, return_state=True)
                    want = _general(monkeypatch, lambda: model.predict(x, lengths, **kw))
                    for _ in range(2):  # the call that builds the small call, then one that reuses it
                        _same(model.predict(x, lengths, **kw), want)
                    ref = model.predict(x, lengths, output=mode, engine="numpy", packed=packed)
                    np.testing.assert_allclose(want[0], ref, atol=1e-5, rtol=0)
        assert any(isinstance(s, SmallCall) for s in model._small_calls.values()), "no call took the small path"


def test_a_small_call_is_kept_per_lengths_and_bounded(tmp_path, monkeypatch, library_thresholds):
    model, tokens, _ = _models(tmp_path)[0]
    monkeypatch.setattr("rnnjit.small_call.SMALL_CALLS", 3)
    rng = np.random.default_rng(0)
    for T in range(1, 9):
        x, lengths = _input(rng, model, 1, T, tokens)
        model.predict(x, lengths, engine="numba")
        assert 1 <= len(model._small_calls) <= 3
    assert [k[-2:] for k in model._small_calls][-1] == (T, np.array([T], np.int64).tobytes())


def test_work_for_more_than_one_thread_takes_the_general_loop(tmp_path, library_thresholds, monkeypatch):
    model, tokens, _ = _models(tmp_path)[0]
    x, lengths = _input(np.random.default_rng(1), model, 2, 6, tokens)
    monkeypatch.setattr(kernels, "ONE_THREAD_WORK", 0)
    model.predict(x, lengths, engine="numba", threads=2)
    assert list(model._small_calls.values()) == [None]
    monkeypatch.setattr(kernels, "ONE_THREAD_WORK", ONE_THREAD_WORK)
    monkeypatch.setattr(rows_mod, "SPLIT_ROWS_WORK", 0)
    model._small_calls.clear()
    model.predict(x, lengths, engine="numba", threads=2)
    assert list(model._small_calls.values()) == [None]


def test_the_numpy_engine_and_given_states_take_the_general_loop(tmp_path, library_thresholds):
    model, tokens, _ = _models(tmp_path)[1]
    x, lengths = _input(np.random.default_rng(2), model, 1, 4, tokens)
    model.predict(x, lengths, engine="numpy")
    model.predict(x, lengths, engine="numba", h0=np.zeros((2, 1, 9), np.float32))
    assert not model._small_calls


def test_bad_token_ids_and_lengths_are_refused_on_a_kept_small_call(tmp_path, library_thresholds):
    model, tokens, _ = _models(tmp_path)[0]
    x, lengths = _input(np.random.default_rng(3), model, 1, 6, tokens)
    model.predict(x, lengths, engine="numba")
    assert isinstance(next(iter(model._small_calls.values())), SmallCall)
    bad = x.copy()
    bad[0, lengths[0] - 1] = 40
    with pytest.raises(InputError, match="token id 40 at step"):
        model.predict(bad, lengths, engine="numba")
    with pytest.raises(InputError, match="out of range"):
        model.predict(x, lengths + 1, engine="numba")


def test_threads_share_a_small_call_and_keep_each_calls_bits(tmp_path, monkeypatch, library_thresholds):
    import threading

    model, tokens, _ = _models(tmp_path)[0]
    rng = np.random.default_rng(4)
    cases = [_input(rng, model, B, T, tokens) for B in (1, 2) for T in (3, 8)]
    want = [_general(monkeypatch, lambda x=x, n=n: model.predict(x, n, engine="numba")) for x, n in cases]
    errors, start = [], threading.Barrier(4)

    def work(seed):
        start.wait()
        try:
            for i in np.random.default_rng(seed).permutation(len(cases) * 20) % len(cases):
                np.testing.assert_array_equal(model.predict(*cases[i], engine="numba", threads=2), want[i])
        except AssertionError as exc:
            errors.append(exc)

    running = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in running:
        t.start()
    for t in running:
        t.join()
    assert not errors, errors[0]
    assert all(isinstance(s, SmallCall) for s in model._small_calls.values()) and len(model._small_calls) == len(cases)
