"""`rnnjit export-c`: the generated C, compiled with the system compiler, against torch.

Every configuration of the parity suite (tests/test_parity.py: cell x layers x
bidirectional x bias, crossed with the output modes and both dtypes, given and
default initial states, ragged lengths; the head chains), every chain step and
chain of tests/test_chain.py and tests/test_chain_scoring.py, and the tutorial
models of tests/test_tutorial_trials.py are exported, compiled with
``-std=c99 -Wall -Wextra -Werror -pedantic`` (and again with ``-O3
-march=native -ffp-contract=off``) and run through a small driver
(`rnnjit.export.c_check`). Each model is checked four ways:

- ``NAME_score_batch`` on a ragged padded batch against torch (float32 within
  the numba engine's budget, float64 within 1e-10);
- ``NAME_score_from`` on each sequence alone with initial states, y, hn and cn
  against torch; without states it equals the batch bit for bit;
- streaming (``NAME_reset_from`` then ``NAME_step``) equals whole-sequence
  scoring bit for bit, at the last step and at every earlier step (scoring the
  sequence cut there).

Many small models share one translation unit, so the grid builds in a few
compiler runs. ``RNNJIT_TEST_C_SANITIZE=1`` adds
``-fsanitize=address,undefined`` (CI runs the file once that way).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

import rnnjit
from chain_models import ChainNet, float_batch, token_batch
from cli_helpers import run
from rnnjit.export.c import generate, write
from rnnjit.export.c_check import STRICT, compile_driver, find_cc
from test_chain import SINGLE, STEP_OUTPUTS, VERIFY
from test_parity import ARCHS, CELLS, HEADS, arch_id, stable_seed
from test_tutorial_trials import TRIALS, _expected, _model, _sequences
from torch_models import TOL, Net, as_dtype, convert_and_load, make_batch, make_state, max_abs, max_scaled, torch_forward

CC = find_cc()
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler on this machine (looked at $CC, cc, gcc, clang)")

SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"] \
    if os.environ.get("RNNJIT_TEST_C_SANITIZE") == "1" else []
FLAGS = {"O0": [*SANITIZE], "O3": ["-O3", "-march=native", "-ffp-contract=off", *SANITIZE]}
OUTPUTS = ("last", "final", "all")
TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class Case:
    """One exported model, its input, and what torch gives for it."""

    name: str
    model: rnnjit.Model
    dtype: str
    x: np.ndarray
    lengths: np.ndarray
    want: np.ndarray  # torch, default initial states: (B, O) or (B, T, O) zero past each length
    h0: np.ndarray | None = None  # per sequence, flattened as the C API takes them (B, H_SIZE)
    c0: np.ndarray | None = None
    want_given: tuple | None = None  # torch (y, hn, cn) from h0/c0, states flattened per sequence
    scaled: bool = False  # tolerance scaled by max(1, |want|), as tests/test_chain.py

    def tol(self, want) -> float:
        return TOL[self.dtype] * (max(1.0, float(np.abs(want).max())) if self.scaled and want.size else 1.0)


def per_row(state):
    """(L*D, B, H) -> (B, L*D*H): one sequence's state, row-major, as the C API takes it."""
    return None if state is None else np.ascontiguousarray(np.transpose(state, (1, 0, 2)).reshape(state.shape[1], -1))


