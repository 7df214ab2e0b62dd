"""What a newcomer tripped on in the first hour (issue #21), each fed as the user met it.

The README's own examples run in tests/test_readme.py; these are the
mistakes and messages around them: hints that looped, examples in errors
that gave wrong scores when pasted, a torch check that did not run and
passed, CLI words with two meanings.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import rnnjit  # noqa: E402
from cli_helpers import list_table, long_table, make_bundle, random_sequences, run, write  # noqa: E402


def _one_error(r, code=2) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == code and len(lines) == 1 and lines[0].startswith("error: "), (r.exit_code, r.stderr)
    return lines[0]


def _save(path, prefix="", **modules):
    sd = {}
    for name, m in modules.items():
        sd.update({f"{prefix}{name}.{k}": v for k, v in m.state_dict().items()})
    torch.save(sd, path)
    return path


class _FeatureExtraction(nn.Module):  # a CRNN's conv front-end, as text-recognition packages ship it
    def __init__(self):
        super().__init__()
        self.ConvNet = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3))


def test_ignoring_attention_does_not_offer_its_out_proj_as_the_head(tmp_path):
    src = _save(tmp_path / "m.pth", lstm=nn.LSTM(4, 8, batch_first=True), attn=nn.MultiheadAttention(8, 2),
                fc=nn.Linear(8, 1))
    msg = _one_error(run("convert", src, "-o", tmp_path / "b.npz"))
    assert msg.endswith("drop it with --ignore attn")
    r = run("convert", src, "-o", tmp_path / "b.npz", "--ignore", "attn")
    assert r.exit_code == 0, r.stderr
    assert rnnjit.load(tmp_path / "b.npz").describe().endswith("fc")  # the head is fc, attn.out_proj is gone


def test_a_cnn_front_end_is_ignored_by_its_parent_module_also_as_the_file_spells_it(tmp_path):
    seq = nn.Module()
    seq.add_module("0", nn.LSTM(4, 8, bidirectional=True))
    seq.add_module("1", nn.LSTM(16, 8, bidirectional=True))
    src = _save(tmp_path / "crnn.pth", prefix="module.", FeatureExtraction=_FeatureExtraction(),
                SequenceModeling=seq, Prediction=nn.Linear(16, 5))
    msg = _one_error(run("convert", src, "-o", tmp_path / "b.npz"))
    assert msg.endswith("drop it with --ignore FeatureExtraction"), msg
    for name in ("FeatureExtraction", "module.FeatureExtraction"):  # DataParallel's spelling works too
        msg = _one_error(run("convert", src, "-o", tmp_path / "b.npz", "--ignore", name))
        assert "2 recurrent modules" in msg and "FeatureExtraction" not in msg.split("e.g.")[1], msg
    chain = "SequenceModeling.0,SequenceModeling.1,Prediction"
    r = run("convert", src, "-o", tmp_path / "b.npz", "--ignore", "module.FeatureExtraction", "--chain", chain)
    assert r.exit_code == 0, r.stderr
    assert rnnjit.load(tmp_path / "b.npz").config["ignored"] == ["FeatureExtraction"]


def test_a_bundle_for_other_features_is_not_blamed_on_row_0(tmp_path):
    bundle = make_bundle(tmp_path, input_size=3)
    src = write(list_table(random_sequences(5, 4)), tmp_path / "in.parquet")
    msg = _one_error(run("score", "-m", bundle, "-i", src, "-o", tmp_path / "o.parquet"))
    assert "has 4 values per step in every row; the model expects input_size=3" in msg
    assert "row 0" not in msg and "fix that row" not in msg
    seqs = random_sequences(5, 3)
    seqs[2] = np.zeros((2, 4), np.float32)  # one row is wrong: that row is named
    src = write(list_table(seqs), tmp_path / "one.parquet")
    msg = _one_error(run("score", "-m", bundle, "-i", src, "-o", tmp_path / "o.parquet"))
    assert "row 2 (id=2): step 0" in msg and "fix that row or drop it" in msg


def test_the_long_layout_error_for_a_bundle_without_names_has_nothing_to_paste_in_file_order(tmp_path):
    bundle = make_bundle(tmp_path, input_size=3)
    src = write(long_table(random_sequences(4, 3), names=["b138", "b39", "b7"]), tmp_path / "steps.parquet")
    msg = _one_error(run("score", "-m", bundle, "-i", src, "-o", tmp_path / "o.parquet", "--layout", "long",
                         "--key-column", "id", "--order-column", "t"))
    assert "b138, b39, b7" in msg  # the candidates are listed
    assert "--feature-columns b138" not in msg  # but not as a ready-made (file-order) option


def test_verify_unwraps_what_convert_unwraps_and_fails_a_torch_check_that_cannot_run(tmp_path):
    lstm, fc = nn.LSTM(3, 4, batch_first=True), nn.Linear(4, 1)
    sd = {f"module.{k}": v for m, n in ((lstm, "lstm"), (fc, "fc")) for k, v in
          {f"{n}.{k}": v for k, v in m.state_dict().items()}.items()}
    torch.save({"model_state": sd, "epoch": 3}, tmp_path / "ckpt.pth")
    assert run("convert", tmp_path / "ckpt.pth", "-o", tmp_path / "b.npz", "--head", "fc").exit_code == 0
    r = run("verify", tmp_path / "b.npz", "--against", tmp_path / "ckpt.pth")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1].startswith("torch: ok")
    torch.save({"lstm.weight_ih_l0": torch.zeros(16, 3)}, tmp_path / "other.pth")  # not the file converted
    r = run("verify", tmp_path / "b.npz", "--against", tmp_path / "other.pth")
    assert r.exit_code == 1
    assert any(line.startswith("torch: NOT RUN (") for line in r.stdout.splitlines()), r.stdout
    assert "the torch check could not run" in r.stderr


def test_an_input_with_yesterdays_hn_passes_it_through_with_a_warning(tmp_path):
    bundle = make_bundle(tmp_path, input_size=3, cell="gru")
    seqs = random_sequences(4, 3)
    src = write(list_table(seqs, hn=[[0.5] * 5] * 4), tmp_path / "in.parquet")
    r = run("score", "-m", bundle, "-i", src, "-o", tmp_path / "o.parquet")
    assert r.exit_code == 0, r.stderr
    assert r.stderr.startswith("warning: the input has a 'hn' column but no 'h0': scoring starts from a zero state")
    msg = _one_error(run("score", "-m", bundle, "-i", src, "-o", tmp_path / "e.parquet", "--emit-state"))
    assert "input column 'hn' would be overwritten by the state column --emit-state writes" in msg


def test_long_layout_key_column_and_the_old_id_column_spelling(tmp_path):
    bundle = make_bundle(tmp_path, input_size=3, feature_names=["f0", "f1", "f2"])
    src = write(long_table(random_sequences(4, 3)), tmp_path / "steps.parquet")
    base = ("score", "-m", bundle, "-i", src, "--layout", "long", "--order-column", "t")
    new = run(*base, "-o", tmp_path / "new.parquet", "--key-column", "id", "--quiet")
    assert new.exit_code == 0 and new.stderr == "", new.stderr
    old = run(*base, "-o", tmp_path / "old.parquet", "--id-column", "id", "--quiet")
    assert old.exit_code == 0, old.stderr
    assert old.stderr.strip().splitlines() == [
        "warning: --id-column is deprecated for the long layout's sequence key; use --key-column id"]
    assert pq.read_table(tmp_path / "new.parquet").equals(pq.read_table(tmp_path / "old.parquet"))


@pytest.mark.parametrize("command", ["score", "convert", "verify"])
def test_choice_options_show_their_choices_the_same_way_and_say_what_each_does(command):
    help_text = " ".join(run(command, "--help").stdout.split())
    options = help_text.split("Options:", 1)[1]
    assert "<" not in options.replace("<float32>", "").replace("list<", ""), options  # no <a|b> or <file> metavars
    if command in ("score", "convert"):
        assert "--output-mode last|final|all" in help_text
        assert "last: the output at each sequence's last valid step; final:" in help_text
    if command in ("score", "verify"):
        assert "--engine numba|numpy" in help_text and "numpy: the exact numpy reference engine" in help_text


def test_a_dataset_output_creates_its_parents_and_a_file_output_does_not(tmp_path):
    bundle = make_bundle(tmp_path, input_size=3)
    src = write(list_table(random_sequences(4, 3)), tmp_path / "in.parquet")
    r = run("score", "-m", bundle, "-i", src, "-o", f"{tmp_path}/scores/2026-11-23/", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "scores" / "2026-11-23" / "in.parquet").is_file()
    msg = _one_error(run("score", "-m", bundle, "-i", src, "-o", tmp_path / "typo" / "s.parquet"))
    assert msg.endswith("does not exist; create it first") and not (tmp_path / "typo").exists()
