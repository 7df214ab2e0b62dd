"""Reduced precisions (bf16, int8): the kernels against their numpy emulation and PyTorch, bits across
threads and batch splits, the CPU-feature guard, and the API and CLI that choose them and name them.

The kernels' reduced products (`rnnjit.kernels.precision`) and the reference engine's emulation round the
same operands (to bfloat16, or to int8 levels); they sum in different orders, so a value can round to a
neighbouring level in one and not the other. The emulation check is therefore on the mean difference,
against the distance the precision puts between either and float32.
"""

from __future__ import annotations

import numba
import numpy as np
import pyarrow.parquet as pq
import pytest
from cli_helpers import list_table, make_bundle, random_sequences, run, write
from test_kernels import build, torch_run
from test_kernels_tokens import V, tokens

import rnnjit
from rnnjit import kernels, reference
from rnnjit.errors import InputError, PrecisionUnavailableError
from rnnjit.kernels import precision as kprecision
from rnnjit.scoring import PRECISION_KEY, ScoreOptions

CELLS = ["lstm", "lstmp", "gru", "rnn_tanh", "rnn_relu"]
REDUCED = ["bf16", "int8"]
NEAR_TORCH = {"bf16": 0.05, "int8": 0.1}  # max abs difference from torch float32 (relu: relative to the outputs)


def _emulation_gap(cell, B, seed, precision):
    """(kernel, emulated, torch float32) per-step outputs of a 2-layer bidirectional ragged batch at ``precision``."""
    rng = np.random.default_rng(seed)
    mod, spec, weights = build(cell, 6, 24, 2, True, True, np.float32, seed)
    for k in weights:  # build() scales for saturation; bf16 is judged on weights of a trained model's size
        weights[k] = weights[k] / 3.0
    x = rng.standard_normal((B, 7, 6)).astype(np.float32)
    lengths = rng.integers(1, 8, B).astype(np.int64)
    got = kernels.run(kernels.prepare(spec, weights, precision), x, lengths, None, None, "all", 2)[0]
    emu = reference.run(reference.prepare(spec, weights, precision), x, lengths, None, None, "all")[0]
    mod.load_state_dict({k: __import__("torch").from_numpy(v) for k, v in weights.items()})
    want = torch_run(mod, x, lengths, None, None)[0]
    return got, emu, want


@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("B", [1, 4, 40], ids=lambda b: f"{b=}")  # one-sequence, FEW and lane tiles
def test_kernels_follow_their_emulation_and_stay_near_torch_float32(cell, B, precision):
    got, emu, want = _emulation_gap(cell, B, B, precision)
    cost = float(np.mean(np.abs(emu - want)))
    assert cost > 1e-5  # the products really ran at the reduced precision: never a silent float32
    assert float(np.mean(np.abs(got - emu))) < 0.1 * cost
    scale = max(1.0, float(np.max(np.abs(want)))) if cell == "rnn_relu" else 1.0
    assert float(np.max(np.abs(got - want))) < NEAR_TORCH[precision] * scale


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="the pure-Python twins sum with numpy in each tile's own order")
@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize("cell", CELLS)
def test_bits_do_not_depend_on_threads_or_batch_splits(cell, precision):
    rng = np.random.default_rng(5)
    _, spec, weights = build(cell, 5, 20, 2, True, True, np.float32, seed=5)
    prepared = kernels.prepare(spec, weights, precision)
    x = rng.standard_normal((37, 6, 5)).astype(np.float32)
    lengths = rng.integers(1, 7, 37).astype(np.int64)
    whole = kernels.run(prepared, x, lengths, None, None, "all", 1)
    np.testing.assert_array_equal(kernels.run(prepared, x, lengths, None, None, "all", 2)[0], whole[0])
    parts = [kernels.run(prepared, x[s], lengths[s], None, None, "all", 2)[0] for s in (slice(0, 1), slice(1, 5),
                                                                                       slice(5, 37))]
    np.testing.assert_array_equal(np.concatenate(parts), whole[0])
    alone = [kernels.run(prepared, x[b : b + 1], lengths[b : b + 1], None, None, "all", 1)[1] for b in (3, 30)]
    np.testing.assert_array_equal(alone[0][:, 0], whole[1][:, 3])
    np.testing.assert_array_equal(alone[1][:, 0], whole[1][:, 30])


@pytest.mark.parametrize("precision", REDUCED)
def test_embedding_rows_read_in_the_tile_as_features_are(precision):
    _, spec, weights = build("lstm", 6, 16, 1, True, True, np.float32, seed=2)
    table = np.random.default_rng(2).standard_normal((V, 6)).astype(np.float32)
    ids, lengths = tokens(21, 5, seed=2)
    x = table[np.where(np.arange(5)[None, :] < lengths[:, None], ids, 0)]
    prepared = kernels.prepare(spec, weights, precision)
    for n in (1, 2):
        got = kernels.run(prepared, ids, lengths, None, None, "last", n, table=table)[0]
        np.testing.assert_array_equal(got, kernels.run(prepared, x, lengths, None, None, "last", 1)[0])


