"""The typer CLI through CliRunner: every command, and every bad input ends in one line and exit 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import list_table, long_table, make_bundle, make_weights, random_sequences, run, scores, write

import rnnjit
from rnnjit.spec import RNNSpec

ROOT = Path(__file__).resolve().parent.parent
NP = ("--engine", "numpy")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    bundle = make_bundle(d, feature_names=["a", "b", "c"])
    seqs = random_sequences(9, 3, seed=3)
    src = write(list_table(seqs, label=pa.array([0, 1] * 4 + [0])), d / "in.parquet")
    return {"dir": d, "bundle": bundle, "seqs": seqs, "in": src, "model": rnnjit.load(bundle)}


def one_error_line(result, *fragments, code=2):
    """Exactly one ``error:`` line on stderr, no traceback, the given exit code."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def score_args(files, out, *extra, src=None):
    return ("score", "--model", files["bundle"], "--input", src or files["in"], "--output", out, *NP, *extra)


# ------------------------------------------------------------------ commands
def test_version():
    r = run("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"rnnjit {rnnjit.__version__}"


def test_no_command_shows_help():
    r = run()
    assert r.exit_code == 2 and "Usage" in r.stdout + r.stderr


def test_score_writes_scores_and_summary(files, tmp_path):
    out = tmp_path / "scores.parquet"
    r = run(*score_args(files, out))
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    assert r.stderr.startswith("scored 9 rows (0 invalid, 0 empty) in ") and r.stderr.endswith(f"-> {out}\n")
    t = pq.read_table(out)
    assert t.column_names == ["id", "label", "score"]
    np.testing.assert_allclose(t.column("score").to_numpy(), files["model"].predict(files["seqs"], engine="numpy")[:, 0],
                               atol=1e-6)


def test_score_quiet_id_columns_mode_and_state(files, tmp_path):
    out = tmp_path / "s.parquet"
    r = run(*score_args(files, out, "--quiet", "--id-column", "id", "--output-mode", "all", "--emit-state",
                        "--batch-rows", "2", "--threads", "1"))
    assert r.exit_code == 0 and r.stderr == "" and r.stdout == ""
    t = pq.read_table(out)
    assert t.column_names == ["id", "score", "hn", "cn"]
    assert [len(v) for v in t.column("score").to_pylist()] == [len(s) for s in files["seqs"]]


def test_score_default_engine(files, tmp_path):
    out = tmp_path / "s.parquet"
    r = run("score", "--model", files["bundle"], "--input", files["in"], "--output", out, "-q")
    assert r.exit_code == 0, r.stderr
    np.testing.assert_allclose(scores(out), files["model"].predict(files["seqs"], engine="numpy")[:, 0], atol=1e-5)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_score_text_formats(files, tmp_path, fmt):
    out = tmp_path / f"s.{fmt}"
    r = run(*score_args(files, out, "-q"))
    assert r.exit_code == 0, r.stderr
    text = out.read_text().splitlines()
    assert len(text) == (10 if fmt == "csv" else 9)
    out2 = tmp_path / "s.txt"
    assert run(*score_args(files, out2, "-q", "--format", fmt)).exit_code == 0
    assert out2.read_text() == out.read_text()


def test_score_long_layout(files, tmp_path):
    src = write(long_table(files["seqs"], names=["a", "b", "c"]), tmp_path / "long.parquet")
    out = tmp_path / "s.parquet"
    r = run(*score_args(files, out, "--layout", "long", "--key-column", "id", "--order-column", "t",
                        "--batch-rows", "4", src=src))
    assert r.exit_code == 0, r.stderr
    assert "scored 9 sequences from " in r.stderr
    np.testing.assert_allclose(scores(out), files["model"].predict(files["seqs"], engine="numpy")[:, 0], atol=1e-6)


def test_inspect_text_and_json(files):
    r = run("inspect", files["bundle"])
    assert r.exit_code == 0
    for frag in ("cell           lstm", "input_size     3 (a, b, c)", "head           fc (5->1) -> sigmoid",
                 "rnn.weight_ih_l0  (20, 3)", "provenance", "sha256"):
        assert frag in r.stdout, frag
    r = run("inspect", files["bundle"], "--json")
    info = json.loads(r.stdout)
    assert info["cell"] == "lstm" and info["num_parameters"] == files["model"].num_parameters
    assert info["weights"]["rnn.weight_hh_l0"] == [20, 5]
    assert info["state_columns"]["h0"]["values_per_row"] == 5


def test_convert_flags_config_json_and_toml(tmp_path):
    spec = RNNSpec("rnn_relu", 3, 4, prefix="enc.")
    w = make_weights(spec, 2, head_name="out")
    np.savez(tmp_path / "w.npz", **w)
    r = run("convert", tmp_path / "w.npz", "--output", tmp_path / "a.npz", "--nonlinearity", "relu",
            "--head", "out,softmax", "--output-mode", "final", "--feature-names", "x,y,z")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith(f"wrote {tmp_path / 'a.npz'}: rnn_relu (input_size=3, hidden_size=4, 1 layer)")
    m = rnnjit.load(tmp_path / "a.npz")
    assert m.output == "final" and m.feature_names == ["x", "y", "z"] and m.output_dim == 2

    # the config takes the CLI's option names, with - or _
    (tmp_path / "c.json").write_text(json.dumps({"nonlinearity": "relu", "head": "out,sigmoid", "output-mode": "all"}))
    (tmp_path / "c.toml").write_text('[rnnjit]\nnonlinearity = "relu"\nhead = ["out", "sigmoid"]\noutput_mode = "all"\n')
    for cfg in ("c.json", "c.toml"):
        r = run("convert", tmp_path / "w.npz", "--output", tmp_path / "b.npz", "--config", tmp_path / cfg,
                "--output-mode", "last", "--overwrite")  # the flag wins over the file
        assert r.exit_code == 0, r.stderr
        m = rnnjit.load(tmp_path / "b.npz")
        assert m.output == "last" and m.head[-1].name == "sigmoid" and m.spec.cell == "rnn_relu"

    r = run("convert", tmp_path / "w.npz", "--output", tmp_path / "b.npz", "--config", tmp_path / "c.json",
            "--overwrite")
    assert r.exit_code == 0 and rnnjit.load(tmp_path / "b.npz").output == "all", r.stderr
    (tmp_path / "old.json").write_text(json.dumps({"nonlinearity": "relu", "head": "out", "output": "final"}))
    r = run("convert", tmp_path / "w.npz", "--output", tmp_path / "b.npz", "--config", tmp_path / "old.json",
            "--overwrite")  # the old key still works, with one warning line
    assert r.exit_code == 0 and rnnjit.load(tmp_path / "b.npz").output == "final", r.stderr
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")] == [
        'warning: config key "output" is deprecated for the output mode; write "output-mode": "final"']
    (tmp_path / "typo.json").write_text(json.dumps({"outputmode": "all"}))
    one_error_line(run("convert", tmp_path / "w.npz", "--output", tmp_path / "x.npz", "--config", tmp_path / "typo.json"),
                   "key 'outputmode' is not a convert option; the keys are convert's option names: rnn-prefix,")
    (tmp_path / "bad.json").write_text("{nope")
    one_error_line(run("convert", tmp_path / "w.npz", "--output", tmp_path / "x.npz", "--config", tmp_path / "bad.json"),
                   "is not valid JSON")
    one_error_line(run("convert", tmp_path / "w.npz", "--output", tmp_path / "x.npz", "--nonlinearity", "gelu"),
                   "expected tanh or relu")
    one_error_line(run("convert", tmp_path / "w.npz", "--output", tmp_path / "x.npz", "--head", "nope,sigmoid"), "nope")
    one_error_line(run("convert", tmp_path / "nope.pth", "--output", tmp_path / "x.npz"), "does not exist")
    assert not (tmp_path / "x.npz").exists()


