"""Session fixtures for the benchmarks: models and data built once, engines set to the same threads.

Run: ``python -m pytest bench --benchmark-enable`` (pyproject's addopts
disable benchmarks for the unit tests; ``--benchmark-enable`` turns them on).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

from bench.cases import CASES, THREADS, Case


def pytest_configure(config):
    # Exporters and torch warn about their own internals (TorchScript-based
    # export deprecation, batch_first RNN export); none concerns the numbers.
    for line in (
        "ignore::DeprecationWarning",
        "ignore::UserWarning",
        "ignore::FutureWarning",
    ):
        config.addinivalue_line("filterwarnings", line)


@pytest.fixture(scope="session")
def threads() -> int:
    return THREADS


@pytest.fixture(scope="session")
def torch_mod(threads):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(threads)
    return torch


class Bench:
    """Everything one case needs, built lazily and kept for the session."""

    def __init__(self, case: Case, torch):
        self.case = case
        rng = np.random.default_rng(0)
        torch.manual_seed(0)
        kw = dict(num_layers=case.layers, bidirectional=case.bidir, batch_first=True)
        if case.cell == "lstm":
            self.module = torch.nn.LSTM(case.I, case.H, proj_size=case.proj, **kw)
        elif case.cell == "gru":
            self.module = torch.nn.GRU(case.I, case.H, **kw)
        else:
            self.module = torch.nn.RNN(case.I, case.H, nonlinearity=case.cell[4:], **kw)
        self.module.eval()
        if case.dtype == "float64":
            self.module.double()
        self.weights = {k: v.detach().numpy().copy() for k, v in self.module.state_dict().items()}
        self.x = rng.standard_normal((case.B, case.T, case.I)).astype(case.dtype)
        if case.varlen:
            lo, hi = case.varlen
            self.lengths = rng.integers(lo, hi + 1, case.B).astype(np.int64)
        else:
            self.lengths = np.full(case.B, case.T, np.int64)
        self.xt = torch.from_numpy(self.x)
        self.steps = int(self.lengths.sum())
        self._model = None
        self._prepared = None
        self._ort = None

    @property
    def model(self):
        """The module as `rnnjit.Model` (one recurrent module, no head): what ``rnnjit.load`` gives a user."""
        if self._model is None:
            from rnnjit.model import Model
            from rnnjit.spec import RNNSpec

            c = self.case
            spec = RNNSpec(c.cell, c.I, c.H, c.layers, c.bidir, True, c.proj)
            self._model = Model(spec, (), self.weights, dtype=c.dtype)
        return self._model

    @property
    def prepared(self):
        """The module packed for `rnnjit.kernels.run`: for tools that time one kernel path (bench/small_batch.py)."""
        if self._prepared is None:
            from rnnjit import kernels

            self._prepared = kernels.prepare(self.model.spec, self.model.weights)
        return self._prepared

    def onnx_session(self, threads: int):
        """An onnxruntime session for the exported module, or a string saying why there is none."""
        if self._ort is None:
            self._ort = _export_onnx(self, threads)
        return self._ort


def _export_onnx(b: Bench, threads: int):
    if b.case.proj:
        return "torch.onnx cannot export LSTM with proj_size (no ONNX LSTM projection)"
    try:
        import torch
    except ImportError as exc:
        return f"not installed: {exc.name}"

    class Outputs(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x)[0]

    axes = {"x": {0: "batch", 1: "time"}, "y": {0: "batch", 1: "time"}}
    return onnx_session(Outputs(b.module), (b.xt[:2, :3],), ["x"], axes, threads)


def onnx_session(module, example: tuple, input_names: list[str], dynamic_axes: dict, threads: int):
    """``module`` exported with torch.onnx (output "y") in an onnxruntime session on ``threads``, or why not."""
    try:
        import onnxruntime as ort
        import torch
    except ImportError as exc:
        return f"not installed: {exc.name}"
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, example, buf, input_names=input_names, output_names=["y"],
                              dynamic_axes=dynamic_axes, dynamo=False)  # fmt: skip
    except Exception as exc:  # pragma: no cover - depends on the torch version
        return f"torch.onnx.export failed: {type(exc).__name__}: {str(exc)[:160]}"
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # pragma: no cover - depends on the onnxruntime version
        return f"onnxruntime cannot load the exported model: {type(exc).__name__}: {str(exc)[:160]}"


class Benches(dict):
    """Each case's `Bench`, built when first asked for; `test_engine` drops a case after its last engine.

    (Keeping all 32 cases alive, onnxruntime's per-session memory arenas grew
    the process to 22 GB and it was killed.)
    """

    def __init__(self, torch):
        super().__init__()
        self.torch = torch

    def __missing__(self, name):
        self[name] = b = Bench(next(c for c in CASES if c.name == name), self.torch)
        return b


@pytest.fixture(scope="session")
def benches(torch_mod):
    return Benches(torch_mod)


def runner(b: Bench, engine: str, threads: int):
    """A zero-argument callable timing ``engine`` on ``b``, or a string saying why it cannot run."""
    import torch

    c = b.case
    if engine in ("rnnjit", "rnnjit_all"):  # the public entry, Model.predict, as a user calls it
        output = "last" if engine == "rnnjit" else "all"
        model, x, lengths = b.model, b.x, b.lengths
        return lambda: model.predict(x, lengths, output=output, engine="numba", threads=threads)
    if engine == "torch":

        def run_torch():
            with torch.inference_mode():
                return b.module(b.xt)

        return run_torch
    if engine == "torch_packed":
        if not c.varlen:
            return "packed input only differs from padded with variable lengths"
        from torch.nn.utils.rnn import pack_padded_sequence

        lengths = torch.from_numpy(b.lengths)

        def run_packed():
            with torch.inference_mode():
                return b.module(pack_padded_sequence(b.xt, lengths, batch_first=True, enforce_sorted=False))

        return run_packed
    if engine == "onnxruntime":
        sess = b.onnx_session(threads)
        if isinstance(sess, str):
            return sess
        feed = {"x": b.x}
        try:
            sess.run(None, feed)
        except Exception as exc:  # e.g. no float64 kernel for the exported op
            return f"onnxruntime cannot run it: {type(exc).__name__}: {str(exc)[:120]}"
        return lambda: sess.run(None, feed)
    raise ValueError(engine)


@pytest.fixture(scope="session")
def text_benches(torch_mod):
    """Each text-classifier case's `TextBench` (model converted, data drawn), built when first asked for."""
    from bench.cases import TEXT_CASES
    from bench.text_classifier import TextBench

    class TextBenches(dict):
        def __missing__(self, name):
            self[name] = b = TextBench(next(c for c in TEXT_CASES if c.name == name), torch_mod)
            return b

    return TextBenches()