@pytest.fixture
def no_bf16(monkeypatch):
    """A compile target without AVX512_BF16 and AVX512_VNNI (as numba sees it)."""
    monkeypatch.setattr(kprecision, "target_features", lambda: {"avx2", "fma", "avx512f"})


@pytest.mark.parametrize("precision, needs", [("bf16", "avx512bf16, avx512vl"), ("int8", "avx512vnni, avx512vl")])
def test_missing_instructions_are_one_clear_error_before_compiling(no_bf16, precision, needs):
    _, spec, weights = build("gru", 3, 8, 1, False, True, np.float32)
    with pytest.raises(PrecisionUnavailableError, match=rf"precision '{precision}' needs the CPU instructions "
                       rf"{needs}, which .* lacks; score with precision='float32' instead"):  # fmt: skip
        kernels.prepare(spec, weights, precision)
    kernels.prepare(spec, weights)  # float32 needs nothing


def test_target_features_follow_numba_cpu_features(monkeypatch):
    monkeypatch.setattr("numba.config.CPU_FEATURES", "+avx2,+fma,-avx512bf16,+avx512vl")
    assert kprecision.missing_features(kprecision.PRECISIONS["bf16"]) == ["avx512bf16"]
    assert kprecision.missing_features(kprecision.PRECISIONS["int8"]) == ["avx512vnni"]
    assert kprecision.missing_features(kprecision.PRECISIONS["float32"]) == []


def test_every_api_precision_has_a_kernel_entry():
    assert set(rnnjit.spec.PRECISIONS) <= set(kprecision.PRECISIONS)
    assert set(rnnjit.spec.PRECISIONS) <= set(reference.PRECISIONS)


# ------------------------------------------------------------------------------------------- API
@pytest.fixture
def bundle(tmp_path):
    return make_bundle(tmp_path, cell="lstm", input_size=3, hidden_size=20, out_features=4, head="fc,softmax")


def test_load_with_precision_scores_near_float32_and_says_so(bundle):
    m32, m16 = rnnjit.load(bundle), rnnjit.load(bundle, precision="bf16")
    assert m16.precision == "bf16" and "precision='bf16'" in repr(m16) and "precision" not in repr(m32)
    x = np.random.default_rng(0).standard_normal((9, 6, 3)).astype(np.float32)
    y32, y16 = m32.predict(x), m16.predict(x)
    assert 0 < np.max(np.abs(y32 - y16)) < 0.02
    np.testing.assert_array_equal(m32.with_precision("bf16").predict(x), y16)
    assert m32.with_precision("bf16") is m32.with_precision("bf16")
    np.testing.assert_array_equal(m16.with_precision("float32").predict(x), y32)
    emulated = m16.predict(x, engine="numpy")
    assert np.max(np.abs(emulated - y16)) < 1e-3
    y8 = m32.with_precision("int8").predict(x)
    assert 0 < np.max(np.abs(y32 - y8)) < 0.05 and not np.array_equal(y8, y16)


def test_unknown_or_unfit_precisions_are_refused(bundle):
    with pytest.raises(InputError, match="precision 'fp16' is not known; expected one of float32, bf16, int8"):
        rnnjit.load(bundle, precision="fp16")
    with pytest.raises(InputError, match="precision 'bf16' computes everything outside its products in float32, "
                       "not float64; load the bundle with dtype='float32'"):
        rnnjit.load(bundle, dtype="float64", precision="bf16")
    with pytest.raises(InputError, match="precision 'int4' is not known"):
        ScoreOptions(precision="int4")


def test_missing_instructions_reach_predict_as_the_same_error(bundle, no_bf16):
    with pytest.raises(PrecisionUnavailableError, match="avx512bf16"):
        rnnjit.load(bundle, precision="bf16").predict(np.zeros((1, 2, 3), np.float32), engine="numba")


# ------------------------------------------------------------------------------------------- CLI
@pytest.fixture
def sample(tmp_path):
    return write(list_table(random_sequences(60, 3, seed=1)), tmp_path / "in.parquet")