def test_verify(files, tmp_path):
    r = run("verify", files["bundle"], *NP)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("reference: ok, max abs error") and "engine numpy" in r.stdout
    src = files["dir"] / "src-bundle.npz"
    r = run("verify", files["bundle"], "--against", src, *NP)
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "weights: ok, 6 tensors identical to src-bundle.npz" in r.stdout
    # different weights under the same names: exit 1, one error line
    spec = files["model"].spec
    np.savez(tmp_path / "other.npz", **make_weights(spec, 1, seed=9))
    r = run("verify", files["bundle"], "--against", tmp_path / "other.npz", *NP)
    assert "weights: MISMATCH (different: rnn.weight_ih_l0" in r.stdout
    one_error_line(r, "verification failed: weights differ from other.npz", code=1)


def test_verify_without_reference(tmp_path):
    spec = RNNSpec("gru", 2, 3, prefix="rnn.")
    np.savez(tmp_path / "w.npz", **make_weights(spec))
    assert run("convert", tmp_path / "w.npz", "--output", tmp_path / "b.npz", "--no-reference").exit_code == 0
    one_error_line(run("verify", tmp_path / "b.npz"), "stores no reference input", "--against")


# ------------------------------------------------------------------ bad input: one line, exit 2, no output
@pytest.fixture
def out(tmp_path):
    p = tmp_path / "out.parquet"
    yield p
    assert not p.exists(), "an output file was left behind"
    assert not [q for q in tmp_path.iterdir() if "rnnjit-tmp" in q.name], "a temp file was left behind"


