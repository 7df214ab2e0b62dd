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
    assert run_case(fmt, seed_files[fmt][0])["outcome"] in ("loaded", "scored")  # the seeds themselves are good
    outcomes = set()
    for index in range(40):
        data = mutate.case(fmt, seed_bytes, index, base_seed=7)
        assert data == mutate.case(fmt, seed_bytes, index, base_seed=7)  # a case is reproduced from its number
        path = tmp_path / f"case.{'npz' if fmt in ('npz', 'bundle') else 'pth'}"
        path.write_bytes(data)
        result = run_case(fmt, path)
        assert result["outcome"] != "fail", (index, result)
        outcomes.add(result["outcome"])
    assert "refused" in outcomes  # the mutations do damage
