"""Helpers for the CLI, scoring and streaming tests: small bundles and Parquet files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

import rnnjit
from rnnjit.cli.app import app
from rnnjit.spec import RNNSpec

FEATURES_TYPE = pa.list_(pa.list_(pa.float32()))


def make_weights(spec: RNNSpec, out_features: int = 1, seed: int = 0, head_name: str = "fc") -> dict[str, np.ndarray]:
    """Random PyTorch-named weights for ``spec`` plus a linear head (no torch needed)."""
    rng = np.random.default_rng(seed)
    w = {k: (rng.normal(size=s) * 0.4).astype(np.float32) for k, s in spec.expected_shapes().items()}
    w[f"{head_name}.weight"] = (rng.normal(size=(out_features, spec.output_size)) * 0.5).astype(np.float32)
    w[f"{head_name}.bias"] = (rng.normal(size=(out_features,)) * 0.1).astype(np.float32)
    return w


def make_bundle(tmp_path: Path, *, cell="lstm", input_size=3, hidden_size=5, num_layers=1, bidirectional=False,
                out_features=1, head="fc,sigmoid", output="last", seed=0, name="bundle.npz",
                feature_names=None) -> Path:
    """Convert random weights (saved as an .npz of arrays) to a bundle; returns its path."""
    spec = RNNSpec(cell, input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                   prefix="rnn.")
    src = tmp_path / f"src-{name}"
    np.savez(src, **make_weights(spec, out_features, seed))
    out = tmp_path / name
    nonlin = "tanh" if cell.startswith("rnn") else None
    rnnjit.convert(src, out, head=head, output=output, nonlinearity=nonlin, feature_names=feature_names)
    return out


def random_sequences(n: int, input_size: int, seed: int = 0, min_len: int = 1, max_len: int = 7):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(int(rng.integers(min_len, max_len + 1)), input_size)).astype(np.float32)
            for _ in range(n)]


def list_table(seqs, ids=None, **extra) -> pa.Table:
    ids = list(range(len(seqs))) if ids is None else ids
    cols = {"id": pa.array(ids, pa.int64()),
            "features": pa.array([s.tolist() for s in seqs], FEATURES_TYPE)}
    cols.update(extra)
    return pa.table(cols)


def long_table(seqs, ids=None, names=None) -> pa.Table:
    """One row per step: id, t, f0..f{I-1}."""
    ids = list(range(len(seqs))) if ids is None else ids
    I = seqs[0].shape[1]
    names = names or [f"f{j}" for j in range(I)]
    rows_id = [i for s, i in zip(seqs, ids) for _ in range(len(s))]
    rows_t = np.concatenate([np.arange(len(s)) for s in seqs]) if seqs else np.zeros(0, np.int64)
    flat = np.concatenate(seqs) if seqs else np.zeros((0, I), np.float32)
    cols = {"id": pa.array(rows_id), "t": pa.array(rows_t, pa.int64())}
    for j, n in enumerate(names):
        cols[n] = pa.array(flat[:, j], pa.float32())
    return pa.table(cols)


def write(table: pa.Table, path: Path, **kw) -> Path:
    pq.write_table(table, path, **kw)
    return path


def run(*args, input=None):
    """Invoke the CLI in-process; returns typer's Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def scores(path: Path) -> list:
    return pq.read_table(path).column("score").to_pylist()


def flag(command: str, new: str, old: str) -> str:
    """The lead's new option name (issue #11) once a branch meets it, the old one before."""
    return new if new in run(command, "--help").stdout else old