@pytest.mark.parametrize("precision", REDUCED)
def test_score_precision_is_in_the_summary_and_the_metadata(bundle, sample, tmp_path, precision):
    out16, out32 = tmp_path / "o16.parquet", tmp_path / "o32.parquet"
    r = run("score", "--model", bundle, "--input", sample, "-o", out16, "--precision", precision)
    assert r.exit_code == 0, r.stderr
    assert f"precision {precision} ->" in r.stderr
    assert pq.read_schema(out16).metadata[PRECISION_KEY] == precision.encode()
    r = run("score", "--model", bundle, "--input", sample, "-o", out32)
    assert r.exit_code == 0 and "precision float32 ->" in r.stderr
    assert pq.read_schema(out32).metadata[PRECISION_KEY] == b"float32"
    seqs = [np.asarray(s, np.float32) for s in pq.read_table(sample).column("features").to_pylist()]
    want = rnnjit.load(bundle, precision=precision).predict(seqs)
    got = np.asarray(pq.read_table(out16).column("score").to_pylist(), np.float32)
    np.testing.assert_array_equal(got, want)  # the CLI scores what the Python API scores


def test_score_without_the_instructions_stops_before_writing(bundle, sample, tmp_path, no_bf16):
    out = tmp_path / "o.parquet"
    r = run("score", "--model", bundle, "--input", sample, "-o", out, "--precision", "bf16", "--engine", "numba")
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: precision 'bf16' needs the CPU instructions avx512bf16")
    assert "--precision float32" in lines[0]
    assert not out.exists()


def test_numpy_engine_emulates_bf16_and_says_it_is_slow(bundle, sample, tmp_path):
    r = run("score", "--model", bundle, "--input", sample, "-o", tmp_path / "o.parquet", "--precision", "bf16",
            "--engine", "numpy")
    assert r.exit_code == 0
    assert "warning: the numpy engine emulates bf16 products in numpy" in r.stderr


def test_inspect_names_the_default_precision(bundle):
    r = run("inspect", bundle)
    assert "precision      float32 by default (opt-in: --precision bf16|int8" in r.stdout


@pytest.mark.parametrize("precision", REDUCED)
def test_verify_precision_reports_the_distance_from_float32(bundle, sample, precision):
    r = run("verify", bundle, "--precision", precision, "--input", sample, "--rows", "50")
    assert r.exit_code == 0, r.stdout + r.stderr
    ref_line, sample_line = [ln for ln in r.stdout.splitlines() if ln.startswith(f"precision {precision}:")]
    assert ref_line.startswith(f"precision {precision}: reference input (")
    assert sample_line.startswith(f"precision {precision}: in.parquet (first 50 rows): max abs diff ")
    assert "of rows change class (argmax)" in sample_line
    model = rnnjit.load(bundle)
    x = [np.asarray(s, np.float32) for s in pq.read_table(sample).column("features").to_pylist()[:50]]
    diff = np.abs(model.predict(x) - model.with_precision(precision).predict(x))
    assert f"max abs diff {diff.max():.2e}, mean abs diff {diff.mean():.2e} from float32" in sample_line


def test_verify_input_needs_a_precision(bundle, sample):
    r = run("verify", bundle, "--input", sample)
    assert r.exit_code == 2
    assert "--input is the sample --precision compares on; add --precision bf16" in r.stderr


# --------------------------------------------------------------------------------- fused chains
def _chain_model(net, tmp_path, precision):
    import torch

    torch.save(net.state_dict(), tmp_path / "m.pth")
    chain = net.chain_spec()
    rnnjit.convert(tmp_path / "m.pth", tmp_path / "m.npz", chain=chain,
                   output=None if "pool:" in chain else net.output)  # fmt: skip
    return rnnjit.load(tmp_path / "m.npz", precision=precision)


@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize("kind", ["embedding-bilstm-meanpool", "lstm-gru-tagger"])
def test_chains_with_fused_steps_follow_the_emulation_and_torch(tmp_path, kind, precision):
    from chain_models import ChainNet, float_batch, token_batch
    from torch import nn

    if kind == "embedding-bilstm-meanpool":
        net = ChainNet([("emb", nn.Embedding(30, 6, padding_idx=0)),
                        ("lstm", nn.LSTM(6, 16, batch_first=True, bidirectional=True, num_layers=2)),
                        "pool:mean", ("fc", nn.Linear(32, 1)), "sigmoid"], output="all", seed=1)  # fmt: skip
        x, lengths = token_batch(np.random.default_rng(1), 30, B=21, T=9)
    else:
        net = ChainNet([("lstm", nn.LSTM(3, 12, batch_first=True, bidirectional=True)),
                        ("gru", nn.GRU(24, 8, batch_first=True)), ("fc", nn.Linear(8, 3)), "log_softmax"],
                       output="all", seed=2)  # fmt: skip
        x, lengths = float_batch(np.random.default_rng(2), 3, B=21, T=7)
    model = _chain_model(net, tmp_path, precision)
    got = model.predict(x, lengths=lengths, engine="numba")
    emulated = model.predict(x, lengths=lengths, engine="numpy")
    want = net.run(x, lengths)
    assert float(np.max(np.abs(got - emulated))) < 1e-3
    assert 1e-6 < float(np.max(np.abs(got - want))) < {"bf16": 0.03, "int8": 0.06}[precision]
