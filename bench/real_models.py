"""Five architectures that ship pretrained recurrent models, as whole-model benchmark cases (issue 17).

Random weights of the real shapes (speed does not depend on the values):

- ``speaker``: speaker encoder, LSTM 40->256 x3 layers, last layer's final
  state, linear 256->256, relu (B=256, T=160);
- ``beat``: beat tracker, linear 262->150, LSTM 150 x2 layers, linear 3 and
  softmax per frame (B=64, T=375);
- ``ocr``: OCR sequence head, [BiLSTM 256 + linear 512->256] x2, linear 97
  per column (B=64, T=199);
- ``tagger``: polyphone tagger, embedding 5398x64, BiLSTM 32, linear 64->32,
  relu, linear 876 per token, ragged lengths 8..40 (B=2048; torch packed);
- ``onset``: onset detector, bidirectional RNN tanh 266->25 x3 layers,
  linear 50->1 and sigmoid per frame (B=32, T=1000).

rnnjit runs each the way a user does: ``torch.save(state_dict)``,
``rnnjit.convert(..., chain=...)``, ``rnnjit.load``, ``Model.predict``.
Engines: ``rnnjit`` (predict, numba), ``torch`` (the model's own forward,
packed where lengths vary), ``onnxruntime`` and ``openvino`` (the same
forward exported with torch.onnx; OpenVINO compiled with
``INFERENCE_PRECISION_HINT=f32``: its default on a CPU with AVX512_BF16 is
bf16, which is not the model's numbers). Each engine's first call is checked
against torch (``max_abs_diff``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bench.cases import QUICK

PARITY_ATOL = 1e-4  # whole models: float32 rounding through up to 6 recurrent layers and a wide output layer


@dataclass(frozen=True)
class RealCase:
    """One architecture at one batch: ``arch`` picks the module (`build_net`), ``B``/``T`` the batch."""

    name: str
    arch: str
    B: int
    T: int
    varlen: tuple[int, int] | None = None

    @property
    def shape(self) -> str:
        s = f"B={self.B} T={self.T}" + (f" len~U[{self.varlen[0]},{self.varlen[1]}]" if self.varlen else "")
        return f"{ARCHS[self.arch][0]}, {s}"

    def shrunk(self) -> RealCase:
        if not QUICK:
            return self
        T = min(self.T, 40)
        return replace(self, B=min(self.B, 64), T=T, varlen=(min(self.varlen[0], T), T) if self.varlen else None)


ARCHS = {  # arch: (description, chain, output mode)
    "speaker": ("LSTM 40->256 x3, final state, linear 256 + relu", "lstm,fc,relu", "final"),
    "beat": ("linear 262->150, LSTM 150 x2, linear 3 + softmax per frame", "fc_in,lstm,fc_out,softmax", "all"),
    "ocr": ("[BiLSTM 256 + linear 512->256] x2, linear 97 per column", "rnn1,fc1,rnn2,fc2,out", "all"),
    "tagger": ("embedding 5398x64, BiLSTM 32, linear 32, relu, linear 876 per token",
               "emb,lstm,fc1,relu,fc2", "all"),  # fmt: skip
    "onset": ("BiRNN tanh 266->25 x3, linear 1 + sigmoid per frame", "rnn,fc,sigmoid", "all"),
}

NAMES = {"speaker": "speaker_encoder", "beat": "beat_tracker", "ocr": "ocr_head", "tagger": "polyphone_tagger",
         "onset": "onset_detector"}
REAL_CASES = [
    c.shrunk()
    for c in (
        RealCase("speaker_encoder", "speaker", 256, 160),
        RealCase("beat_tracker", "beat", 64, 375),
        RealCase("ocr_head", "ocr", 64, 199),
        RealCase("polyphone_tagger", "tagger", 2048, 40, varlen=(8, 40)),
        RealCase("onset_detector", "onset", 32, 1000),
        *(RealCase(f"{NAMES[a]}_b1", a, 1, {"speaker": 160, "beat": 375, "ocr": 199, "tagger": 24, "onset": 1000}[a])
          for a in ARCHS),
    )
]


def build_net(arch: str, torch):
    """The architecture's module, in eval mode, seeded; ``forward(x, lengths)`` is its own forward."""
    nn = torch.nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            if arch == "speaker":
                self.lstm = nn.LSTM(40, 256, 3, batch_first=True)
                self.fc = nn.Linear(256, 256)
            elif arch == "beat":
                self.fc_in = nn.Linear(262, 150)
                self.lstm = nn.LSTM(150, 150, 2, batch_first=True)
                self.fc_out = nn.Linear(150, 3)
            elif arch == "ocr":
                self.rnn1 = nn.LSTM(256, 256, bidirectional=True, batch_first=True)
                self.fc1 = nn.Linear(512, 256)
                self.rnn2 = nn.LSTM(256, 256, bidirectional=True, batch_first=True)
                self.fc2 = nn.Linear(512, 256)
                self.out = nn.Linear(256, 97)
            elif arch == "tagger":
                self.emb = nn.Embedding(5398, 64)
                self.lstm = nn.LSTM(64, 32, bidirectional=True, batch_first=True)
                self.fc1 = nn.Linear(64, 32)
                self.fc2 = nn.Linear(32, 876)
            else:
                self.rnn = nn.RNN(266, 25, 3, bidirectional=True, batch_first=True)
                self.fc = nn.Linear(50, 1)

        def forward(self, x, lengths):
            if arch == "speaker":
                _, (h, _) = self.lstm(x)
                return torch.relu(self.fc(h[-1]))
            if arch == "beat":
                return torch.softmax(self.fc_out(self.lstm(self.fc_in(x))[0]), dim=-1)
            if arch == "ocr":
                y = self.fc1(self.rnn1(x)[0])
                return self.out(self.fc2(self.rnn2(y)[0]))
            if arch == "tagger":
                T = x.shape[1]
                p = pack_padded_sequence(self.emb(x), lengths, batch_first=True, enforce_sorted=False)
                y, _ = pad_packed_sequence(self.lstm(p)[0], batch_first=True, total_length=T)
                return self.fc2(torch.relu(self.fc1(y)))
            return torch.sigmoid(self.fc(self.rnn(x)[0]))

    torch.manual_seed(0)
    return Net().eval()