def test_bad_missing_column(files, out):
    one_error_line(run(*score_args(files, out, "--sequence-column", "x")),
                   "column 'x' not found; the input has columns id, features, label", "--sequence-column")
    one_error_line(run(*score_args(files, out, "--id-column", "customer")),
                   "column 'customer' was asked for but the input has columns id, features, label")


def test_bad_feature_width(files, out, tmp_path):
    seqs = [np.ones((2, 3), np.float32), np.ones((2, 4), np.float32)]
    src = write(list_table(seqs, ids=[10, 11]), tmp_path / "w.parquet")
    one_error_line(run(*score_args(files, out, src=src)),
                   "row 1 (id=11): step 0 of column 'features' has 4 values; expected 3")


def test_bad_non_numeric_features(files, out, tmp_path):
    src = write(pa.table({"id": [1], "features": pa.array([[["a", "b", "c"]]])}), tmp_path / "s.parquet")
    one_error_line(run(*score_args(files, out, src=src)), "holds string values; expected numbers")
    src = write(pa.table({"id": [1], "features": pa.array([[1.0, 2.0]])}), tmp_path / "f.parquet")
    one_error_line(run(*score_args(files, out, src=src)), "expected list<list<float>>", "--layout long")


@pytest.mark.parametrize("bad,what", [
    (None, "column 'features' is null"),
    ([[1.0, 2.0, 3.0], None], "step 1 of column 'features' is null"),
    ([[1.0, None, 3.0]], "step 0 of column 'features' is null or holds a null value"),
    ([[1.0, float("nan"), 3.0]], "step 0 of column 'features' holds NaN or inf"),
    ([[1.0, float("inf"), 3.0]], "step 0 of column 'features' holds NaN or inf"),
])
def test_bad_null_and_nonfinite_rows(files, out, tmp_path, bad, what):
    feats = pa.array([[[0.0, 1.0, 2.0]], bad, [[1.0, 1.0, 1.0]]], pa.list_(pa.list_(pa.float32())))
    src = write(pa.table({"id": [5, 6, 7], "features": feats}), tmp_path / "n.parquet")
    one_error_line(run(*score_args(files, out, src=src)), f"row 1 (id=6): {what}", "--on-invalid skip")
    ok = tmp_path / "ok.parquet"
    r = run(*score_args(files, ok, "--on-invalid", "skip", src=src))
    assert r.exit_code == 0 and "(1 invalid, 0 empty)" in r.stderr
    got = scores(ok)
    assert got[1] is None and got[0] is not None and got[2] is not None
    ok.unlink()


def test_zero_length_sequences_are_counted_not_errors(files, tmp_path):
    seqs = [np.ones((2, 3), np.float32), np.zeros((0, 3), np.float32), np.ones((1, 3), np.float32)]
    src = write(list_table(seqs), tmp_path / "z.parquet")
    r = run(*score_args(files, tmp_path / "o.parquet", src=src))
    assert r.exit_code == 0 and "(0 invalid, 1 empty)" in r.stderr
    assert scores(tmp_path / "o.parquet")[1] is None