def check(case: Case, drv) -> list[str]:
    """Every way of calling the C scorer against torch and against each other; the problems found."""
    bad = []
    x, lengths = case.x, case.lengths
    B = len(lengths)

    def close(what, got, want, tol):
        err = max_abs(got, want)
        if not err <= tol:
            bad.append(f"{case.name}: {what}: max abs error {err:.3g} > {tol:.3g}")

    def same(what, got, want):
        if not np.array_equal(got, want):
            bad.append(f"{case.name}: {what}: not bit for bit (max diff {max_abs(got, want):.3g})")

    rc, y_batch, _, _ = drv.run(1, x, lengths)
    if rc:
        return [f"{case.name}: score_batch returned {rc}"]
    close("score_batch vs torch", y_batch, case.want, case.tol(case.want))
    rc, y_alone, hn, cn = drv.run(2, x, lengths)
    same("ragged batch vs each sequence alone", y_alone, y_batch)
    if case.want_given is not None:
        rc, y, hn, cn = drv.run(2, x, lengths, case.h0, case.c0)
        y_t, hn_t, cn_t = case.want_given
        close("score_from(h0, c0) vs torch", y, y_t, case.tol(y_t))
        close("hn vs torch", hn, hn_t, TOL[case.dtype])
        if cn_t is not None:
            err = max_scaled(cn, cn_t)  # c is unbounded: relative where |c| > 1
            if not err <= TOL[case.dtype]:
                bad.append(f"{case.name}: cn vs torch: max error {err:.3g}")
    if drv.streaming:
        h0, c0 = (case.h0, case.c0) if case.want_given is not None else (None, None)
        rc, ys, hs, cs = drv.run(3, x, lengths, h0, c0)
        rc2, y_whole, h_whole, c_whole = drv.run(2, x, lengths, h0, c0)
        assert rc == 0 and rc2 == 0, (case.name, rc, rc2)
        last = ys[np.arange(B), lengths - 1]
        same("step by step vs whole sequence", ys if drv.per_step else last, y_whole)
        same("hn after streaming vs whole sequence", hs, h_whole)
        same("cn after streaming vs whole sequence", cs, c_whole)
        cut = np.maximum(lengths - 1, 1)  # a step before the last: the output so far is the shorter sequence's
        _, y_cut, _, _ = drv.run(2, x, cut, h0, c0)
        got = ys[np.arange(B), cut - 1]
        same("step output at an earlier step vs the sequence cut there",
             got, y_cut[np.arange(B), cut - 1] if drv.per_step else y_cut)
    return bad


def build_and_check(cases: list[Case], tmp_path, flags) -> None:
    src = tmp_path / "src"
    prefixes = []
    for k, case in enumerate(cases):
        write(case.model, src, f"m{k}", case.dtype)
        prefixes.append(f"m{k}")
    drivers = compile_driver(src, prefixes, flags, tmp_path / "build")
    bad = [p for case, drv in zip(cases, drivers) for p in check(case, drv)]
    assert not bad, f"{len(bad)} problems in {len(cases)} models:\n" + "\n".join(bad[:20])


# ------------------------------------------------------------ parity grid
def arch_case(tmp_path, k: int, arch, head, dtype: str, output: str, B=4, T=6) -> Case:
    net = Net(arch, head, seed=stable_seed(arch, head))
    model, _ = convert_and_load(net, tmp_path, name=f"b{k}", output=output, dtype=dtype)
    rng = np.random.default_rng(stable_seed(arch, output, dtype))
    x, lengths = make_batch(rng, arch, B=B, T=T, variable=True, dtype=dtype)
    h0, c0 = make_state(rng, arch, B, dtype)
    ref = as_dtype(net, dtype) if dtype != "float32" else net
    want, _, _ = torch_forward(ref, x, lengths, output=output)
    y_t, hn_t, cn_t = torch_forward(ref, x, lengths, h0, c0, output=output)
    name = f"{arch_id(arch)}-head={'+'.join(head) or 'none'}-{output=}-{dtype=}"
    return Case(name, model, dtype, x, lengths, want, per_row(h0), per_row(c0),
                (y_t, per_row(hn_t), per_row(cn_t)))


@pytest.mark.parametrize("dtype", ["float32", "float64"], ids=lambda d: f"dtype={d}")
@pytest.mark.parametrize("output", OUTPUTS, ids=lambda o: f"output={o}")
def test_parity_grid_matches_torch(tmp_path, output, dtype):
    """Every architecture of the parity grid in this output mode and dtype: 60 models, one compiler run."""
    cases = [arch_case(tmp_path, k, arch, ("linear:2",), dtype, output) for k, arch in enumerate(ARCHS)]
    build_and_check(cases, tmp_path, FLAGS["O0"])


def test_parity_grid_optimized_build_matches_torch(tmp_path):
    """-O3 -march=native -ffp-contract=off: a third of the grid in each output mode, float32."""
    cases = [arch_case(tmp_path, k, arch, ("linear:2",), "float32", OUTPUTS[k % 3]) for k, arch in enumerate(ARCHS)]
    build_and_check(cases, tmp_path, FLAGS["O3"])


