"""The fuzzer itself still works: a few cases per format in-process (the real run is ``python -m tests.fuzz``)."""

from __future__ import annotations

import pytest

from tests.fuzz import mutate, seeds
from tests.fuzz.worker import run_case


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory):
    return seeds.build(tmp_path_factory.mktemp("seeds"))


@pytest.mark.parametrize("fmt", seeds.FORMATS)
def test_mutated_cases_load_or_are_refused(tmp_path, seed_files, fmt):
    seed_bytes = [p.read_bytes() for p in seed_files[fmt]]
    bundle = seed_files["parquet"][0] if fmt == "parquet" else None  # Parquet cases are scored with a seed bundle
    if fmt != "parquet":
        assert run_case(fmt, seed_files[fmt][0])["outcome"] in ("loaded", "scored")  # the seeds themselves are good
    outcomes = set()
    for index in range(40 if fmt != "parquet" else 4):
        data = mutate.case(fmt, seed_bytes, index, base_seed=7)
        assert data == mutate.case(fmt, seed_bytes, index, base_seed=7)  # a case is reproduced from its number
        path = tmp_path / f"case.{'npz' if fmt in ('npz', 'bundle') else fmt if fmt == 'parquet' else 'pth'}"
        path.write_bytes(data)
        result = run_case(fmt, path, bundle)
        assert result["outcome"] != "fail", (index, result)
        outcomes.add(result["outcome"])
    assert ("refused" in outcomes) != (fmt == "parquet")  # the mutations do damage; skewed Parquet scores


@pytest.mark.parametrize("fmt", ["pth-zip", "pth-legacy", "npz", "bundle"])
def test_attack_shapes_are_refused_or_harmless(tmp_path, seed_files, fmt, monkeypatch):
    """The attack shapes of tests/fuzz/attacks.py, a few of each, under the fuzzer's memory limit."""
    import random

    from tests.fuzz import attacks

    monkeypatch.setenv("RNNJIT_MEMORY_LIMIT", attacks.MEMORY_LIMIT)
    seed = seed_files[fmt][0].read_bytes()
    outcomes = set()
    for index in range(8):
        path = tmp_path / f"case.{'npz' if fmt in ('npz', 'bundle') else 'pth'}"
        path.write_bytes(attacks.attack(fmt, seed, random.Random(index)))
        result = run_case(fmt, path)
        assert result["outcome"] != "fail", (index, result)
        outcomes.add(result["outcome"])
    assert "refused" in outcomes
