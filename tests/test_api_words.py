"""Library errors name an option as the Python API spells it; the CLI says its flag (issue #16 item 4).

Each example is pasted back: the API's keyword is a real keyword of the call, the CLI's flag a real flag.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from cli_helpers import list_table, long_table, make_bundle, random_sequences, run, write

import rnnjit
from rnnjit.local import score_dataset
from rnnjit.scoring import ScoreOptions

SEQS = random_sequences(4, 3, seed=9)


@pytest.fixture
def long_src(tmp_path):
    return write(long_table(SEQS), tmp_path / "l.parquet")


def test_long_layout_without_order_column(tmp_path, long_src):
    model = rnnjit.load(make_bundle(tmp_path))
    with pytest.raises(rnnjit.InputError, match=r"^layout='long' needs order_column .*; e.g. order_column='t'$"):
        score_dataset(model, long_src, tmp_path / "a.parquet", options=ScoreOptions(id_columns=("id",)),
                      layout="long")
    score_dataset(model, long_src, tmp_path / "a.parquet", options=ScoreOptions(id_columns=("id",)),
                  layout="long", order_column="t", feature_columns=["f0", "f1", "f2"])  # the keyword, pasted
    assert pq.read_table(tmp_path / "a.parquet").num_rows == len(SEQS)

    args = ("score", "-m", tmp_path / "bundle.npz", "-i", long_src, "--layout", "long", "--key-column", "id",
            "--feature-columns", "f0,f1,f2")
    r = run(*args, "-o", tmp_path / "b.parquet")
    assert r.exit_code == 2 and r.stderr.startswith("error: --layout long needs --order-column ("), r.stderr
    assert r.stderr.rstrip().endswith("e.g. --order-column t") and "order_column" not in r.stderr
    assert run(*args, "--order-column", "t", "-o", tmp_path / "b.parquet").exit_code == 0  # the flag, pasted


def test_feature_count_names_the_list_both_ways(tmp_path, long_src):
    model = rnnjit.load(make_bundle(tmp_path))
    with pytest.raises(rnnjit.InputError, match=r"list them in order with feature_columns=\['a', 'b', 'c'\]$"):
        score_dataset(model, long_src, tmp_path / "a.parquet", options=ScoreOptions(id_columns=("id",)),
                      layout="long", order_column="t", feature_columns=["f0", "f1"])
    r = run("score", "-m", tmp_path / "bundle.npz", "-i", long_src, "-o", tmp_path / "b.parquet", "--layout", "long",
            "--key-column", "id", "--order-column", "t", "--feature-columns", "f0,f1")
    assert r.exit_code == 2 and r.stderr.rstrip().endswith("list them in order with --feature-columns a,b,c")


def test_emit_state_refusal_both_ways(tmp_path):
    bundle = make_bundle(tmp_path, bidirectional=True)
    src = write(list_table(SEQS), tmp_path / "in.parquet")
    with pytest.raises(rnnjit.InputError, match=r"^emit_state on a bidirectional model.*without emit_state$"):
        score_dataset(rnnjit.load(bundle), src, tmp_path / "a.parquet", emit_state=True)
    r = run("score", "-m", bundle, "-i", src, "-o", tmp_path / "b.parquet", "--emit-state")
    assert r.exit_code == 2 and r.stderr.startswith("error: --emit-state on a bidirectional model")
    assert r.stderr.rstrip().endswith("without --emit-state") and "emit_state" not in r.stderr
