"""This run's rnnjit/torch ratios against the recorded ones: a warning only where a drop is more than noise.

Issue 12 asks for a warning (never a failure) when a shape's ratio drops more
than 25% below the recorded run. With one recorded run and one round per
engine, CI printed 26-54 such warnings per run on an idle machine: the same
code measured four times spread a case's ratio by 1.6x (median max/min).
Three things make a warning mean something now:

1. the ratio compared is measured with rnnjit's and torch's calls
   alternated, each one's minimum over a time budget of calls
   (`bench.timing.paired_ratio`): not one call each, seconds apart;
2. the reference is the median of several recorded runs, kept with each
   run's ratio (``bench/REPORT-quick-ratios.json``, written by
   ``python -m bench.report --quick --runs 3 --out bench/REPORT-quick.md``):
   a case is a suspect when its ratio is more than 25% below that median
   *and* below every recorded run (what the recorded runs showed is noise
   by definition);
3. suspects are measured again in a fresh process, and only a case that is
   still a suspect on that re-run is a WARNING; the others are one line
   saying they recovered.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

DROP = 0.25


def torch_ratios(data) -> dict[str, float]:
    """rnnjit/torch throughput ratio per case of a pytest-benchmark JSON document.

    The paired ratio (calls alternated, `bench.timing.paired_ratio`) where the
    rnnjit row has one, else torch's min time / rnnjit's (older records).
    """
    times: dict[str, dict[str, float]] = {}
    paired = {}
    for bm in data["benchmarks"]:
        info = bm["extra_info"]
        if "case" not in info:  # not a grid case (the C export's, reported by bench.c_export)
            continue
        times.setdefault(info["case"], {})[info["engine"]] = bm["stats"]["min"]
        if info["engine"] == "rnnjit" and "paired_torch_ratio" in info:
            paired[info["case"]] = info["paired_torch_ratio"]
    out = {c: t["torch"] / t["rnnjit"] for c, t in times.items() if "torch" in t and "rnnjit" in t}
    return {**out, **paired}


def write_ratios(path: Path, runs_by_env: dict[str, list[dict[str, float]]], command: str) -> None:
    """Record every run's ratios per environment: the reference a later run is compared with."""
    doc = {"format": 1, "command": command, "drop": DROP, "environments": {}}
    for env, runs in runs_by_env.items():
        cases = sorted({c for r in runs for c in r})
        doc["environments"][env] = {c: [round(r[c], 4) for r in runs if c in r] for c in cases}
    path.write_text(json.dumps(doc, indent=1) + "\n")


def load_reference(folder: Path, env: str, quick: bool) -> tuple[dict[str, list[float]], str] | None:
    """({case: recorded ratios}, where from) for ``env``, or None when nothing is recorded.

    The several-run ratios file when present, else the single recorded
    pytest-benchmark JSON (one run: its ratio is the whole reference).
    """
    stem = "REPORT-quick" if quick else "REPORT"
    multi = folder / f"{stem}-ratios.json"
    if multi.is_file():
        recorded = json.loads(multi.read_text())["environments"].get(env)
        if recorded:
            n = max(len(v) for v in recorded.values())
            return recorded, f"`{multi.name}` (median of {n} recorded run{'s' if n > 1 else ''})"
    single = folder / f"{stem}-{env}.json"
    if single.is_file():
        return {c: [r] for c, r in torch_ratios(json.loads(single.read_text())).items()}, f"`{single.name}` (one run)"
    return None


def suspects(ratios: dict[str, float], recorded: dict[str, list[float]], drop: float = DROP) -> list[str]:
    """Cases whose ratio is more than ``drop`` below the recorded median and below every recorded run."""
    out = []
    for case, r in sorted(ratios.items()):
        ref = recorded.get(case)
        if ref and r < (1 - drop) * statistics.median(ref) and r < min(ref):
            out.append(case)
    return out


def summary(label: str, ratios, recorded, where: str, first: list[str], again: dict[str, float] | None,
            drop: float = DROP) -> list[str]:  # fmt: skip
    """The report's lines for one environment: one line when all is well, a WARNING per confirmed drop.

    ``first``: this run's suspects; ``again``: their ratios on the re-run
    (None when there was no re-run).
    """
    shared = sum(1 for c in ratios if c in recorded)
    head = f"- {label}: {shared} cases compared with {where}"
    if not first:
        return [f"{head}: none more than {100 * drop:.0f}% below the recorded median and outside the recorded runs."]
    again = again or {}
    confirmed = [c for c in first if c in again and suspects({c: again[c]}, recorded, drop)]
    recovered = [c for c in first if c not in confirmed]
    lines = [f"{head}: {len(first)} below the threshold on the first run, {len(confirmed)} still below it when "
             "measured again in a fresh process."]  # fmt: skip
    for c in confirmed:
        med, lo = statistics.median(recorded[c]), min(recorded[c])
        lines.append(f"- WARNING {label}: {c} rnnjit/torch (calls alternated) {ratios[c]:.2f}x, then {again[c]:.2f}x on the re-run; "
                     f"recorded median {med:.2f}x (lowest {lo:.2f}x), {100 * (1 - again[c] / med):.0f}% lower: "
                     "a possible regression")  # fmt: skip
    if recovered:
        noise = ", ".join(f"{c} {ratios[c]:.2f}x -> {again[c]:.2f}x" if c in again else f"{c} (not re-run)"
                          for c in recovered)  # fmt: skip
        lines.append(f"  - noise, back within the threshold on the re-run: {noise}")
    return lines


def load_note(load: float, ncpu: int | None) -> list[str]:
    """A line when the machine was overloaded during the run: then no ratio, warned about or not, is a measurement.

    Three quick runs of the same code at load 5-7 on 2 cores (other jobs
    beside the suite) spread a case's ratio by 2.7x (median max/min), paired
    or not: torch's two OpenMP threads wait for a core at every parallel
    region, so some torch calls took 10-300x their idle time.
    """
    ncpu = ncpu or 1
    if load <= 1.5 * ncpu:
        return []
    return [f"  - the machine was overloaded (load average {load:.1f} on {ncpu} CPUs at the end of the run, "
            "other jobs beside this one): ratios measured so are noise, in either direction; run it again on a "
            "quiet machine before reading anything into them"]  # fmt: skip


def node_ids(cases: list[str]) -> list[str]:
    """pytest node ids measuring the paired rnnjit/torch ratio of ``cases``: what a re-run of the suspects runs."""
    from bench.cases import TEXT_CASES
    from bench.real_models import REAL_CASES

    text = {c.name for c in TEXT_CASES}
    real = {c.name for c in REAL_CASES}
    ids = []
    for c in cases:
        where = ("test_bench_text.py::test_text_classifier" if c in text else
                 "test_bench_real.py::test_real_model" if c in real else "test_bench_engines.py::test_engine")
        ids.append(f"bench/{where}[{c}-rnnjit]")  # its paired ratio times torch too
    return ids
