"""Hostile Parquet and numbers (issue #9 item 6): each file gets what ``--on-invalid`` promises, no row lost silently.

``HOSTILE`` rows are ``(name, write(path), error fragment under on_invalid="error"
or None when the file scores, (invalid, empty) rows under on_invalid="skip",
or the error fragment that stops both policies)``. A file whose rows cannot be
counted (truncated, a column missing or of a type that is not numbers) stops
the run under both policies, naming the file: skipping it would lose its rows
without a trace.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import FEATURES_TYPE, list_table, make_bundle, random_sequences, write

import rnnjit
from rnnjit import InputError
from rnnjit.local import score_dataset
from rnnjit.scoring import ScoreOptions

SEQS = random_sequences(8, 3, seed=4, min_len=1, max_len=5)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return rnnjit.load(make_bundle(tmp_path_factory.mktemp("hostile"), feature_names=["a", "b", "c"]))


def _with(rows: dict, path):
    """SEQS as a list-layout file with some rows replaced (a value None is a null row)."""
    feats = [s.tolist() for s in SEQS]
    for i, v in rows.items():
        feats[i] = v
    return write(pa.table({"id": pa.array(range(len(feats)), pa.int64()), "features": pa.array(feats, FEATURES_TYPE)}),
                 path)


def _truncated(path):
    write(list_table(SEQS), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _other_schema(path):
    return write(pa.table({"key": range(len(SEQS)), "features": pa.array([s.tolist() for s in SEQS], FEATURES_TYPE)}),
                 path)


def _strings(path):
    return write(pa.table({"id": [0], "features": pa.array([[["1", "2", "3"]]])}), path)


def _float64_steps(path):  # another float width than the first file: cast, not refused
    return write(pa.table({"id": range(len(SEQS)),
                           "features": pa.array([s.tolist() for s in SEQS], pa.list_(pa.list_(pa.float64())))}), path)


NAN = float("nan")
HOSTILE = [
    ("nan", lambda p: _with({2: [[0.0, NAN, 1.0]], 5: [[1.0, 2.0, 3.0], [NAN] * 3]}, p),
     "row 2 (id=2): step 0 of column 'features' holds NaN or inf", (2, 0)),
    ("inf", lambda p: _with({3: [[float("inf"), 0.0, 0.0]], 4: [[0.0, 0.0, -float("inf")]]}, p),
     "row 3 (id=3): step 0 of column 'features' holds NaN or inf", (2, 0)),
    ("huge-finite", lambda p: _with({1: [[1e30, -1e30, 1e29]], 6: [[-3e38, 0.0, 1.0]]}, p), None, (0, 0)),
    ("zero-length", lambda p: _with({0: [], 7: []}, p), None, (0, 2)),
    ("null-sequence", lambda p: _with({4: None}, p), "row 4 (id=4): column 'features' is null", (1, 0)),
    ("null-step", lambda p: _with({6: [[1.0, 2.0, 3.0], None]}, p), "row 6 (id=6): step 1", (1, 0)),
    ("null-value", lambda p: _with({1: [[1.0, None, 3.0]]}, p), "row 1 (id=1): step 0", (1, 0)),
    ("zero-rows", lambda p: write(list_table([]).cast(list_table(SEQS).schema), p), None, (0, 0)),
    ("float64", _float64_steps, None, (0, 0)),
    ("truncated", _truncated, "cannot read Parquet input", "cannot read Parquet input"),
    ("other-schema", _other_schema, "has no column 'id'", "has no column 'id'"),
    ("strings", _strings, "has type list<element: list<element: string>> but the first file has",
     "has type list<element: list<element: string>> but the first file has"),
]


def _dataset(tmp_path, name, writer):
    d = tmp_path / "in"
    d.mkdir()
    write(list_table(SEQS), d / "a-good.parquet")
    writer(d / f"b-{name}.parquet")
    write(list_table(SEQS, ids=list(range(100, 108))), d / "c-good.parquet")
    return d


def _rows(path):
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # noqa: BLE001 - the truncated file
        return None


@pytest.mark.parametrize("case", HOSTILE, ids=[c[0] for c in HOSTILE])
@pytest.mark.parametrize("on_invalid", ["error", "skip"])
@pytest.mark.parametrize("layout", ["file", "dataset"])
def test_hostile_file_among_good_ones(model, tmp_path, case, on_invalid, layout):
    name, writer, error, skip = case
    d = _dataset(tmp_path, name, writer)
    out = tmp_path / "o.parquet" if layout == "file" else f"{tmp_path}/out/"
    expect_error = error if on_invalid == "error" else (skip if isinstance(skip, str) else None)
    opts = ScoreOptions(engine="numpy", on_invalid=on_invalid)
    if expect_error:
        with pytest.raises(InputError) as exc:
            score_dataset(model, d, out, options=opts, output_layout=layout)
        assert expect_error in str(exc.value) and f"b-{name}.parquet" in str(exc.value), str(exc.value)
        assert not (tmp_path / "o.parquet").exists()
        if layout == "dataset":  # the good file before it is committed, nothing of the bad one
            assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["_rnnjit_manifest.json", "a-good.parquet"]
        return
    s = score_dataset(model, d, out, options=opts, output_layout=layout)
    rows_in = sum(_rows(p) for p in sorted(d.iterdir()))
    files = [tmp_path / "o.parquet"] if layout == "file" else sorted((tmp_path / "out").glob("*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files])
    assert table.num_rows == rows_in == s.rows  # no row lost
    invalid, empty = skip
    assert (s.invalid, s.empty, s.scored) == (invalid, empty, rows_in - invalid - empty)
    assert table.column("score").null_count == invalid + empty
    finite = table.column("score").drop_null().to_numpy()
    assert np.isfinite(finite).all()


# ------------------------------------------------------------------ saturation: torch is the oracle
@pytest.mark.parametrize("magnitude", [1e3, 1e10, 1e20, 1e30], ids=lambda m: f"|x|={m:g}")
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_saturating_inputs_match_torch_through_parquet(model_cache, engine, tmp_path, cell, magnitude):
    from torch_models import Arch, Net, max_scaled, torch_forward

    torch_net, m = model_cache(("hostile", cell), lambda: (Net(Arch(cell), ["linear:2"]), {"output": "all"}))
    rng = np.random.default_rng(7)
    seqs = [(rng.standard_normal((t, 3)) * magnitude).astype(np.float32) for t in (1, 4, 6, 3)]
    seqs[1][2] = magnitude  # every feature at the extreme, both signs
    seqs[2][0] = -magnitude
    src = write(list_table(seqs), tmp_path / "in.parquet")
    score_dataset(m, src, tmp_path / "o.parquet", options=ScoreOptions(engine=engine, output_mode="all"))
    got = pq.read_table(tmp_path / "o.parquet").column("score").to_pylist()
    x = np.zeros((4, 6, 3), np.float32)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = s
    want, _, _ = torch_forward(torch_net, x, lengths=np.array([len(s) for s in seqs]), output="all")
    for i, s in enumerate(seqs):
        w = want[i, : len(s)]
        assert np.isfinite(w).all()  # torch is finite here, so rnnjit must be, and equal
        g = np.asarray(got[i], np.float64)
        assert np.isfinite(g).all() and max_scaled(g, w) < 1e-5, (i, max_scaled(g, w))
