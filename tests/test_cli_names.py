"""The CLI reads right: the same word means the same thing in every command, old spellings still work
with a one-line deprecation message, help fits 80 columns, flags look like flags, usage says SRC/BUNDLE.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import list_table, make_bundle, make_weights, random_sequences, run, scores, write
from typer.testing import CliRunner

import rnnjit
from rnnjit.cli.app import app
from rnnjit.spec import RNNSpec

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("names")
    np.savez(d / "w.npz", **make_weights(RNNSpec("gru", 3, 4, prefix="rnn."), 1))
    return d / "w.npz"


def lines(text):
    return text.strip().splitlines()


def help_text(*cmd):
    r = CliRunner().invoke(app, [*cmd, "--help"], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    return r.stdout


# ------------------------------------------------------------------ convert: -o/--output is the bundle
@pytest.mark.parametrize("flag", ["-o", "--output"])
def test_convert_output_is_the_bundle(weights, tmp_path, flag):
    r = run("convert", weights, flag, tmp_path / "b.npz", "--head", "fc,sigmoid", "--output-mode", "final")
    assert r.exit_code == 0 and r.stderr == "", r.stderr
    assert rnnjit.load(tmp_path / "b.npz").output == "final"


def test_convert_old_out_is_deprecated_but_works(weights, tmp_path):
    r = run("convert", weights, "--out", tmp_path / "b.npz", "--head", "fc", "--output-mode", "last")
    assert r.exit_code == 0, r.stderr
    assert lines(r.stderr) == ["warning: convert --out is deprecated; use --output (or -o)"]
    assert (tmp_path / "b.npz").is_file()


def test_convert_old_output_mode_spelling_when_unambiguous(weights, tmp_path):
    r = run("convert", weights, "--out", tmp_path / "b.npz", "--output", "all", "--head", "fc")
    assert r.exit_code == 0, r.stderr
    assert lines(r.stderr) == [
        "warning: convert --output all is deprecated for the output mode; use --output-mode all",
        "warning: convert --out is deprecated; use --output (or -o)",
    ]
    assert rnnjit.load(tmp_path / "b.npz").output == "all"


@pytest.mark.parametrize(
    "args, fragments",
    [
        (("--output", "last"), ("--output 'last' is an output mode", "--output-mode last --output BUNDLE.npz")),
        (("--out", "B", "--output", "last", "--output-mode", "final"), ("both give the output mode",)),
        (("--out", "B", "--output", "C"), ("both name the bundle",)),
        ((), ("missing option --output/-o BUNDLE",)),
        (("-o", "bundle.zip"), ("should end in .npz",)),
        (("-o", "B", "--output-mode", "every"), ("'every' is not one of",)),
    ],
    ids=["mode-without-bundle", "mode-twice", "bundle-twice", "no-bundle", "not-npz", "unknown-mode"],
)
def test_convert_naming_mistakes_are_one_line(weights, tmp_path, args, fragments):
    args = [str(tmp_path / "b.npz") if a == "B" else str(tmp_path / "c.npz") if a == "C" else a for a in args]
    r = run("convert", weights, *args)
    assert r.exit_code == 2, r.output
    (line,) = lines(r.stderr)
    assert line.startswith("error: ")
    for f in fragments:
        assert f in line, (f, line)
    assert not list(tmp_path.iterdir())


def test_convert_refuses_to_overwrite_without_flag(weights, tmp_path):
    bundle = tmp_path / "b.npz"
    assert run("convert", weights, "-o", bundle, "--output-mode", "final").exit_code == 0
    before = bundle.read_bytes()
    r = run("convert", weights, "-o", bundle, "--output-mode", "all")
    assert r.exit_code == 2
    (line,) = lines(r.stderr)
    assert line.startswith(f"error: output '{bundle}' already exists; pass --overwrite")
    assert bundle.read_bytes() == before
    r = run("convert", weights, "-o", bundle, "--output-mode", "all", "--overwrite")
    assert r.exit_code == 0, r.stderr
    assert rnnjit.load(bundle).output == "all"


# ------------------------------------------------------------------ score: --sequence-column
@pytest.fixture(scope="module")
def seq_input(tmp_path_factory):
    d = tmp_path_factory.mktemp("seqcol")
    bundle = make_bundle(d)
    seqs = random_sequences(5, 3, seed=5)
    t = list_table(seqs).rename_columns(["id", "seq"])
    return {"bundle": bundle, "in": write(t, d / "in.parquet"),
            "expected": rnnjit.load(bundle).predict(seqs, engine="numpy")[:, 0]}


def score(seq_input, out, *extra):
    return run("score", "-m", seq_input["bundle"], "-i", seq_input["in"], "-o", out, "--engine", "numpy", "-q", *extra)


def test_score_sequence_column(seq_input, tmp_path):
    r = score(seq_input, tmp_path / "s.parquet", "--sequence-column", "seq")
    assert r.exit_code == 0 and r.stderr == "", r.stderr
    np.testing.assert_allclose(scores(tmp_path / "s.parquet"), seq_input["expected"], atol=1e-6)


def test_score_features_column_is_a_deprecated_alias(seq_input, tmp_path):
    r = score(seq_input, tmp_path / "s.parquet", "--features-column", "seq")
    assert r.exit_code == 0, r.stderr
    assert lines(r.stderr) == ["warning: --features-column is deprecated; use --sequence-column"]
    np.testing.assert_allclose(scores(tmp_path / "s.parquet"), seq_input["expected"], atol=1e-6)
    r = score(seq_input, tmp_path / "t.parquet", "--features-column", "seq", "--sequence-column", "x")
    assert r.exit_code == 2 and "disagree" in r.stderr and len(lines(r.stderr)) == 1


def test_quiet_is_a_flag(seq_input, tmp_path):
    for q in ("-q", "--quiet"):
        r = run("score", "-m", seq_input["bundle"], "-i", seq_input["in"], "-o", tmp_path / f"{q}.parquet",
                "--sequence-column", "seq", "--engine", "numpy", q)
        assert r.exit_code == 0 and r.stderr == "", r.stderr
    r = run("score", "-m", seq_input["bundle"], "-i", seq_input["in"], "-o", tmp_path / "x.parquet", "--quiet", "true")
    (line,) = lines(r.stderr)  # click's wording varies by version: "argument (true)" / "argument(s) (true)"
    assert r.exit_code == 2 and line.startswith("error: Got unexpected extra argument") and "(true)" in line


# ------------------------------------------------------------------ help
def test_help_at_80_columns_keeps_option_names_whole():
    text = help_text("score")
    assert max(len(line) for line in text.splitlines()) <= 80
    assert re.search(r"^\s+--sequence-column COLUMN\s", text, re.M), text
    assert re.search(r"^\s+--feature-columns a,b,c\s", text, re.M), text
    assert "…" not in text


@pytest.mark.parametrize("cmd", ["convert", "score", "inspect", "verify", "bench"])
def test_flags_have_no_value_placeholder(cmd):
    text = help_text(cmd)
    assert "<bool>" not in text and "BOOLEAN" not in text, text
    if cmd == "score":
        for flag in ("-q, --quiet", "--overwrite", "--emit-state"):
            assert re.search(rf"^\s+{re.escape(flag)}\s{{2,}}\S", text, re.M), flag


@pytest.mark.parametrize("cmd, usage", [("convert", "rnnjit convert [OPTIONS] SRC"),
                                        ("inspect", "rnnjit inspect [OPTIONS] BUNDLE"),
                                        ("verify", "rnnjit verify [OPTIONS] BUNDLE"),
                                        ("score", "rnnjit score [OPTIONS]")])
def test_usage_line_names_arguments_as_the_readme(cmd, usage):
    assert help_text(cmd).splitlines()[0] == f"Usage: {usage}"


def test_readme_synopsis_options_exist():
    """Every option the README's CLI synopsis shows is one the command has."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## CLI", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    for cmd in ("convert", "score", "inspect", "verify", "bench"):
        text = help_text(cmd)
        synopsis = " ".join(l for l in block.split("\nrnnjit ") if l.startswith(cmd + " "))
        for opt in set(re.findall(r"(--[a-z][a-z0-9-]*)", synopsis)):
            assert re.search(rf"(^|[\s,/]){opt}\b", text, re.M), f"README shows {cmd} {opt}, which --help lacks"
