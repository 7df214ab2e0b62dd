"""The benchmark grid, shared by the pytest-benchmark suites and the report.

``RNNJIT_BENCH_QUICK=1`` shrinks batch and sequence length (same cells and
widths) so CI can run the whole suite in well under a minute of timing.
``RNNJIT_BENCH_THREADS`` (default 2) sets the threads of every engine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

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

    def shrunk(self) -> Case:
        if not QUICK:
            return self
        B = 1 if self.B == 1 else min(self.B, 256)
        T = min(self.T, 20)
        varlen = (2, 20) if self.varlen else None
        return Case(self.name, self.cell, B, T, self.I, self.H, self.layers, self.bidir, self.proj, varlen, self.note)

    @property
    def shape(self) -> str:
        s = f"B={self.B} T={self.T} I={self.I} H={self.H}"
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


CASES = [
    c.shrunk()
    for c in (
        Case("lstm_h32", "lstm", 4096, 100, 32, 32),
        Case("lstm_h128", "lstm", 4096, 100, 32, 128),
        Case("lstm_h512", "lstm", 1024, 100, 64, 512),
        Case("lstm_2layer", "lstm", 4096, 100, 32, 128, layers=2),
        Case("lstm_bidir", "lstm", 4096, 100, 32, 128, bidir=True),
        Case("lstmp_h256_p64", "lstm", 4096, 100, 32, 256, proj=64),
        Case("gru_h128", "gru", 4096, 100, 32, 128),
        Case("rnn_tanh_h128", "rnn_tanh", 4096, 100, 32, 128),
        Case("lstm_varlen", "lstm", 4096, 200, 32, 128, varlen=(10, 200)),
        Case("lstm_latency_b1", "lstm", 1, 100, 32, 128),
    )
]
BY_NAME = {c.name: c for c in CASES}

# Engines timed on every case (where they can run it):
# - rnnjit: the numba engine, output "last" (what scoring returns by default);
# - rnnjit_all: the numba engine returning every step's output, like torch does;
# - torch: nn.LSTM/GRU/RNN forward, padded input, torch.inference_mode();
# - torch_packed: varlen only, pack_padded_sequence(enforce_sorted=False) + forward;
# - onnxruntime: the torch module exported with torch.onnx (padded input).
ENGINES = ("rnnjit", "rnnjit_all", "torch", "torch_packed", "onnxruntime")