def test_head_chains_match_torch(tmp_path):
    """tests/test_parity.py's head chains on every cell (2 layers, bidirectional), each output mode."""
    cases = []
    for k, ((cell, proj), head) in enumerate((c, h) for c in CELLS for h in HEADS):
        arch = ARCHS[0].with_(cell=cell, proj_size=proj, hidden_size=4 if proj else 5, num_layers=2, bidirectional=True)
        arch = arch.with_(bias=True)
        for j, output in enumerate(OUTPUTS):
            if (k + j) % 2 == 0 or output == "all":  # every head with "all", the rest alternating
                cases.append(arch_case(tmp_path, len(cases), arch, head, "float32", output, B=5, T=7))
    build_and_check(cases, tmp_path, FLAGS["O0"])


# ------------------------------------------------------------------ chains
def chain_case(tmp_path, k: int, name: str, net: ChainNet, dtype: str, tokens: int = 0, B=5, T=6, seed=3,
               extra_tokens=None) -> Case:
    net = net.to(TORCH_DTYPE[dtype])
    d = tmp_path / f"c{k}"
    d.mkdir()
    torch.save(net.state_dict(), d / "m.pth")
    chain = net.chain_spec() if extra_tokens is None else extra_tokens
    rnnjit.convert(d / "m.pth", d / "m.npz", chain=chain, output=net.output if "pool:" not in chain else None)
    model = rnnjit.load(d / "m.npz", dtype=dtype)
    rng = np.random.default_rng(seed)
    x, lengths = token_batch(rng, tokens, B=B, T=T) if tokens else float_batch(rng, model.input_size, B=B, T=T,
                                                                                 dtype=dtype)
    want = net.run(x, lengths, TORCH_DTYPE[dtype])
    return Case(f"{name}-{dtype=}", model, dtype, x, lengths, want, scaled=True)


COMBOS = {
    "emb-bilstm-mean-ln-fc-sigmoid": (lambda: ChainNet(
        [("emb", nn.Embedding(30, 6, padding_idx=0)),
         ("lstm", nn.LSTM(6, 5, batch_first=True, bidirectional=True, num_layers=2)),
         "pool:mean", ("ln", nn.LayerNorm(10)), ("fc", nn.Linear(10, 1)), "sigmoid"], output="all", seed=1, scale=2.0),
        30),
    "bilstm-gru-tagger-all": (lambda: ChainNet(
        [("lstm", nn.LSTM(3, 5, batch_first=True, bidirectional=True)), ("gru", nn.GRU(10, 4, batch_first=True)),
         ("fc", nn.Linear(4, 3)), "log_softmax"], output="all", seed=2, scale=2.0), 0),
    "lstmp-2layers-max-softmax": (lambda: ChainNet(
        [("lstm", nn.LSTM(3, 6, proj_size=2, num_layers=2, batch_first=True)), "pool:max",
         ("fc", nn.Linear(2, 2)), "softmax"], output="all", seed=3, scale=2.0), 0),
    "lstm2-gru-fc-last": (lambda: ChainNet(
        [("lstm", nn.LSTM(3, 4, num_layers=2, batch_first=True)), ("gru", nn.GRU(4, 2, batch_first=True)),
         ("fc", nn.Linear(2, 1))], output="last", seed=7, scale=2.0), 0),
    "gru-max-fc": (lambda: ChainNet([("gru", nn.GRU(3, 4, batch_first=True)), "pool:max", ("fc", nn.Linear(4, 2))],
                                    output="all"), 0),
    "lstm-bigru-final": (lambda: ChainNet(
        [("lstm", nn.LSTM(3, 4, batch_first=True)), ("mid", nn.LayerNorm(4)),
         ("gru", nn.GRU(4, 3, batch_first=True, bidirectional=True, num_layers=2)), ("fc", nn.Linear(6, 2)), "tanh"],
        output="final", seed=5, scale=2.0), 0),
    "bilstm-sum-bn-relu": (lambda: ChainNet(
        [("lstm", nn.LSTM(3, 4, batch_first=True, bidirectional=True)), "pool:sum", ("bn", nn.BatchNorm1d(8)),
         "relu", ("fc", nn.Linear(8, 2))], output="all", seed=6, scale=1.5), 0),
    "lstm-l2norm-fc-all": (lambda: ChainNet(
        [("lstm", nn.LSTM(3, 6, batch_first=True)), "l2norm", ("fc", nn.Linear(6, 2))], output="all", seed=8), 0),
    "emb-gru-mean-l2norm-fc": (lambda: ChainNet(
        [("emb", nn.Embedding(11, 4)), ("gru", nn.GRU(4, 5, batch_first=True)), "pool:mean", "l2norm",
         ("fc", nn.Linear(5, 2))], output="all", seed=2), 11),
    "l2norm-first-bilstm": (lambda: ChainNet(
        ["l2norm", ("lstm", nn.LSTM(3, 4, batch_first=True, bidirectional=True)), ("fc", nn.Linear(8, 1))],
        seed=3), 0),
    **{f"verify-{k}": (v, 20 if k.startswith("emb") else 0) for k, v in VERIFY.items()},
}