class RealBench:
    """One case: the torch module, the converted rnnjit model, the batch and the torch output."""

    def __init__(self, case: RealCase, torch):
        self.case = case
        arch = case.arch
        self.net = build_net(arch, torch)
        rng = np.random.default_rng(0)
        B, T = case.B, case.T
        if case.varlen:
            self.lengths = rng.integers(case.varlen[0], case.varlen[1] + 1, B).astype(np.int64)
            self.lengths[0] = T  # the padded width is the longest sequence, as a collate function pads
        else:
            self.lengths = np.full(B, T, np.int64)
        if arch == "tagger":
            self.x = rng.integers(0, 5398, (B, T)).astype(np.int64)
            self.x[np.arange(T)[None, :] >= self.lengths[:, None]] = 0
        else:
            width = {"speaker": 40, "beat": 262, "ocr": 256, "onset": 266}[arch]
            self.x = rng.standard_normal((B, T, width)).astype(np.float32)
        self.steps = int(self.lengths.sum())
        self.xt, self.lengths_t = torch.from_numpy(self.x), torch.from_numpy(self.lengths)
        _, chain, output = ARCHS[arch]
        with tempfile.TemporaryDirectory() as d:
            torch.save(self.net.state_dict(), Path(d) / f"{arch}.pth")
            import rnnjit

            rnnjit.convert(Path(d) / f"{arch}.pth", Path(d) / f"{arch}.npz", chain=chain, output=output,
                           reference=False)  # fmt: skip
            self.model = rnnjit.load(Path(d) / f"{arch}.npz")
        with torch.inference_mode():
            self.expected = self.net(self.xt, self.lengths_t).numpy()
        self.onnx = None  # bytes of the exported model, or why there is none
        self._sessions = {}

    def exported(self):
        if self.onnx is None:
            self.onnx = _export(self)
        return self.onnx

    def session(self, engine: str, threads: int):
        """A callable running ``engine`` (onnxruntime / openvino) on the batch, or a string saying why not."""
        if engine not in self._sessions:
            self._sessions[engine] = _session(self, engine, threads)
        return self._sessions[engine]


