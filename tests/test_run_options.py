"""One options object for the runners (issue #16 item 4): `RunOptions`, and the CLI's words for its fields."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from cli_helpers import list_table, make_bundle, random_sequences, write

import rnnjit
from rnnjit.cli._common import cli_words
from rnnjit.local import score_dataset
from rnnjit.scoring import RunOptions, ScoreOptions

SEQS = random_sequences(6, 3, seed=4)


def test_build_folds_keywords_into_the_object():
    base = RunOptions(score=ScoreOptions(engine="numpy"), batch_rows=7)
    run = RunOptions.build(base, layout="long", on_invalid="skip", resume=True)
    assert (run.layout, run.batch_rows, run.resume) == ("long", 7, True)
    assert (run.score.engine, run.score.on_invalid) == ("numpy", "skip")
    assert RunOptions.build(ScoreOptions(output_mode="final")).score.output_mode == "final"
    assert RunOptions.build(None) == RunOptions()
    with pytest.raises(TypeError, match="unexpected keyword argument.*batchrows"):
        RunOptions.build(None, batchrows=3)
    with pytest.raises(rnnjit.InputError, match=r"^batch_rows must be a positive integer, got 0$"):
        RunOptions(batch_rows=0)


def test_the_same_object_or_its_keywords_give_the_same_run(tmp_path):
    model = rnnjit.load(make_bundle(tmp_path))
    src = write(list_table(SEQS), tmp_path / "in.parquet")
    run = RunOptions(score=ScoreOptions(engine="numpy", pass_through=("id",)), batch_rows=2, fmt="parquet")
    a = score_dataset(model, src, tmp_path / "a.parquet", run)
    b = score_dataset(model, src, tmp_path / "b.parquet", engine="numpy", pass_through=("id",), batch_rows=2)
    assert (a.rows, b.rows) == (6, 6)
    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "b.parquet"))


@pytest.mark.parametrize("api, cli", [
    ("state column 'hn' (h0_column) not found", "state column 'hn' (--h0-column) not found"),
    ("resume needs a dataset output (output_layout='dataset')", "--resume needs a dataset output (--output-layout dataset)"),
    ("batch_rows must be a positive integer", "--batch-rows must be a positive integer"),
    ("pass --resume to finish it", "pass --resume to finish it"),  # a flag already: left alone
    ("column 'my_h0_column_x' is not a list", "column 'my_h0_column_x' is not a list"),  # part of a word: left alone
], ids=lambda s: s[:30])
def test_the_cli_says_its_flags(api, cli):
    assert cli_words(api) == cli