def chain_cases(tmp_path, dtype: str) -> list[Case]:
    cases = []
    for step, output in STEP_OUTPUTS:
        net = ChainNet(SINGLE[step](), output=output, seed=list(SINGLE).index(step), scale=2.0)
        cases.append(chain_case(tmp_path, len(cases), f"step={step}-{output=}", net, dtype,
                                tokens=11 if step == "embedding" else 0))
    for name, (make, vocab) in COMBOS.items():
        cases.append(chain_case(tmp_path, len(cases), name, make(), dtype, tokens=vocab, B=6, T=9))
    # nn.Embedding(max_norm=...): rows renormalized as torch does on lookup
    net = ChainNet([("emb", nn.Embedding(11, 3, max_norm=1.0)), ("gru", nn.GRU(3, 4, batch_first=True)),
                    ("fc", nn.Linear(4, 2))], seed=9, scale=3.0)
    cases.append(chain_case(tmp_path, len(cases), "embedding-max_norm", net, dtype, tokens=11,
                            extra_tokens="emb:max_norm=1.0,gru,fc"))
    return cases


@pytest.mark.parametrize("dtype", ["float32", "float64"], ids=lambda d: f"dtype={d}")
def test_chains_match_torch(tmp_path, dtype):
    """Each chain step alone (tests/test_chain.py SINGLE, each output mode) and the whole-model chains."""
    build_and_check(chain_cases(tmp_path, dtype), tmp_path, FLAGS["O0"])


def test_chains_optimized_build_match_torch(tmp_path):
    build_and_check(chain_cases(tmp_path, "float32"), tmp_path, FLAGS["O3"])


# --------------------------------------------------------------- tutorials
def test_tutorial_models_through_the_cli_give_torch_numbers(tmp_path):
    """The tutorial trials: convert and export-c with the CLI, each sequence scored alone against torch."""
    cases, wants = [], []
    for k, (name, trial) in enumerate(sorted(TRIALS.items())):
        net = _model(trial)
        d = tmp_path / name
        d.mkdir()
        torch.save(net.state_dict(), d / "model.pth")
        assert run("convert", d / "model.pth", "-o", d / "m.npz", *trial.flags).exit_code == 0
        r = run("export-c", d / "m.npz", "-o", tmp_path / "src", "--prefix", f"m{k}")
        assert r.exit_code == 0 and f"m{k}.c" in r.stdout, r.stdout + r.stderr
        seqs = _sequences(trial)
        want = _expected(trial, net, seqs)
        T = max(len(s) for s in seqs)
        pad = 0 if trial.tokens else 7.0
        x = np.full((len(seqs), T) + (() if trial.tokens else (trial.input_size,)), pad,
                    np.int64 if trial.tokens else np.float32)
        for b, s in enumerate(seqs):
            x[b, : len(s)] = s.reshape(len(s), *x.shape[2:])
        cases.append((name, x, np.array([len(s) for s in seqs])))
        wants.append(want)
    drivers = compile_driver(tmp_path / "src", [f"m{k}" for k in range(len(cases))], FLAGS["O0"], tmp_path / "b")
    for (name, x, lengths), want, drv in zip(cases, wants, drivers):
        rc, y, _, _ = drv.run(1, x, lengths)
        assert rc == 0
        for b, w in enumerate(want):
            got = y[b, : lengths[b]] if drv.per_step else y[b]
            assert max_abs(got, np.asarray(w).reshape(got.shape)) <= 1e-5 * max(1.0, float(np.abs(w).max())), (name, b)


# -------------------------------------------------------------- the C API
def shared_lib(tmp_path, model, prefix="m", dtype=None):
    src = write(model, tmp_path, prefix, dtype)
    lib = tmp_path / f"lib{prefix}.so"
    subprocess.run([*CC.split(), *STRICT, "-O2", "-shared", "-fPIC", "-o", str(lib), str(tmp_path / f"{prefix}.c"),
                    "-lm"], check=True)
    return ctypes.CDLL(str(lib)), src