def _export(b: RealBench):
    try:
        import io
        import warnings

        import torch
    except ImportError as exc:
        return f"not installed: {exc.name}"
    buf = io.BytesIO()
    x_ex = torch.zeros((3, 6, *b.xt.shape[2:]), dtype=b.xt.dtype)  # an example batch of 3 (the case's may have 1)
    axes = {"x": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, "y": {0: "batch"}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(b.net, (x_ex, torch.tensor([6, 4, 2])), buf, input_names=["x", "lengths"],
                              output_names=["y"], dynamic_axes=axes, dynamo=False)  # fmt: skip
    except Exception as exc:  # pragma: no cover - depends on the torch version
        return f"torch.onnx.export failed: {type(exc).__name__}: {str(exc)[:160]}"
    return buf.getvalue()


def _session(b: RealBench, engine: str, threads: int):
    onnx = b.exported()
    if isinstance(onnx, str):
        return onnx
    feed = {"x": b.x, "lengths": b.lengths}
    try:
        if engine == "onnxruntime":
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(onnx, so, providers=["CPUExecutionProvider"])
            names = {i.name for i in sess.get_inputs()}  # an unused input (lengths) is dropped by the exporter
            feed = {k: v for k, v in feed.items() if k in names}
            fn = lambda: sess.run(None, feed)[0]  # noqa: E731
        else:
            import openvino as ov

            core = ov.Core()
            model = core.read_model(onnx, b"")
            names = {n for i in model.inputs for n in i.get_names()}
            feed = {k: v for k, v in feed.items() if k in names}
            compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                         "INFERENCE_NUM_THREADS": threads})  # fmt: skip
            req = compiled.create_infer_request()
            fn = lambda: req.infer(feed)[0]  # noqa: E731
        y = np.asarray(fn())
    except ImportError as exc:
        return f"not installed: {exc.name}"
    except Exception as exc:  # the exported graph may not run on this runtime
        return f"{engine} cannot run the exported model: {type(exc).__name__}: {str(exc)[:160]}"
    diff = max_abs_diff(b, y)
    if not diff <= PARITY_ATOL:
        return f"the exported model does not compute the torch model (max abs diff {diff:.1e})"
    return fn


def real_runner(b: RealBench, engine: str, threads: int):
    """A zero-argument callable returning the model's output with ``engine``, or a string saying why it cannot run."""
    import torch

    if engine == "rnnjit":
        model, x, lengths = b.model, b.x, b.lengths
        return lambda: model.predict(x, lengths=lengths, engine="numba", threads=threads)
    if engine == "torch":

        def run_torch():
            with torch.inference_mode():
                return b.net(b.xt, b.lengths_t).numpy()

        return run_torch
    if engine in ("onnxruntime", "openvino"):
        return b.session(engine, threads)
    raise ValueError(engine)


def max_abs_diff(b: RealBench, y) -> float:
    """Largest difference from the model's own torch forward, on valid steps (torch pads with its own values)."""
    y = np.asarray(y, dtype=np.float64).reshape(b.expected.shape)
    e = b.expected
    if y.ndim == 3:
        valid = (np.arange(y.shape[1])[None, :] < b.lengths[:, None])[:, :, None]
        y, e = np.where(valid, y, 0), np.where(valid, e, 0)
    return float(np.abs(y - e).max())
