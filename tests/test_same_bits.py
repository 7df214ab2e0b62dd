"""Same bits for a row whatever the batch (DESIGN.md section 6, README "Same bits for a row").

A row's score must not depend on how many rows are scored with it, which
rows those are, or the thread count, on either engine. The models are torch
made (`ChainNet`) and span every product the chain runs: recurrent gates,
an LSTMP projection, a linear layer in front, per-step and per-sequence
heads with several outputs, LayerNorm, pooling, token ids. CI runs this file
with the OPENBLAS variables set and unset.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pyarrow as pa
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import rnnjit  # noqa: E402
from chain_models import ChainNet, float_batch, token_batch  # noqa: E402
from rnnjit.scoring import ScoreOptions, score_batch  # noqa: E402

ROWS = 64
SPLITS = (1, 3, 7, 64)

MODELS = {
    "lstm-fc3-softmax": (lambda: [("lstm", nn.LSTM(4, 24, batch_first=True)), ("fc", nn.Linear(24, 3)), "softmax"],
                         "last"),
    "bigru2-pool-ln-fc": (lambda: [("gru", nn.GRU(4, 16, num_layers=2, bidirectional=True, batch_first=True)),
                                   "pool:mean", ("ln", nn.LayerNorm(32)), ("fc", nn.Linear(32, 2))], "all"),
    "lstmp-per-step-fc": (lambda: [("lstm", nn.LSTM(4, 24, proj_size=8, batch_first=True)), ("fc", nn.Linear(8, 5)),
                                   "log_softmax"], "all"),
    "fc-rnn-relu-fc": (lambda: [("inp", nn.Linear(4, 12)), ("rnn", nn.RNN(12, 20, nonlinearity="relu",
                                                                        batch_first=True)), ("fc", nn.Linear(20, 4))],
                       "final"),
    "emb-lstm-fc": (lambda: [("emb", nn.Embedding(50, 6)), ("lstm", nn.LSTM(6, 24, batch_first=True)),
                             ("fc", nn.Linear(24, 3))], "last"),
}


@pytest.fixture(scope="module", params=list(MODELS), ids=lambda k: f"model={k!r}")
def case(request, tmp_path_factory):
    build, output = MODELS[request.param]
    net = ChainNet(build(), output=output, seed=3)
    d = tmp_path_factory.mktemp("same_bits")
    torch.save(net.state_dict(), d / "m.pth")
    chain = net.chain_spec().replace(",rnn,", ",rnn:relu,") if "relu" in request.param else net.chain_spec()
    model = rnnjit.convert(d / "m.pth", d / "m.npz", chain=chain, output=output)
    rng = np.random.default_rng(11)
    if model.takes_tokens:
        x, lengths = token_batch(rng, 50, ROWS, 13)
    else:
        x, lengths = float_batch(rng, 4, ROWS, 13)
    return model, x, lengths


def _blas_threads(n):
    """Limit numpy's BLAS to n threads where threadpoolctl is installed (the numpy engine's only threads)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(n)


def _rows(model, x, lengths, idx, engine, threads):
    """Score rows ``idx`` as one batch, trimmed to their own length (per-step outputs), one array per row."""
    sub_len = lengths[idx]
    sub = x[idx][:, : int(sub_len.max())]
    with _blas_threads(threads):
        y = model.predict(sub, lengths=sub_len, engine=engine, threads=threads if engine == "numba" else None)
    return [y[i, : sub_len[i]] if y.ndim == 3 else y[i] for i in range(len(idx))]


def _splits(rng):
    """(name, list of index batches): in order at several batch sizes, and shuffled companions."""
    order = np.arange(ROWS)
    for size in SPLITS:
        yield f"batch-rows {size}", [order[i : i + size] for i in range(0, ROWS, size)]
    for k in range(2):
        perm = rng.permutation(ROWS)
        cuts = np.sort(rng.choice(np.arange(1, ROWS), size=6, replace=False))
        yield f"shuffled {k}", np.split(perm, cuts)


@pytest.mark.parametrize("threads", [1, 2], ids=lambda n: f"threads={n}")
def test_a_rows_bits_do_not_depend_on_its_batch(case, engine, threads):
    model, x, lengths = case
    ref = _rows(model, x, lengths, np.arange(ROWS), engine, 2)
    for name, batches in _splits(np.random.default_rng(threads)):
        for idx in batches:
            for row, got in zip(idx, _rows(model, x, lengths, idx, engine, threads)):
                assert got.tobytes() == ref[row].tobytes(), (
                    f"{name}, threads={threads}: row {row} differs by {np.abs(got - ref[row]).max():.3g}")


def test_arrow_batches_score_rows_the_same_whatever_the_split(case, engine):
    """Through `score_batch`, the function every runner calls (local, Spark, resume)."""
    model, x, lengths = case
    if model.takes_tokens:
        col = pa.array([list(map(int, x[b, : lengths[b]])) for b in range(ROWS)], pa.list_(pa.int64()))
    else:
        col = pa.array([x[b, : lengths[b]].tolist() for b in range(ROWS)], pa.list_(pa.list_(pa.float32())))
    table = pa.table({"id": np.arange(ROWS), "features": col})
    opts = ScoreOptions(engine=engine)
    whole = score_batch(model, table, opts).column("score").to_pylist()
    for size in (1, 5, 17):
        parts = [score_batch(model, table.slice(i, size), opts).column("score").to_pylist()
                 for i in range(0, ROWS, size)]
        assert [v for p in parts for v in p] == whole, f"batch of {size} rows"
