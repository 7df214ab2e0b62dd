"""The README's table of `rnnjit verify --precision` figures: what bf16 and int8 cost on the benchmark models.

    python -m bench.precision_verify

Per model and precision: max and mean abs difference from float32 (numba engine,
`rnnjit.verify.precision_cost`), and for the classifiers the fraction of rows
whose class changes. Models: the demo bundle (a trained sensor model) on its
reference input and its 2,000-row Parquet file; the text classifier of the
benchmarks (embedding, bidirectional LSTM, mean pooling, sigmoid; seeded
initial weights) on its token batch; and the four LSTM shapes of the
precision benchmark (seeded initial weights, standard normal input).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import rnnjit
from bench.precision import SHAPES
from rnnjit.spec import RNNSpec
from rnnjit.verify import precision_cost, reference_input, sample_cost

DATA = Path(__file__).resolve().parent.parent / "data"


def rows(precision: str):
    import torch

    demo = rnnjit.load(DATA / "demo_bundle.npz")
    p = precision
    yield "demo bundle (lstm,fc,sigmoid), reference input", precision_cost(demo, p, *reference_input(demo))
    yield "demo bundle, data/demo_sequences.parquet", sample_cost(demo, DATA / "demo_sequences.parquet", p, 2000)
    from bench.cases import TEXT_CASES
    from bench.text_classifier import TextBench

    tb = TextBench(TEXT_CASES[0], torch)
    yield f"text classifier ({TEXT_CASES[0].B} token sequences)", precision_cost(tb.model, p, tb.ids, tb.lengths)
    for s in SHAPES:
        torch.manual_seed(0)
        mod = torch.nn.LSTM(s.I, s.H, batch_first=True)
        w = {k: v.detach().numpy().copy() for k, v in mod.state_dict().items()}
        model = rnnjit.Model(RNNSpec("lstm", s.I, s.H), (), w, output="last")
        B = min(s.B, 256)
        x = np.random.default_rng(0).standard_normal((B, s.T, s.I)).astype(np.float32)
        seqs = f"{B} sequences" if B > 1 else "1 sequence"
        yield f"LSTM I={s.I} H={s.H}, T={s.T} ({seqs})", precision_cost(model, p, x, np.full(B, s.T))


def main() -> None:
    print("| model and input | precision | max abs diff | mean abs diff | rows whose class changes |")
    print("|---|---|---|---|---|")
    for precision in ("bf16", "int8"):
        for name, r in rows(precision):
            changed = f"{r['changed']:.2%} ({r['rule']})" if r["changed"] is not None else "-"
            print(f"| {name} | {precision} | {r['max_abs_diff']:.1e} | {r['mean_abs_diff']:.1e} | {changed} |",
                  flush=True)


if __name__ == "__main__":
    main()