def ptr(a):
    return None if a is None else a.ctypes.data_as(ctypes.c_void_p)


I64 = ctypes.c_int64


@pytest.fixture(scope="module")
def token_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    net = ChainNet([("emb", nn.Embedding(11, 3, padding_idx=0)), ("lstm", nn.LSTM(3, 4, batch_first=True)),
                    "pool:mean", ("fc", nn.Linear(4, 2))], output="all", seed=1)
    torch.save(net.state_dict(), d / "m.pth")
    return rnnjit.convert(d / "m.pth", d / "m.npz", chain=net.chain_spec()), d


def test_out_of_range_token_is_an_error_code_and_nothing_is_written(token_model, tmp_path):
    model, _ = token_model
    lib, _ = shared_lib(tmp_path, model)
    y = np.full(4, 42.0, np.float32)
    for bad_id in (11, -1, 1 << 40):
        x = np.array([1, 2, bad_id, 3], np.int64)
        assert lib.m_score(ptr(x), I64(4), ptr(y), None) == -2
        assert np.all(y == 42.0), "nothing is written on an error"
        lengths = np.array([4, 2], np.int64)
        xb = np.stack([x, x])
        yb = np.full(4, 42.0, np.float32)
        # the bad id of row 1 lies past its length: never read, so row 0's decides
        assert lib.m_score_batch(ptr(xb), ptr(lengths), I64(2), I64(4), ptr(yb), None) == -2
        assert np.all(yb == 42.0)
        ok = np.array([[1, 2, 3, 4], [5, 6, bad_id, bad_id]], np.int64)
        assert lib.m_score_batch(ptr(ok), ptr(lengths), I64(2), I64(4), ptr(yb), None) == 0
        np.testing.assert_allclose(yb.reshape(2, 2), model.predict(ok, lengths=lengths, engine="numpy"), atol=1e-6)
    # a stream refuses the id and keeps its state: the next valid step continues as if it never came
    state = ctypes.create_string_buffer(4096)
    yt = np.zeros(2, np.float32)
    assert lib.m_reset(state) == 0
    for tok in (1, 2):
        assert lib.m_step(state, ptr(np.array([tok], np.int64)), ptr(yt)) == 0
    assert lib.m_step(state, ptr(np.array([99], np.int64)), ptr(yt)) == -2
    assert lib.m_step(state, ptr(np.array([3], np.int64)), ptr(yt)) == 0
    np.testing.assert_allclose(yt, model.predict(np.array([[1, 2, 3]]), engine="numpy")[0], atol=1e-6)


def test_bad_arguments_return_an_error_code(tmp_path):
    net = ChainNet([("lstm", nn.LSTM(3, 4, batch_first=True, bidirectional=True)), ("fc", nn.Linear(8, 1))], seed=2)
    torch.save(net.state_dict(), tmp_path / "m.pth")
    model = rnnjit.convert(tmp_path / "m.pth", tmp_path / "m.npz", chain=net.chain_spec())
    lib, src = shared_lib(tmp_path, model)
    assert "#define M_STREAMING 0" in src.header and "int m_step(" not in src.header
    assert "#define M_SCRATCH_SIZE(T) (2 * (size_t)(T) * 8)" in src.header
    x = np.ones((2, 5, 3), np.float32)
    y = np.zeros(2, np.float32)
    scratch = np.zeros(2 * 5 * 8, np.float32)
    lengths = np.array([5, 3], np.int64)
    assert lib.m_score_batch(ptr(x), ptr(lengths), I64(2), I64(5), ptr(y), ptr(scratch)) == 0
    assert lib.m_score_batch(ptr(x), ptr(lengths), I64(2), I64(5), ptr(y), None) == -1  # scratch needed
    for bad in ([0, 3], [6, 3], [-1, 3]):
        assert lib.m_score_batch(ptr(x), ptr(np.array(bad, np.int64)), I64(2), I64(5), ptr(y), ptr(scratch)) == -1
    assert lib.m_score_batch(ptr(x), ptr(lengths), I64(-1), I64(5), ptr(y), ptr(scratch)) == -1
    assert lib.m_score_batch(None, None, I64(0), I64(0), None, None) == 0  # an empty batch
    assert lib.m_score(ptr(x), I64(0), ptr(y), ptr(scratch)) == -1
    assert lib.m_score(None, I64(5), ptr(y), ptr(scratch)) == -1
    assert lib.m_score(ptr(x), I64(5), None, ptr(scratch)) == -1
    np.testing.assert_allclose(y, model.predict(x, lengths=lengths, engine="numpy")[:, 0], atol=1e-6)


