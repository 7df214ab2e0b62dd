"""The embedding + bidirectional LSTM text classifier of the sentiment tutorials, as a benchmark case.

Model (PyTorch): ``nn.Embedding(V, E, padding_idx=0)`` -> bidirectional
``nn.LSTM(E, H)`` fed packed sequences -> mean over each sequence's valid
steps -> ``nn.Linear(2H, 1)`` -> sigmoid. Data: padded token batches (ids in
[1, V), 0 past each length), lengths uniform in the case's range.

rnnjit runs it the way a user would: ``torch.save(model.state_dict())``,
``rnnjit.convert(..., chain="embedding,rnn,pool:mean,fc,sigmoid")``,
``rnnjit.load`` of the written bundle, ``model.predict(ids, lengths=...)``:
the whole chain (embedding, recurrent module, pooling, head) through the
public API only, so the case measures whatever the kernels do inside it.

Engines (the same names as the recurrent grid, so the report's columns fit):
- ``rnnjit``: ``Model.predict``, numba engine;
- ``torch_packed``: the model's own forward (``pack_padded_sequence``), the
  numbers rnnjit must match (the parity oracle);
- ``torch``: the same module on the padded batch, masked mean: what a user who
  does not pack runs; faster per call, but its reverse direction starts on
  the padding, so its scores are not the model's (its difference is shown);
- ``onnxruntime``: the packed forward exported with ``torch.onnx``, where it exports.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from bench.cases import Case

CHAIN = "embedding,rnn,pool:mean,fc,sigmoid"
PARITY_ATOL = 1e-5  # the float32 parity budget of tests/test_parity.py


def build_net(case: Case, torch):
    """The tutorial's module, in eval mode, seeded."""
    nn = torch.nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    class TextClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(case.vocab, case.I, padding_idx=0)
            self.rnn = nn.LSTM(case.I, case.H, bidirectional=True, batch_first=True)
            self.fc = nn.Linear(2 * case.H, 1)

        def forward(self, ids, lengths, packed: bool = True):
            T = ids.shape[1]
            e = self.embedding(ids)
            if packed:
                p = pack_padded_sequence(e, lengths, batch_first=True, enforce_sorted=False)
                out, _ = pad_packed_sequence(self.rnn(p)[0], batch_first=True, total_length=T)
            else:
                out = self.rnn(e)[0]
            mask = (torch.arange(T)[None, :] < lengths[:, None]).to(out.dtype)
            pooled = (out * mask[..., None]).sum(1) / lengths[:, None].to(out.dtype)
            return torch.sigmoid(self.fc(pooled))

    torch.manual_seed(0)
    return TextClassifier().eval()


class TextBench:
    """One text-classifier case: the torch module, the converted rnnjit model, the token batch."""

    def __init__(self, case: Case, torch):
        self.case = case
        self.net = build_net(case, torch)
        rng = np.random.default_rng(0)
        lo, hi = case.varlen
        self.lengths = rng.integers(lo, hi + 1, case.B).astype(np.int64)
        self.lengths[0] = case.T  # the padded width is the longest sequence, as a collate function pads
        self.ids = rng.integers(1, case.vocab, (case.B, case.T)).astype(np.int64)
        self.ids[np.arange(case.T)[None, :] >= self.lengths[:, None]] = 0
        self.steps = int(self.lengths.sum())
        self.ids_t, self.lengths_t = torch.from_numpy(self.ids), torch.from_numpy(self.lengths)
        with tempfile.TemporaryDirectory() as d:
            torch.save(self.net.state_dict(), Path(d) / "text_classifier.pth")
            import rnnjit

            rnnjit.convert(Path(d) / "text_classifier.pth", Path(d) / "text_classifier.npz", chain=CHAIN)
            self.model = rnnjit.load(Path(d) / "text_classifier.npz")
        with torch.inference_mode():
            self.expected = self.net(self.ids_t, self.lengths_t).numpy()  # the parity oracle
        self._ort = None

    def onnx_session(self, threads: int):
        """An onnxruntime session for the packed forward, or a string saying why there is none."""
        if self._ort is None:
            self._ort = _export_onnx(self, threads)
        return self._ort


def _export_onnx(b: TextBench, threads: int):
    from bench.conftest import onnx_session

    try:
        import torch
    except ImportError as exc:
        return f"not installed: {exc.name}"
    axes = {"ids": {0: "batch", 1: "time"}, "lengths": {0: "batch"}}
    return onnx_session(b.net, (b.ids_t[:3, :5], torch.tensor([5, 3, 2])), ["ids", "lengths"], axes, threads)


def text_runner(b: TextBench, engine: str, threads: int):
    """A zero-argument callable returning (B, 1) scores with ``engine``, or a string saying why it cannot run."""
    import torch

    if engine == "rnnjit":
        model, ids, lengths = b.model, b.ids, b.lengths
        return lambda: model.predict(ids, lengths=lengths, engine="numba", threads=threads)
    if engine in ("torch", "torch_packed"):
        packed = engine == "torch_packed"

        def run_torch():
            with torch.inference_mode():
                return b.net(b.ids_t, b.lengths_t, packed).numpy()

        return run_torch
    if engine == "onnxruntime":
        sess = b.onnx_session(threads)
        if isinstance(sess, str):
            return sess
        feed = {"ids": b.ids, "lengths": b.lengths}
        try:
            y = sess.run(None, feed)[0]
        except Exception as exc:
            return f"onnxruntime cannot run the exported model: {type(exc).__name__}: {str(exc)[:160]}"
        diff = float(np.abs(y - b.expected).max())
        if not diff <= PARITY_ATOL:
            return f"the exported model does not compute the packed model (max abs diff {diff:.1e} vs torch)"
        return lambda: sess.run(None, feed)[0]
    raise ValueError(engine)


def max_abs_diff(b: TextBench, y) -> float:
    """Largest difference between ``y`` and the model's own (packed) torch forward."""
    return float(np.abs(np.asarray(y, dtype=np.float64).reshape(b.expected.shape) - b.expected).max())
