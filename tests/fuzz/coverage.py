"""Coverage-guided fuzzing of one reader with atheris (libFuzzer), same mutators and oracle.

    pip install atheris
    python -m tests.fuzz.coverage pth-zip -runs=10000 -timeout=10 -rss_limit_mb=4096

Arguments after the format go to libFuzzer. libFuzzer itself turns a
segfault, a case over ``-timeout`` seconds or a process over
``-rss_limit_mb`` into a reported crash with the input saved; an exception
that is not an `RnnjitError` (or a message of more than one line) is raised
and reported the same way. The seed files start the corpus; new inputs come
from `tests.fuzz.mutate` (structure-aware) driven by libFuzzer's coverage.
"""

from __future__ import annotations

import random
import resource
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["rnnjit"]):
    import rnnjit.bundle  # imported here to be instrumented
    import rnnjit.formats  # noqa: F401

from tests.fuzz import mutate, seeds
from tests.fuzz.worker import ADDRESS_SPACE, run_case


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in seeds.FORMATS:
        raise SystemExit(f"usage: python -m tests.fuzz.coverage {{{','.join(seeds.FORMATS)}}} [libFuzzer options]")
    fmt = sys.argv[1]
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))  # as the plain fuzzer's worker
    work = Path(tempfile.mkdtemp(prefix="rnnjit-atheris-"))
    files = seeds.build(work / "seeds")[fmt]
    seed_bytes = [p.read_bytes() for p in files]
    corpus = work / "corpus"
    corpus.mkdir()
    for i, data in enumerate(seed_bytes):
        (corpus / f"seed{i}").write_bytes(data)
    case_path = work / ("case.npz" if fmt in ("npz", "bundle") else "case.pth")

    def one_input(data: bytes) -> None:
        case_path.write_bytes(data)
        result = run_case(fmt, case_path)
        if result["outcome"] == "fail":
            raise AssertionError(f"{result.get('kind')}: {result.get('detail')} {result.get('where', '')}")

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        return mutate.mutate(fmt, data, random.Random(seed), seed_bytes)[:max_size]

    if fmt == "bundle":
        run_case(fmt, files[0])  # compile the numba kernels before libFuzzer's clock starts
    atheris.Setup([sys.argv[0], *sys.argv[2:], str(corpus)], one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