def test_streams_are_independent_and_reentrant(tmp_path):
    """Two states stepped in turn give what each gives alone: nothing is shared between calls."""
    net = ChainNet([("gru", nn.GRU(3, 4, batch_first=True, num_layers=2)), "pool:max", ("fc", nn.Linear(4, 2))],
                   output="all", seed=4, scale=2.0)
    torch.save(net.state_dict(), tmp_path / "m.pth")
    model = rnnjit.convert(tmp_path / "m.pth", tmp_path / "m.npz", chain=net.chain_spec())
    lib, _ = shared_lib(tmp_path, model)
    rng = np.random.default_rng(0)
    xa, xb = (rng.standard_normal((6, 3)).astype(np.float32) for _ in range(2))
    sa, sb = ctypes.create_string_buffer(4096), ctypes.create_string_buffer(4096)
    lib.m_reset(sa), lib.m_reset(sb)
    ya, yb = np.zeros(2, np.float32), np.zeros(2, np.float32)
    for t in range(6):
        assert lib.m_step(sa, ptr(xa[t]), ptr(ya)) == 0
        assert lib.m_step(sb, ptr(xb[t]), ptr(yb)) == 0
    for x, got in ((xa, ya), (xb, yb)):
        alone = np.zeros(2, np.float32)
        assert lib.m_score(ptr(x), I64(6), ptr(alone), None) == 0
        np.testing.assert_array_equal(got, alone)
        np.testing.assert_allclose(got, net.run(x[None], [6])[0], atol=1e-5)


def test_no_mutable_globals_and_only_the_allowed_headers(token_model, tmp_path):
    model, _ = token_model
    src = write(model, tmp_path, "m")
    includes = sorted(set(ln.split()[1] for ln in (src.header + src.source).splitlines() if ln.startswith("#include")))
    assert includes == ['"m.h"', "<math.h>", "<stddef.h>", "<stdint.h>", "<string.h>"]
    if shutil.which("nm") is None:
        pytest.skip("nm is not installed: the object's symbol sections cannot be listed")
    subprocess.run([*CC.split(), *STRICT, "-O2", "-c", "-o", str(tmp_path / "m.o"), str(tmp_path / "m.c")], check=True)
    syms = subprocess.run(["nm", str(tmp_path / "m.o")], capture_output=True, text=True, check=True).stdout
    writable = [ln for ln in syms.splitlines() if ln.split()[-2:-1] and ln.split()[-2] in "bBdDcC"]
    assert not writable, f"writable data in the object: {writable}"
    exported = sorted(ln.split()[-1] for ln in syms.splitlines() if ln.split()[-2:-1] == ["T"])
    assert exported == ["m_get_state", "m_reset", "m_reset_from", "m_score", "m_score_batch", "m_score_from", "m_step"]


def test_weights_are_exact_hex_literals(token_model):
    """Every weight reads back bit for bit from its literal (float32 and float64 files)."""
    model, _ = token_model
    for dtype in ("float32", "float64"):
        src = generate(model, "m", dtype)
        first = src.source.split("m_w0[", 1)[1].split("{", 1)[1].split("}", 1)[0]
        vals = [float.fromhex(v.strip().rstrip("f")) for v in first.split(",") if v.strip()]
        want = model.weights["emb.weight"].astype(dtype).ravel()
        np.testing.assert_array_equal(np.asarray(vals, dtype), want)


