"""The benchmark grid, shared by the pytest-benchmark suites and the report.

LSTM and GRU at H = 16..1024 (LSTM also at 192 and 384), the other cells and
layouts at H=128, float64 on two shapes, and a batch curve B = 1, 2, 4, ...,
256 (LSTM H=128, T=100) for the small-batch paths; and a whole model, the
embedding + bidirectional LSTM text classifier (``TEXT_CASES``).

``RNNJIT_BENCH_QUICK=1`` shrinks batch and sequence length (same cells and
widths) so CI can run the whole suite in well under a minute of timing.
``RNNJIT_BENCH_THREADS`` (default 2) sets the threads of every engine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

QUICK = os.environ.get("RNNJIT_BENCH_QUICK", "") not in ("", "0")
THREADS = int(os.environ.get("RNNJIT_BENCH_THREADS", "2"))
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


@dataclass(frozen=True)
class Case:
    """One shape: a recurrent module and a batch (B sequences of T steps of I features)."""

    name: str
    cell: str
    B: int
    T: int
    I: int
    H: int
    layers: int = 1
    bidir: bool = False
    proj: int = 0
    varlen: tuple[int, int] | None = None  # lengths uniform in [lo, hi]; T is then hi
    note: str = ""
    dtype: str = "float32"
    vocab: int = 0  # > 0: token ids from a vocabulary of this size feed an embedding of width I

    def shrunk(self) -> Case:
        if not QUICK:
            return self
        B = self.B if self.B <= 256 else 256
        T = min(self.T, 20)
        varlen = (2, 20) if self.varlen else None
        return replace(self, B=B, T=T, varlen=varlen)

    @property
    def shape(self) -> str:
        s = f"B={self.B} T={self.T} " + (f"V={self.vocab} E={self.I}" if self.vocab else f"I={self.I}") + f" H={self.H}"
        s += f" {self.dtype}" if self.dtype != "float32" else ""
        s += (f" L={self.layers}" if self.layers > 1 else "") + (" bidir" if self.bidir else "")
        s += (f" proj={self.proj}" if self.proj else "") + (f" len~U[{self.varlen[0]},{self.varlen[1]}]" if self.varlen else "")
        return s

    @property
    def h_out(self) -> int:
        return self.proj or self.H

    def flops(self, total_steps: int) -> float:
        """Multiply-adds x2 of the recurrent stack for ``total_steps`` valid (sequence, step) pairs."""
        g, D = GATES[self.cell], 2 if self.bidir else 1
        per_step = 0.0
        for layer in range(self.layers):
            in_size = self.I if layer == 0 else D * self.h_out
            per_dir = 2 * g * self.H * (in_size + self.h_out)
            if self.proj:
                per_dir += 2 * self.H * self.proj
            per_step += D * per_dir
        return per_step * total_steps


# Hidden sizes 16..1024 for LSTM and GRU (batch and length shrink as H grows,
# so every call takes well under a second), then the other cells and
# layouts, float64 on two shapes, and a batch curve at T=100, H=128.
_SIZES = [  # (H, B, T, I)
    (16, 4096, 100, 32), (32, 4096, 100, 32), (64, 4096, 100, 32), (128, 4096, 100, 32),
    (192, 2048, 60, 64), (256, 2048, 60, 64), (384, 768, 60, 128), (512, 1024, 100, 64), (1024, 256, 30, 64),
]
_GRU_SIZES = (16, 32, 64, 128, 256, 512, 1024)
BATCH_CURVE = (1, 2, 4, 8, 16, 32, 64, 128, 256)

CASES = [
    c.shrunk()
    for c in (
        *(Case(f"lstm_h{H}", "lstm", B, T, I, H) for H, B, T, I in _SIZES),
        *(Case(f"gru_h{H}", "gru", B, T, I, H) for H, B, T, I in _SIZES if H in _GRU_SIZES),
        Case("lstm_2layer", "lstm", 4096, 100, 32, 128, layers=2),
        Case("lstm_bidir", "lstm", 4096, 100, 32, 128, bidir=True),
        Case("lstmp_h256_p64", "lstm", 4096, 100, 32, 256, proj=64),
        Case("rnn_tanh_h128", "rnn_tanh", 4096, 100, 32, 128),
        Case("lstm_varlen", "lstm", 4096, 200, 32, 128, varlen=(10, 200)),
        Case("lstm_h64_f64", "lstm", 1024, 100, 32, 64, dtype="float64"),
        Case("gru_h128_f64", "gru", 1024, 100, 32, 128, dtype="float64"),
        *(Case(f"lstm_b{B}", "lstm", B, 100, 32, 128) for B in BATCH_CURVE),
    )
]
BY_NAME = {c.name: c for c in CASES}

# The embedding + bidirectional LSTM text classifier of the sentiment
# tutorials (bench/text_classifier.py): padded token batches, lengths
# U[8, 64], mean pool, linear, sigmoid; timed through the public API.
TEXT_CASES = [Case("text_classifier", "lstm", 1024, 64, 64, 128, bidir=True, varlen=(8, 64), vocab=20000).shrunk()]

# Engines timed on every case (where they can run it):
# - rnnjit: the numba engine, output "last" (what scoring returns by default);
# - rnnjit_all: the numba engine returning every step's output, like torch does;
# - torch: nn.LSTM/GRU/RNN forward, padded input, torch.inference_mode();
# - torch_packed: varlen only, pack_padded_sequence(enforce_sorted=False) + forward;
# - onnxruntime: the torch module exported with torch.onnx (padded input).
ENGINES = ("rnnjit", "rnnjit_all", "torch", "torch_packed", "onnxruntime")
