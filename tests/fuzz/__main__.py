"""Fuzz every weight-file reader: ``python -m tests.fuzz --cases 10000`` (from the repository root).

For each format (``.pth`` zip and legacy, safetensors, ``.npz``, rnnjit bundles)
it mutates real seed files (tests/fuzz/seeds.py, tests/fuzz/mutate.py) and feeds
each case to a worker process (tests/fuzz/worker.py) under a time box and an
address-space cap. A case fails when the reader raises anything but an
`RnnjitError` with a one-line message, hits the memory cap, outlives its time
box, or kills the process (a segfault). Failing cases are written to
``--out`` (default ``$TMPDIR/rnnjit-fuzz-failures``) as ``<format>-<index>.bin``
for a test to load; ``--format F --start INDEX --cases 1`` replays one (bundle
seeds carry their creation time, so a bundle case is replayed from its file).
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fuzz import mutate, seeds

TIME_BOX = 10.0  # seconds per case; a healthy case takes milliseconds


class Worker:
    def __init__(self, seed_dir: Path, base_seed: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fuzz.worker", str(seed_dir), str(base_seed)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        first = self._line(300)
        if not first or not json.loads(first).get("ready"):
            raise SystemExit(f"fuzz worker did not start (exit code {self.proc.poll()})")

    def _line(self, timeout: float) -> str | None:
        import select

        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline() if ready else None

    def run(self, fmt: str, index: int) -> dict:
        try:
            self.proc.stdin.write(f"{fmt} {index}\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"outcome": "fail", "kind": "crash", "detail": f"worker died (exit {self.proc.poll()})"}
        line = self._line(TIME_BOX)
        if line is None:
            self.stop()
            return {"outcome": "fail", "kind": "timeout", "detail": f"no answer within {TIME_BOX:.0f} s"}
        if not line:
            code = self.proc.wait()
            return {"outcome": "fail", "kind": "crash", "detail": f"worker died with exit code {code} (signal {-code})"}
        return json.loads(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000, help="cases per format (default 10000)")
    ap.add_argument("--format", action="append", choices=seeds.FORMATS, help="only these formats (repeatable)")
    ap.add_argument("--start", type=int, default=0, help="first case number")
    ap.add_argument("--seed", type=int, default=20261123, help="base seed of the mutations")
    ap.add_argument(
        "--out", type=Path, default=Path(tempfile.gettempdir()) / "rnnjit-fuzz-failures", help="folder for failing cases"
    )
    args = ap.parse_args(argv)

    seed_dir = Path(tempfile.mkdtemp(prefix="rnnjit-fuzz-seeds-"))
    files = seeds.build(seed_dir)
    seed_bytes = {f: [p.read_bytes() for p in ps] for f, ps in files.items()}
    worker = None
    total_fail = 0
    print(
        f"{'format':<12} {'cases':>6} {'loaded':>7} {'refused':>8} {'failed':>7} {'seconds':>8} "
        f"{'slowest case s':>14} {'peak RSS MB':>11}"
    )
    for fmt in args.format or seeds.FORMATS:
        if worker is not None:
            worker.stop()
        worker = Worker(seed_dir, args.seed)  # one process per reader: its peak RSS is that reader's
        counts: collections.Counter = collections.Counter()
        slowest = peak = 0.0
        t0 = time.perf_counter()
        for index in range(args.start, args.start + args.cases):
            result = worker.run(fmt, index)
            counts[result["outcome"]] += 1
            slowest = max(slowest, result.get("seconds", 0.0))
            peak = max(peak, result.get("peak_mb", 0.0))
            if result["outcome"] == "fail":
                total_fail += 1
                args.out.mkdir(parents=True, exist_ok=True)
                (args.out / f"{fmt}-{index}.bin").write_bytes(mutate.case(fmt, seed_bytes[fmt], index, args.seed))
                print(f"  FAIL {fmt} case {index}: {result.get('kind')}: {result.get('detail')} {result.get('where', '')}")
                if result.get("kind") in ("timeout", "crash"):
                    worker.stop()
                    worker = Worker(seed_dir, args.seed)
        secs = time.perf_counter() - t0
        loaded = counts["loaded"] + counts["scored"]
        print(
            f"{fmt:<12} {args.cases:>6} {loaded:>7} {counts['refused']:>8} {counts['fail']:>7} {secs:>8.1f} "
            f"{slowest:>14.3f} {peak:>11.0f}",
            flush=True,
        )
    if worker is not None:
        worker.stop()
    print(f"total failures: {total_fail}" + (f" (cases saved in {args.out})" if total_fail else ""))
    return 1 if total_fail else 0


if __name__ == "__main__":
    sys.exit(main())