# --------------------------------------------------------------------- CLI
def test_export_c_cli_errors_are_one_line(token_model, tmp_path):
    model, d = token_model
    bundle = d / "m.npz"
    r = run("export-c", bundle)
    assert r.exit_code == 2 and "missing option '--output'" in r.stderr
    r = run("export-c", bundle, "-o", tmp_path / "out", "--prefix", "int")
    assert r.exit_code == 2 and "not a C keyword" in r.stderr
    (tmp_path / "file").write_text("x")
    r = run("export-c", bundle, "-o", tmp_path / "file")
    assert r.exit_code == 2 and "is a file" in r.stderr
    assert run("export-c", bundle, "-o", tmp_path / "out").exit_code == 0
    (tmp_path / "out" / "other.c").write_text("/* mine */")
    r = run("export-c", bundle, "-o", tmp_path / "out")
    assert r.exit_code == 2 and "--overwrite" in r.stderr
    for res in (r,):
        err = res.stderr.strip()
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert run("export-c", bundle, "-o", tmp_path / "out", "--overwrite", "--dtype", "float64").exit_code == 0
    assert "typedef double model_real;" in (tmp_path / "out" / "model.h").read_text()
    assert (tmp_path / "out" / "other.c").read_text() == "/* mine */", "--overwrite replaces this run's files only"


def test_export_check_and_verify_c(token_model, tmp_path):
    model, d = token_model
    r = run("export-c", d / "m.npz", "-o", tmp_path / "c", "--prefix", "tok", "--check")
    assert r.exit_code == 0 and "c: ok, max abs error" in r.stdout, r.stdout + r.stderr
    r = run("verify", d / "m.npz", "--c", tmp_path / "c")
    assert r.exit_code == 0 and "c: ok" in r.stdout, r.stdout + r.stderr
    r = run("export-c", d / "m.npz", "-o", tmp_path / "c64", "--dtype", "float64", "--check")
    assert r.exit_code == 0 and "c: ok" in r.stdout and "(float64)" in r.stdout, r.stdout + r.stderr
    # the C of another model is caught
    other = ChainNet([("emb", nn.Embedding(11, 3)), ("lstm", nn.LSTM(3, 4, batch_first=True)), "pool:mean",
                      ("fc", nn.Linear(4, 2))], output="all", seed=5)
    torch.save(other.state_dict(), tmp_path / "o.pth")
    rnnjit.convert(tmp_path / "o.pth", tmp_path / "o.npz", chain=other.chain_spec())
    r = run("verify", tmp_path / "o.npz", "--c", tmp_path / "c")
    assert r.exit_code == 1 and "c: MISMATCH" in r.stdout, r.stdout + r.stderr


def test_a_check_asked_for_without_a_compiler_is_a_failure(token_model, tmp_path, monkeypatch):
    """verify --c on a machine without a C compiler says so and exits 1: a check asked for and not run fails."""
    model, d = token_model
    assert run("export-c", d / "m.npz", "-o", tmp_path / "c").exit_code == 0
    monkeypatch.setattr("rnnjit.export.c_check.find_cc", lambda: None)
    r = run("verify", d / "m.npz", "--c", tmp_path / "c")
    assert r.exit_code == 1 and "c: NOT RUN: no C compiler found" in r.stdout, r.stdout + r.stderr
    r = run("export-c", d / "m.npz", "-o", tmp_path / "c", "--overwrite", "--check")
    assert r.exit_code == 1 and "c: NOT RUN" in r.stdout


def test_a_kind_without_a_c_emitter_is_one_line(token_model, tmp_path, monkeypatch):
    """A step kind whose table entry has no C emitter yet: export-c names the step, writes nothing."""
    from dataclasses import replace

    from rnnjit.kinds import KINDS

    model, d = token_model
    monkeypatch.setitem(KINDS, "pool", replace(KINDS["pool"], c_emit=None))
    r = run("export-c", d / "m.npz", "-o", tmp_path / "c")
    assert r.exit_code == 2 and "cannot write a pool step ('pool:mean') yet" in r.stderr, r.stderr
    assert "\n" not in r.stderr.strip() and not (tmp_path / "c" / "model.c").exists()


def test_benchmark_builds_score_what_the_numba_engine_scores(tmp_path):
    """bench/c_export.py's two builds (-O2, -O3 -march=native) and the engine it races give the same scores."""
    from bench.c_export import C_FLAGS, I, T, build

    built = build("lstm-H32", tmp_path)
    assert set(built.libs) == set(C_FLAGS)
    x = np.random.default_rng(0).standard_normal((3, T, I)).astype(np.float32)
    lengths = np.array([T, 40, 1], np.int64)
    want = built.model.predict(x, lengths=lengths, engine="numpy")
    for label, lib in built.libs.items():
        y = np.zeros((3, 1), np.float32)
        assert lib.m_score_batch(ptr(x), ptr(lengths), I64(3), I64(T), ptr(y), None) == 0
        assert max_abs(y, want) <= TOL["float32"], label
