"""One fuzzing process: reads ``FORMAT INDEX`` lines on stdin, answers one JSON line per case.

Run by tests/fuzz/__main__.py, which restarts it when a case kills it or
outlives its time box. A case passes when the reader returns valid arrays (for
a bundle: loads, then scores with the numpy and numba engines; for Parquet:
scores every row in input order) or raises an `RnnjitError` with a one-line
message; anything else is a failure. The worker runs under
``RNNJIT_MEMORY_LIMIT`` = `tests.fuzz.attacks.MEMORY_LIMIT`, and after every
weight-file case it reads an honest seed again: different arrays mean the
case poisoned the process.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from tests.fuzz import attacks, mutate, seeds

# A hostile size must be refused by a check, not by the allocator: cap the
# address space so a missed check shows up as a MemoryError we flag, instead
# of the machine swapping.
ADDRESS_SPACE = 8 << 30
# Resident memory one case may add: the seeds are kilobytes, so growth past
# this means a claimed size was allocated and touched.
MAX_CASE_GROWTH_MB = 128
MEMORY_WORDS = ("more memory", "MemoryError", "does not fit in memory")


def _score(path: Path) -> str:
    import rnnjit

    model = rnnjit.load(path)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, model.spec.input_size)).astype(np.float32)
    for engine in ("numpy", "numba"):
        y = model.predict(x, lengths=np.array([3, 1]), engine=engine)
        if not isinstance(y, np.ndarray) or y.shape[0] != 2:
            raise AssertionError(f"{engine} returned {type(y).__name__} {getattr(y, 'shape', '')}")
    return "scored"


def _score_parquet(path: Path, bundle: Path) -> str:
    import pyarrow.parquet as pq

    import rnnjit
    from rnnjit.scoring import ScoreOptions, score_batch

    model = rnnjit.load(bundle)
    table = pq.read_table(path)
    lengths = np.diff(table.column("features").combine_chunks().offsets.to_numpy())
    for engine in ("numba",):  # the split is the engines' common path; numpy would spend seconds per long row
        out = score_batch(model, table, ScoreOptions(engine=engine))
        if out.column("id").to_pylist() != table.column("id").to_pylist():
            raise AssertionError(f"{engine}: rows came back out of order")
        if out.column("score").null_count != int((lengths == 0).sum()):
            raise AssertionError(f"{engine}: {out.column('score').null_count} null scores for {int((lengths == 0).sum())} empty rows")
    return "scored"


def _read(path: Path) -> str:
    from rnnjit.formats import read_state_dict

    sd, info = read_state_dict(path)
    for key, arr in sd.items():
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiucb" or not arr.flags.c_contiguous:
            raise AssertionError(f"{key!r} is {type(arr).__name__} {getattr(arr, 'dtype', '')}")
    if not isinstance(info.get("placeholders"), list):
        raise AssertionError("info['placeholders'] is missing")
    return "loaded"


def run_case(fmt: str, path: Path, bundle: Path | None = None) -> dict:
    from rnnjit.errors import RnnjitError

    try:
        if fmt == "parquet":
            outcome = _score_parquet(path, bundle)
        else:
            outcome = _score(path) if fmt == "bundle" else _read(path)
        return {"outcome": outcome}
    except RnnjitError as exc:
        msg = str(exc)
        if "\n" in msg or not msg or any(w in msg for w in MEMORY_WORDS):
            return {"outcome": "fail", "kind": type(exc).__name__, "detail": msg[:500]}
        return {"outcome": "refused", "kind": type(exc).__name__}
    except BaseException as exc:  # noqa: BLE001 - every other exception is what we look for
        tb = traceback.format_exc().splitlines()
        return {"outcome": "fail", "kind": type(exc).__name__, "detail": f"{exc}"[:300], "where": tb[-3:-1]}


def main() -> None:
    from rnnjit.formats import read_state_dict

    seed_dir, base_seed = Path(sys.argv[1]), int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    os.environ["RNNJIT_MEMORY_LIMIT"] = attacks.MEMORY_LIMIT
    existing = seeds.existing(seed_dir)
    found = {f: [p.read_bytes() for p in paths] for f, paths in existing.items()}
    work = Path(tempfile.mkdtemp(prefix="rnnjit-fuzz-"))
    for p in existing["bundle"]:
        _score(p)  # compile the numba kernels once, outside any time box
    honest_path = existing["pth-zip"][0]
    honest = read_state_dict(honest_path)[0]
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        fmt, index = line.split()
        data = mutate.case(fmt, found[fmt], int(index), base_seed)
        path = work / f"case.{'npz' if fmt in ('npz', 'bundle') else 'parquet' if fmt == 'parquet' else 'pth'}"
        path.write_bytes(data)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB, a high-water mark
        t0 = time.perf_counter()
        result = run_case(fmt, path, existing["parquet"][0] if fmt == "parquet" else None)
        result["seconds"] = time.perf_counter() - t0
        if fmt.startswith("pth") and result["outcome"] != "fail":
            again = read_state_dict(honest_path)[0]
            if again.keys() != honest.keys() or any(not np.array_equal(again[k], honest[k]) for k in honest):
                result.update(outcome="fail", kind="poisoned", detail="an honest file read differently after this case")
        result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if result["peak_mb"] - before / 1024 > MAX_CASE_GROWTH_MB and result["outcome"] != "fail":
            result.update(outcome="fail", kind="memory", detail=f"peak RSS grew to {result['peak_mb']:.0f} MB")
        result["index"] = int(index)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
