"""Kill real ``rnnjit score`` runs with SIGKILL at dozens of points; check nothing is lost or half-written.

    python -m bench.kill_runs [--files 8] [--rows 40] [--chains 5] [--seed 1] [--signal KILL|TERM]

1. Builds a hive-partitioned dataset (``--files`` files of about ``--rows``
   sequences; hostile rows: NaN, null sequences and steps, |x| = 1e30, empty
   sequences, scored with ``--on-invalid skip``; hostile files: an empty pandas
   partition, a zero-row file, ``_SUCCESS`` and a README) and scores it once
   without interruption: the reference.
2. Dataset output: for every stage (lock, start, read, score, write, commit
   before the rename, renamed after it, manifest) and every arrival n = 1, 2,
   ... until the run finishes before the n-th arrival, runs ``rnnjit score``
   with ``RNNJIT_KILL_AT=stage:n`` (the process SIGKILLs itself there; with
   ``--signal TERM`` it gets SIGTERM, must exit 143 and leave no temporary
   file and no ``_SUCCESS``), checks that
   every output file present is identical to the reference's (a file that
   looks finished is finished), then ``--resume`` and compares the whole
   output with the reference, row for row.
3. Single-file output: the same kill points; after each kill the output path
   must not exist; a rerun equals the reference.
4. ``--chains`` chains of resumed runs, each killed at a random point, until
   one finishes; the result must equal the reference.

Prints the figures the README's "Reliability" section quotes: kills, kills
survived (output equal to the reference after resuming), rows lost or
duplicated, half-written files seen.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("lock", "start", "read", "score", "write", "commit", "renamed", "manifest")
FILE_STAGES = ("read", "score", "write", "commit")


def make_inputs(root: Path, n_files: int, rows: int, seed: int) -> tuple[Path, Path]:
    sys.path.insert(0, str(ROOT / "tests"))
    from cli_helpers import FEATURES_TYPE, make_bundle

    rng = np.random.default_rng(seed)
    bundle = make_bundle(root, feature_names=["a", "b", "c"])
    src = root / "in"
    next_id = 0
    for k in range(n_files):
        n = int(rng.integers(rows // 2, rows * 3 // 2 + 1))
        feats = [rng.normal(size=(int(rng.integers(0, 12)), 3)).astype(np.float32).tolist() for _ in range(n)]
        if k % 3 == 1:  # hostile rows: NaN, a null sequence, a null step, |x| = 1e30
            feats[n // 2] = [[float("nan"), 0.0, 0.0]]
            feats[n // 3] = None
            feats[n // 4] = [[1.0, 2.0, 3.0], None]
            feats[n // 5] = [[1e30, -1e30, 0.5]]
        p = src / f"day={k // 3}" / f"part-{k}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"id": range(next_id, next_id + n), "features": pa.array(feats, FEATURES_TYPE)}), p,
                       row_group_size=7)
        next_id += n
    # hostile files that a run must get through: an empty partition as pandas writes it (features typed
    # null), a file of zero rows, and files that are not Parquet data
    empty = src / "day=0" / "part-empty.parquet"
    pq.write_table(pa.table({"id": pa.array([], pa.int64()), "features": pa.nulls(0)}), empty)
    pq.write_table(pa.table({"id": pa.array([], pa.int64()), "features": pa.array([], FEATURES_TYPE)}),
                   src / "day=0" / "part-zero.parquet")
    (src / "_SUCCESS").write_bytes(b"")
    (src / "README.md").write_text("written by the nightly export\n")
    return bundle, src


SIGNAL = "KILL"
KILLED = {"KILL": -9, "TERM": 143}


def score(bundle, src, out, *extra, kill=None) -> int:
    env = {**os.environ, "RNNJIT_KILL_AT": f"{kill}:{SIGNAL}" if kill else ""}
    args = [sys.executable, "-m", "rnnjit.cli", "score", "--model", str(bundle), "-i", str(src), "-o", str(out),
            "--batch-rows", "5", "--on-invalid", "skip", "--engine", "numpy", "-q", *extra]
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, timeout=600).returncode


def outputs(out: Path) -> dict[str, pa.Table]:
    return {str(p.relative_to(out)): pq.read_table(p) for p in sorted(out.rglob("*.parquet"))}


def compare(got: dict, want: dict) -> tuple[int, int, int]:
    """(rows lost, rows duplicated, files differing) of ``got`` against ``want``."""
    ids_got = [i for t in got.values() for i in t.column("id").to_pylist()]
    ids_want = [i for t in want.values() for i in t.column("id").to_pylist()]
    lost = len(set(ids_want) - set(ids_got))
    dup = len(ids_got) - len(set(ids_got))
    differ = sum(1 for k in want if k not in got or not got[k].equals(want[k])) + len(set(got) - set(want))
    return lost, dup, differ


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--rows", type=int, default=40)
    ap.add_argument("--chains", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--signal", choices=sorted(KILLED), default="KILL")
    a = ap.parse_args(argv)
    global SIGNAL
    SIGNAL = a.signal
    killed = KILLED[a.signal]
    t0 = time.time()
    work = Path(tempfile.mkdtemp(prefix="rnnjit-kill-"))
    try:
        bundle, src = make_inputs(work, a.files, a.rows, a.seed)
        ref = work / "ref"
        assert score(bundle, src, f"{ref}/") == 0
        want = outputs(ref)
        assert score(bundle, src, work / "ref.parquet") == 0
        want_file = pq.read_table(work / "ref.parquet")
        total_rows = sum(t.num_rows for t in want.values())
        fig = {"kills": 0, "survived": 0, "rows_lost": 0, "rows_duplicated": 0, "half_written_seen": 0,
               "file_kills": 0, "file_survived": 0}
        by_stage: dict[str, int] = {}
        for stage in STAGES:  # dataset output
            n = 1
            while True:
                out = work / f"ds-{stage}-{n}"
                rc = score(bundle, src, f"{out}/", kill=f"{stage}:{n}")
                if rc != killed:
                    assert rc == 0, (stage, n, rc)
                    break
                fig["kills"] += 1
                by_stage[stage] = by_stage.get(stage, 0) + 1
                present = outputs(out) if out.exists() else {}
                if a.signal == "TERM":  # handled: nothing left but committed outputs and the manifest
                    fig["half_written_seen"] += len([p for p in out.rglob("*") if "rnnjit-tmp" in p.name or
                                                     p.name in ("_SUCCESS", "_rnnjit.lock")])
                fig["half_written_seen"] += sum(1 for k, t in present.items() if not t.equals(want[k]))
                assert score(bundle, src, f"{out}/", "--resume") == 0
                lost, dup, differ = compare(outputs(out), want)
                fig["rows_lost"] += lost
                fig["rows_duplicated"] += dup
                fig["survived"] += int(lost == dup == differ == 0)
                shutil.rmtree(out)
                n += 1
        for stage in FILE_STAGES:  # single-file output
            for n in (1, 2, 5, 9):
                out = work / f"one-{stage}-{n}.parquet"
                rc = score(bundle, src, out, kill=f"{stage}:{n}")
                if rc != killed:
                    continue
                fig["file_kills"] += 1
                leftovers = [p for p in work.iterdir() if p.name.startswith(f".{out.name}")]
                fig["half_written_seen"] += int(out.exists())
                ok = score(bundle, src, out) == 0 and pq.read_table(out).equals(want_file)
                fig["file_survived"] += int(ok and not [p for p in leftovers if p.exists()])
                out.unlink(missing_ok=True)
        rnd = random.Random(a.seed)
        chain_kills = []
        for c in range(a.chains):  # random kills, resumed until one run finishes
            out = work / f"chain-{c}"
            kills = 0
            while True:
                kill = f"{rnd.choice(STAGES)}:{rnd.randint(1, 12)}"
                rc = score(bundle, src, f"{out}/", "--resume", kill=kill)
                if rc == 0:
                    break
                assert rc == killed, rc
                kills += 1
            chain_kills.append(kills)
            lost, dup, differ = compare(outputs(out), want)
            fig["rows_lost"] += lost
            fig["rows_duplicated"] += dup
            fig["chains_equal"] = fig.get("chains_equal", 0) + int(lost == dup == differ == 0)
        print(f"signal: SIG{a.signal}")
        print(f"dataset: {len(want)} Parquet files ({a.files} with rows, 2 empty) and 2 that are not data, "
              f"{total_rows} rows; seconds: {time.time() - t0:.0f}")
        print(f"dataset-output kills: {fig['kills']} ({', '.join(f'{k} {v}' for k, v in by_stage.items())}), "
              f"survived (resume == uninterrupted): {fig['survived']}")
        print(f"single-file-output kills: {fig['file_kills']}, survived (no output left, rerun == reference): "
              f"{fig['file_survived']}")
        print(f"random-kill chains: {a.chains}, kills per chain {chain_kills}, equal to reference: "
              f"{fig.get('chains_equal', 0)}")
        print(f"rows lost: {fig['rows_lost']}, rows duplicated: {fig['rows_duplicated']}, "
              f"half-written files seen under a final name: {fig['half_written_seen']}")
        bad = fig["rows_lost"] + fig["rows_duplicated"] + fig["half_written_seen"]
        bad += fig["kills"] - fig["survived"] + fig["file_kills"] - fig["file_survived"]
        bad += a.chains - fig.get("chains_equal", 0)
        return 1 if bad else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