def test_bad_unsorted_long_input(files, out, tmp_path):
    seqs = random_sequences(3, 3, min_len=2, max_len=2)
    src = write(long_table(seqs, ids=[1, 2, 1], names=["a", "b", "c"]), tmp_path / "l.parquet")
    one_error_line(run(*score_args(files, out, "--layout", "long", "--key-column", "id", "--order-column", "t",
                                   src=src)),
                   "long-layout input is not sorted: row 4 (id=1) comes after (id=2); sort it by (id, t)")


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_bad_parquet(files, out, tmp_path, kind):
    src = tmp_path / f"{kind}.parquet"
    data = files["in"].read_bytes()
    src.write_bytes(b"PAR1 garbage" * 20 if kind == "garbage" else data[: len(data) * 2 // 3])
    one_error_line(run(*score_args(files, out, src=src)), f"cannot read Parquet input '{src}'",
                   "complete Parquet file")


def test_bad_bundle(files, out, tmp_path):
    one_error_line(run("score", "--model", files["in"], "--input", files["in"], "--output", out),
                   str(files["in"]))
    one_error_line(run("score", "--model", tmp_path / "nope.npz", "--input", files["in"], "--output", out),
                   "Invalid value for '--model'", "does not exist")
    np.savez(tmp_path / "arrays.npz", a=np.zeros(3))
    one_error_line(run("inspect", tmp_path / "arrays.npz"), "not an rnnjit bundle")


def test_bad_output_exists(files, tmp_path):
    out = tmp_path / "o.parquet"
    out.write_bytes(b"keep me")
    one_error_line(run(*score_args(files, out)), f"output '{out}' already exists; pass --overwrite")
    assert out.read_bytes() == b"keep me"
    r = run(*score_args(files, out, "--overwrite"))
    assert r.exit_code == 0 and pq.read_table(out).num_rows == 9


def test_bad_h0_length(files, out, tmp_path):
    seqs = random_sequences(2, 3)
    src = write(list_table(seqs, ids=[3, 4], h0=pa.array([[0.0] * 5, [0.0] * 4], pa.list_(pa.float32()))),
                tmp_path / "h.parquet")
    one_error_line(run(*score_args(files, out, src=src)),
                   "row 1 (id=4): column 'h0' has 4 values; expected 5 = num_layers*num_directions (1) * h_out (5)")


def test_bad_usage_is_one_line(files, out):
    one_error_line(run("score", "--model", files["bundle"], "--input", files["in"]), "Missing option '--output'")
    assert one_error_line(run(*score_args(files, out, "--layout", "wide"))) == \
        "error: --layout 'wide' is not one of list, long"
    assert one_error_line(run(*score_args(files, out, "--output-mode", "bogus"))) == \
        "error: --output-mode 'bogus' is not one of last, final, all"
    one_error_line(run(*score_args(files, out, "--key-column", "id")), "--key-column applies to --layout long")
    one_error_line(run(*score_args(files, out, "--batch-rows", "0")), "--batch-rows")
    one_error_line(run(*score_args(files, out, "--order-column", "t")), "--order-column applies to --layout long")
    one_error_line(run("frobnicate"), "No such command 'frobnicate'")
    one_error_line(run(*score_args(files, out, src=files["dir"] / "nope-*.parquet")), "no file matches the input glob")


# ------------------------------------------------------------------ real processes
def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_subprocess_module_run(files, tmp_path):
    out = tmp_path / "s.parquet"
    cmd = [sys.executable, "-m", "rnnjit.cli", "score", "--model", str(files["bundle"]), "--input", str(files["in"]),
           "--output", str(out), "--engine", "numpy"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stderr.startswith("scored 9 rows") and "\x1b[" not in p.stderr  # piped: no progress bar
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and p.stderr.startswith("error: output")


@pytest.mark.skipif(shutil.which("rnnjit") is None, reason="the rnnjit entry point is not installed")
def test_installed_entry_point(files, tmp_path):
    p = subprocess.run(["rnnjit", "--version"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.startswith("rnnjit ")
    out = tmp_path / "s.parquet"
    p = subprocess.run(["rnnjit", "score", "--model", str(files["bundle"]), "--input", str(files["in"]),
                        "--output", str(out), "--engine", "numpy"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert pq.read_table(out).num_rows == 9


def test_interrupt_is_one_line_and_leaves_nothing(files, out, monkeypatch):
    from rnnjit import local

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(local, "score_batch", interrupted)
    one_error_line(run(*score_args(files, out)), "interrupted; no output was written", code=130)
