"""rnnjit at each precision beside the peers in its class, calls interleaved, and the REPORT.md section.

    python -m bench.precision --threads 2 [--rounds 5] [--clock wall|cpu] [--out bench/REPORT.md]

Per shape (LSTM, ``last`` output, every sequence full length) every engine is
built and warmed up once, then timed in rounds: each round calls every engine
once, in a new random order, so all of them see the same load; the figure is
each engine's fastest call. Accuracy is each engine's max abs difference from
torch float32 on the same input. The peers: torch float32, torch bf16
(``torch.autocast("cpu", dtype=torch.bfloat16)``) and OpenVINO with its
default hint (bf16 on a CPU with AVX512_BF16) for bf16; onnxruntime float32
and ``onnxruntime.quantization.quantize_dynamic`` (int8 weights) and torch
``torch.ao.quantization.quantize_dynamic`` for int8.

``--clock cpu`` times each call in process CPU time (``time.process_time``)
on one thread per engine: on a machine shared with other jobs a call that
waits for a core does not count that wait, so those ratios hold still where
wall-clock ones at 2 threads move by 2-3x between runs.

The section is written between the markers `MARK_START` and `MARK_END` of the
report (appended when absent); the rest of the report is left alone.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import random
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MARK_START = "<!-- precision section: python -m bench.precision -->"
MARK_END = "<!-- end of precision section -->"
BUDGET_S = 8.0  # seconds of rounds per shape (past the minimum of --rounds; 0 for one round)
MAX_ROUNDS = 100
NOTES = Path(__file__).with_name("precision_notes.md")
"""The reading of the figures (why a goal is or is not met, from measurements), kept under the tables."""


@dataclass(frozen=True)
class Shape:
    B: int
    T: int
    I: int
    H: int

    @property
    def name(self) -> str:
        return f"B={self.B} T={self.T} I={self.I} H={self.H}"


SHAPES = (Shape(1024, 100, 32, 128), Shape(256, 100, 256, 512), Shape(128, 50, 512, 1024), Shape(1, 100, 32, 128))

CLASS = {
    "rnnjit float32": "float32", "torch float32": "float32", "onnxruntime float32": "float32",
    "rnnjit bf16": "bf16", "torch bf16 autocast": "bf16", "OpenVINO default": "bf16",
    "rnnjit int8": "int8", "onnxruntime int8 (dynamic)": "int8", "torch int8 (dynamic)": "int8",
}  # fmt: skip
"""Each engine's precision class (the report compares rnnjit's entry with the faster peer of its class)."""


def _load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def engines(shape: Shape, threads: int, tmp: Path) -> tuple[dict, np.ndarray]:
    """name -> zero-argument callable returning the (B, H) last outputs; and torch float32's outputs."""
    import torch

    import rnnjit
    from rnnjit.spec import RNNSpec

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    mod = torch.nn.LSTM(shape.I, shape.H, batch_first=True).eval()
    weights = {k: v.detach().numpy().copy() for k, v in mod.state_dict().items()}
    x = np.random.default_rng(0).standard_normal((shape.B, shape.T, shape.I)).astype(np.float32)
    xt = torch.from_numpy(x)
    out: dict = {}

    model = rnnjit.Model(RNNSpec("lstm", shape.I, shape.H), (), weights, output="last")
    for p in ("float32", "bf16", "int8"):
        m = model.with_precision(p)
        out[f"rnnjit {p}"] = lambda m=m: m.predict(x, threads=threads)

    def torch_f32():
        with torch.inference_mode():
            return mod(xt)[0][:, -1].numpy()

    def torch_bf16():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return mod(xt)[0][:, -1].float().numpy()

    holder = torch.nn.Sequential()  # quantize_dynamic swaps child modules, never the root
    holder.add_module("lstm", mod)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        qmod = torch.ao.quantization.quantize_dynamic(holder, {torch.nn.LSTM}, dtype=torch.qint8).lstm

    def torch_int8():
        with torch.inference_mode():
            return qmod(xt)[0][:, -1].numpy()

    out["torch float32"], out["torch bf16 autocast"], out["torch int8 (dynamic)"] = torch_f32, torch_bf16, torch_int8

    class Last(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x)[0][:, -1]

    onnx_path = tmp / f"lstm-{shape.H}-{shape.I}.onnx"
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Last(mod), (xt[:2, :3],), buf, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch", 1: "time"}, "y": {0: "batch"}}, dynamo=False)  # fmt: skip
    onnx_path.write_bytes(buf.getvalue())
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    q_path = tmp / f"lstm-{shape.H}-{shape.I}-int8.onnx"
    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic's advice to pre-process (an LSTM gains nothing)
    quantize_dynamic(str(onnx_path), str(q_path), weight_type=QuantType.QInt8)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    for name, path in (("onnxruntime float32", onnx_path), ("onnxruntime int8 (dynamic)", q_path)):
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        out[name] = lambda sess=sess: sess.run(None, {"x": x})[0]
    import openvino as ov

    compiled = ov.Core().compile_model(str(onnx_path), "CPU", {"INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    out["OpenVINO default"] = lambda: request.infer({0: x})[0].copy()
    return out, torch_f32()


def measure(shape: Shape, threads: int, rounds: int, tmp: Path, clock=time.perf_counter) -> dict:
    """Per engine: fastest call (s, by ``clock``), sequences/s, max abs difference from torch float32."""
    calls, want = engines(shape, threads, tmp)
    err = {}
    for name, fn in calls.items():
        y = np.asarray(fn(), np.float64)  # warm-up: compilation, first-call setup
        err[name] = float(np.max(np.abs(y - want)))
    best = dict.fromkeys(calls, float("inf"))
    order = list(calls)
    t_start = time.perf_counter()
    r = 0
    # at least ``rounds`` rounds; short calls get more, up to MAX_ROUNDS or BUDGET_S of rounds
    while r < rounds or (r < MAX_ROUNDS and time.perf_counter() - t_start < BUDGET_S):
        random.Random(r).shuffle(order)
        for name in order:
            t0 = clock()
            calls[name]()
            best[name] = min(best[name], clock() - t0)
        r += 1
    return {n: {"s": best[n], "seq_s": shape.B / best[n], "max_abs": err[n]} for n in calls}


def section(results: dict, threads: int, load_before: str, load_after: str, command: str, cpu: bool) -> str:
    """The markdown table for ``results`` (shape name -> `measure`)."""
    names = list(CLASS)
    timing = "process CPU time, 1 thread each" if cpu else f"wall clock, {threads} threads each"
    lines = [
        f"`{command}` ({timing}, LSTM, `last` output, calls interleaved in random order per round, "
        f"fastest call; {load_before} at the start, {load_after} at the end). Sequences per second, and in "
        "parentheses the max abs difference from torch float32 on the same input.",
        "",
        "| shape | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for shape, r in results.items():
        cells = [f"{r[n]['seq_s']:,.0f} ({r[n]['max_abs']:.0e})" for n in names]
        lines.append(f"| {shape} | " + " | ".join(cells) + " |")
    lines += ["", "Against the goals of issue #18 (ratios of the figures above):", ""]
    lines.append("| shape | bf16 / faster of torch bf16, OpenVINO default (goal >= 1.2) | bf16 / rnnjit float32 "
                 "(goal >= 1.7 at H >= 512) | int8 / onnxruntime int8 (goal >= 1.2) | int8 / rnnjit float32 "
                 "(goal >= 2.5 at H >= 512) |")
    lines.append("|---|---|---|---|---|")
    for shape, r in results.items():
        peer = max(r["torch bf16 autocast"]["seq_s"], r["OpenVINO default"]["seq_s"])
        f32 = r["rnnjit float32"]["seq_s"]
        lines.append(f"| {shape} | {r['rnnjit bf16']['seq_s'] / peer:.2f} | {r['rnnjit bf16']['seq_s'] / f32:.2f} | "
                     f"{r['rnnjit int8']['seq_s'] / r['onnxruntime int8 (dynamic)']['seq_s']:.2f} | "
                     f"{r['rnnjit int8']['seq_s'] / f32:.2f} |")
    return "\n".join(lines) + "\n"


def write_section(report: Path, tables: str, notes: Path) -> None:
    """Replace the section between the markers in ``report`` (append it when absent): the tables, then ``notes``."""
    text = "\n".join([MARK_START, "## Reduced precision (bf16, int8) beside the peers in their class", "", tables,
                      notes.read_text().rstrip("\n"), MARK_END]) + "\n"
    old = report.read_text() if report.exists() else ""
    if MARK_START in old and MARK_END in old:
        head, rest = old.split(MARK_START, 1)
        tail = rest.split(MARK_END, 1)[1].lstrip("\n")
        new = head + text + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    report.write_text(new)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None, help="a report to write the section into (else stdout)")
    ap.add_argument("--shapes", default="all", help="comma-separated indexes into SHAPES, or all")
    ap.add_argument("--clock", choices=("wall", "cpu", "both"), default="both")
    args = ap.parse_args(argv)
    shapes = SHAPES if args.shapes == "all" else [SHAPES[int(i)] for i in args.shapes.split(",")]
    tables = []
    for clock in ("wall", "cpu") if args.clock == "both" else (args.clock,):
        cpu = clock == "cpu"
        threads = 1 if cpu else args.threads
        before = _load()
        results = {}
        with tempfile.TemporaryDirectory() as tmp:
            for s in shapes:
                results[s.name] = measure(s, threads, args.rounds, Path(tmp), time.process_time if cpu else time.perf_counter)
                print(clock, s.name, {n: (round(v["seq_s"]), f"{v['max_abs']:.1e}") for n, v in results[s.name].items()},
                      file=sys.stderr, flush=True)
        command = f"python -m bench.precision --threads {args.threads} --rounds {args.rounds} --clock {clock}"
        tables.append(section(results, threads, before, _load(), command, cpu))
    if args.out is None:
        print("\n".join(tables))
    else:
        write_section(args.out, "\n".join(tables), NOTES)


if __name__ == "__main__":
    main()
