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


@pytest.fixture
def ln_dropped(tmp_path):
    """An LSTM, a LayerNorm, a Linear: inferred as lstm,fc, which leaves the LayerNorm's weights unused."""
    torch = pytest.importorskip("torch")
    from torch import nn
    from torch_models import LSTM, modules

    torch.manual_seed(0)
    torch.save(modules(lstm=LSTM(), ln=nn.LayerNorm(4), fc=nn.Linear(4, 1)).state_dict(), tmp_path / "m.pth")
    return tmp_path / "m.pth"


def test_convert_unused_module_both_ways(tmp_path, ln_dropped):
    with pytest.raises(rnnjit.ArchitectureError) as exc:
        rnnjit.convert(ln_dropped, tmp_path / "a.npz")
    msg = str(exc.value)
    assert "e.g. chain='lstm,ln,fc', or drop them on purpose with ignore=['ln']" in msg and "--" not in msg
    rnnjit.convert(ln_dropped, tmp_path / "a.npz", chain="lstm,ln,fc")  # the keywords, pasted
    rnnjit.convert(ln_dropped, tmp_path / "b.npz", ignore=["ln"])

    r = run("convert", ln_dropped, "-o", tmp_path / "c.npz")
    assert r.exit_code == 2 and "e.g. --chain 'lstm,ln,fc', or drop them on purpose with --ignore ln" in r.stderr
    assert "chain=" not in r.stderr and "ignore=" not in r.stderr
    assert run("convert", ln_dropped, "-o", tmp_path / "c.npz", "--chain", "lstm,ln,fc").exit_code == 0  # pasted
    assert run("convert", ln_dropped, "-o", tmp_path / "d.npz", "--ignore", "ln").exit_code == 0


def test_convert_option_clash_and_notes_both_ways(tmp_path, ln_dropped):
    with pytest.raises(rnnjit.ArchitectureError, match=r"^head= and chain= were both given; write the whole model "
                                                       r"in chain= only$"):
        rnnjit.convert(ln_dropped, tmp_path / "a.npz", chain="lstm,ln,fc", head="fc")
    r = run("convert", ln_dropped, "-o", tmp_path / "b.npz", "--chain", "lstm,ln,fc", "--head", "fc")
    assert r.stderr == "error: --head and --chain were both given; write the whole model in --chain only\n"

    model = rnnjit.convert(ln_dropped, tmp_path / "a.npz", ignore="ln")
    note = next(a["note"] for a in model.assumed if a["note"].startswith("output mode assumed last"))
    assert note.endswith("to score every step: output='all'; to pool over time: chain='lstm,pool:mean,fc'")
    r = run("convert", ln_dropped, "-o", tmp_path / "b.npz", "--ignore", "ln")
    assert r.exit_code == 0
    assert "to score every step: --output-mode all; to pool over time: --chain 'lstm,pool:mean,fc'\n" in r.stderr
    assert run("convert", ln_dropped, "-o", tmp_path / "c.npz", "--ignore", "ln", "--output-mode", "all").exit_code == 0
