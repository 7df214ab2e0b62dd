"""Recurrent stacks at a batch of one, other widths, depths and lengths than the real models, against the peers.

    python -m bench.b1_variants [--rounds 9] [--threads 2] [--paths]

Each case is a torch ``nn.LSTM``/``nn.GRU`` with torch's own initial
weights, scored by ``rnnjit.kernels.run`` (the recurrent stack alone, as
`Model.predict` runs it), by the module's own forward and by onnxruntime on
its ONNX export, all on ``--threads`` threads; rnnjit's output is checked
against torch first. Each round runs every engine in a new random order, 5
calls each, and keeps the best call; printed: the median over rounds of
those bests, in ms, and other/rnnjit. ``--paths`` adds rnnjit's paths side
by side: teams layer after layer, the wavefront, one thread (the team and
wavefront pauses are reset before every call, so each row times its path).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

import numpy as np

from bench.predict_overhead import time_rounds
from rnnjit import kernels
from rnnjit.kernels import team_policy
from rnnjit.spec import RNNSpec

CASES = [  # cell, input size, hidden size, layers, bidirectional, steps
    ("lstm", 40, 192, 3, False, 160), ("lstm", 40, 256, 2, False, 160), ("lstm", 40, 256, 3, False, 160),
    ("lstm", 40, 256, 5, False, 160), ("lstm", 40, 256, 3, False, 400), ("lstm", 40, 384, 3, False, 160),
    ("lstm", 40, 512, 2, False, 160), ("lstm", 256, 192, 2, True, 199), ("lstm", 256, 256, 2, True, 199),
    ("lstm", 256, 320, 2, True, 199), ("gru", 64, 256, 4, False, 160),
]  # fmt: skip


def _path(prepared, x, lengths, threads, **patch):
    """One call of ``kernels.run`` with module attributes of `rnnjit.kernels` replaced (a path forced)."""

    def call():
        old = {k: getattr(kernels, k) for k in patch}
        for k, v in patch.items():
            setattr(kernels, k, v)
        team_policy._team_paused_until = team_policy._waves_paused_until = 0.0  # the path, not the back-off
        try:
            return kernels.run(prepared, x, lengths, select="all", threads=threads)
        finally:
            for k, v in old.items():
                setattr(kernels, k, v)

    return call


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--paths", action="store_true", help="also rnnjit's teams, wavefront and one-thread paths")
    a = ap.parse_args(argv)
    import onnxruntime as ort
    import torch

    torch.set_num_threads(a.threads)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = a.threads, 1
    for cell, I, H, L, bidir, T in CASES:
        module = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(I, H, L, batch_first=True, bidirectional=bidir)
        module.eval()
        prepared = kernels.prepare(RNNSpec(cell, I, H, L, bidirectional=bidir),
                                   {k: v.detach().numpy() for k, v in module.state_dict().items()})  # fmt: skip
        x = np.random.default_rng(0).standard_normal((1, T, I)).astype(np.float32)
        lengths = np.array([T])
        xt = torch.from_numpy(x)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "m.onnx")
            torch.onnx.export(module, (xt,), path, input_names=["x"], dynamo=False)
            session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

        def forward():
            with torch.inference_mode():
                return module(xt)

        fns = {"rnnjit": _path(prepared, x, lengths, a.threads), "torch": forward,
               "onnxruntime": lambda: session.run(None, {"x": x})}  # fmt: skip
        if a.paths:
            fns["teams"] = _path(prepared, x, lengths, a.threads, wavefront_workers=lambda *args: 0)
            fns["wavefront"] = _path(prepared, x, lengths, a.threads, team_chunks=lambda *args: None)
            fns["one thread"] = _path(prepared, x, lengths, 1)
        diff = float(np.abs(fns["rnnjit"]()[0] - forward()[0].numpy()).max())
        assert diff < 1e-4, f"rnnjit differs from torch by {diff}"
        for fn in fns.values():
            fn()  # compilation and first-call setup
        res = time_rounds(fns, 5, a.rounds)  # ns
        ours = statistics.median(res["rnnjit"])
        cells = [f"{n} {statistics.median(v) / 1e6:.2f} ({statistics.median(v) / ours:.2f}x)"
                 for n, v in res.items() if n != "rnnjit"]  # fmt: skip
        print(f"{cell} {I}->{H} x{L}{' bi' if bidir else ''} T={T}: rnnjit {ours / 1e6:.2f} | " + " | ".join(cells),
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
