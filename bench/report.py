"""Write bench/REPORT.md and bench/report.png: rnnjit vs torch vs onnxruntime on this machine.

    python -m bench.report [--quick] [--threads 2] [--runs 1] [--out bench/REPORT.md]

Runs the pytest-benchmark suite twice in fresh processes, once with
OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE removed from the environment (a user's
machine) and once with OPENBLAS_CORETYPE=Haswell (what CI sets: numpy's and
torch's OpenBLAS then run AVX2 kernels), plus cold/warm start measurements,
and writes the tables, the goals and the exact commands into the report.
The suite is bench/test_bench_*.py: the recurrent grid (bench/cases.py) and
the embedding + LSTM text classifier (bench/text_classifier.py). Each
environment's ratios are compared with the recorded ones (bench/baseline.py).

Record CI's quick baseline (the reduced grid, three runs per environment):

    python -m bench.report --quick --threads 2 --runs 3 --out bench/REPORT-quick.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import baseline
from bench.goals import GOALS, batch_curve, goal_cell

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

COLD_SCRIPT = """
import time
t0 = time.perf_counter()
import numpy as np
from rnnjit import kernels
from rnnjit.spec import RNNSpec
t1 = time.perf_counter()
rng = np.random.default_rng(0)
w = {"weight_ih_l0": rng.standard_normal((128, 8), dtype=np.float32),
     "weight_hh_l0": rng.standard_normal((128, 32), dtype=np.float32),
     "bias_ih_l0": np.zeros(128, np.float32), "bias_hh_l0": np.zeros(128, np.float32)}
p = kernels.prepare(RNNSpec("lstm", 8, 32), w)
x = rng.standard_normal((40, 10, 8), dtype=np.float32)
kernels.run(p, x, np.full(40, 10), None, None, "last", None)
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
"""


def environments(l2: str | None):
    """(label, env changes) for the two BLAS settings."""
    user = {k: None for k in BLAS_VARS}
    ci = {"OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "Haswell")}
    ci["OPENBLAS_L2_SIZE"] = os.environ.get("OPENBLAS_L2_SIZE", l2)
    return [("OPENBLAS vars unset (a user's machine)", user), ("OPENBLAS_CORETYPE=Haswell (as on CI)", ci)]


def make_env(changes, extra=None):
    env = dict(os.environ)
    for k, v in changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def shell_prefix(changes, extra=None) -> str:
    unset = [f"-u {k}" for k, v in changes.items() if v is None]
    sets = [f"{k}={v}" for k, v in {**changes, **(extra or {})}.items() if v is not None]
    return " ".join(["env", *unset, *sets, "PYTHONPATH=."])


def run_suite(changes, extra, json_path: Path, select: list[str] | None = None):
    """Run the suite (or the ``select``ed node ids) in a fresh process; (its JSON document, the command shown)."""
    targets = select or ["bench"]
    cmd = [sys.executable, "-m", "pytest", *targets, "--benchmark-enable", "-q", "-p", "no:cacheprovider",
           f"--benchmark-json={json_path}"]  # fmt: skip
    shown = shell_prefix(changes, extra) + f" python -m pytest {' '.join(targets)} --benchmark-enable -q " + (
        f"-p no:cacheprovider --benchmark-json={json_path.name}"
    )
    print("+", shown, flush=True)
    subprocess.run(cmd, cwd=ROOT, env=make_env(changes, extra), check=True)
    return json.loads(json_path.read_text()), shown


def start_times(changes, extra):
    """(import s, first-call compile s) cold with an empty cache, then (import s, first call s) warm."""
    with tempfile.TemporaryDirectory() as cache:
        env = make_env(changes, {**(extra or {}), "NUMBA_CACHE_DIR": cache})
        out = []
        for _ in range(2):
            r = subprocess.run([sys.executable, "-c", COLD_SCRIPT], cwd=ROOT, env=env, check=True,
                               capture_output=True, text=True)  # fmt: skip
            out.append(tuple(float(v) for v in r.stdout.split()))
        demo = None
        bundle, seqs = ROOT / "data" / "demo_bundle.npz", ROOT / "data" / "demo_sequences.parquet"
        if bundle.is_file() and seqs.is_file():
            outp = Path(cache) / "scores.parquet"
            cmd = [sys.executable, "-m", "rnnjit.cli", "score", "--model", str(bundle), "--input", str(seqs),
                   "--output", str(outp), "--quiet", "--overwrite"]  # fmt: skip
            subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)  # compiles if needed
            t = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
            demo = time.perf_counter() - t
    return out[0], out[1], demo


def rows_by_case(data):
    res = {}
    for bm in data["benchmarks"]:
        info = bm["extra_info"]
        if "case" not in info:  # not a grid case (the C export's, reported by bench.c_export)
            continue
        res.setdefault(info["case"], {})[info["engine"]] = (bm["stats"]["min"], info)
    return res


def machine_info():
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import llvmlite
    import numba
    import numpy

    vers = {"python": platform.python_version(), "numpy": numpy.__version__, "numba": numba.__version__,
            "llvmlite": llvmlite.__version__}  # fmt: skip
    for mod in ("torch", "onnxruntime"):
        try:
            vers[mod] = __import__(mod).__version__
        except ImportError:
            vers[mod] = "not installed"
    return cpu, os.cpu_count(), vers


def fmt_rate(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


JSON_NAMES = ("openblas-unset", "openblas-haswell")  # bench/REPORT-<name>.json, one per environment


def compare(label, changes, extra, data, folder: Path, env: str, quick: bool, tmp) -> list[str]:
    """The report's lines comparing this run with the recorded one, suspects re-run once (bench/baseline.py)."""
    ref = baseline.load_reference(folder, env, quick)
    if ref is None:
        return [f"- {label}: no recorded run in `{folder}` to compare with."]
    recorded, where = ref
    ratios = baseline.torch_ratios(data)
    load = os.getloadavg()[0]  # the last minute of the suite: were other jobs competing for the cores?
    first = baseline.suspects(ratios, recorded)
    again = None
    if first:
        print(f"re-running {len(first)} suspect case(s): {', '.join(first)}", flush=True)
        rerun, _ = run_suite(changes, extra, Path(tmp) / f"rerun-{env}.json", baseline.node_ids(first))
        again = baseline.torch_ratios(rerun)
        load = max(load, os.getloadavg()[0])
    return baseline.summary(label, ratios, recorded, where, first, again) + baseline.load_note(load, os.cpu_count())


def section(label, data, shown):
    res = rows_by_case(data)
    peak = None
    if "sgemm" in res:
        t, info = res["sgemm"]["numpy"]
        peak = info["gflop"] / t
    blas = res.get("sgemm", {}).get("numpy", (0, {}))[1].get("blas", [])
    lines = [f"### {label}", "", f"Command: `{shown}`", ""]
    if blas:
        libs = "; ".join(
            f"{b.get('internal_api')} {b.get('version')} kernel `{b.get('architecture')}` ({b.get('num_threads')} threads)"
            for b in blas
        )
        lines.append(f"BLAS libraries loaded (threadpoolctl): {libs}. "
                     + (f"Measured numpy sgemm peak: **{peak:.0f} GFLOP/s**." if peak else ""))  # fmt: skip
        lines.append("")
    lines += [
        "| case | shape | rnnjit seq/s | torch seq/s | torch packed seq/s | onnxruntime seq/s | rnnjit/torch "
        "| rnnjit/packed | rnnjit/ort | rnnjit GFLOP/s | % sgemm peak | torch GFLOP/s | rnnjit all-steps seq/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ratios = {}
    for name, engines in res.items():
        if name == "sgemm" or "rnnjit" not in engines or engines["rnnjit"][1].get("real"):
            continue
        rate = {e: info["sequences"] / t for e, (t, info) in engines.items()}
        t_r, info = engines["rnnjit"]
        gfs = info["gflop"] / t_r
        shape = info["shape"]

        def ratio(e):
            if e not in rate:
                return "n/a"
            ratios[name, e] = rate["rnnjit"] / rate[e]
            return f"{ratios[name, e]:.2f}x"

        cell = lambda e: fmt_rate(rate[e]) if e in rate else "n/a"  # noqa: E731
        tgf = f"{engines['torch'][1]['gflop'] / engines['torch'][0]:.0f}" if "torch" in engines else "n/a"
        lines.append(
            f"| {name} | {shape} | {cell('rnnjit')} | {cell('torch')} | {cell('torch_packed')} | {cell('onnxruntime')} "
            f"| {ratio('torch')} | {ratio('torch_packed')} | {ratio('onnxruntime')} | {gfs:.0f} "
            f"| {100 * gfs / peak:.0f}% | {tgf} | {cell('rnnjit_all')} |"
            if peak
            else f"| {name} | {shape} | {cell('rnnjit')} | {cell('torch')} | {cell('torch_packed')} | "
            f"{cell('onnxruntime')} | {ratio('torch')} | {ratio('torch_packed')} | {ratio('onnxruntime')} | {gfs:.0f} | "
            f"n/a | {tgf} | {cell('rnnjit_all')} |"
        )
    lines.append("")
    lines += parity_lines({n: e for n, e in res.items() if not e.get("rnnjit", (0, {}))[1].get("real")})
    lines += real_section(res, ratios)
    return lines, ratios, res


REAL_ENGINES = ("torch", "onnxruntime", "openvino")


def real_section(res, ratios) -> list[str]:
    """The whole-model table (bench/real_models.py): ms per call of each engine, rnnjit's ratios, parity."""
    names = [n for n, e in res.items() if e.get("rnnjit", (0, {}))[1].get("real")]
    if not names:
        return []
    lines = ["Whole models (bench/real_models.py; random weights of the real shapes), `Model.predict` against each "
             "model's own torch forward (packed where lengths vary), onnxruntime and OpenVINO with "
             "`INFERENCE_PRECISION_HINT=f32` (both from the same torch.onnx export); milliseconds per call:", "",
             "| model | shape | rnnjit | torch | onnxruntime | OpenVINO f32 | rnnjit/torch | rnnjit/ort | rnnjit/OV "
             "| rnnjit max abs diff |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for n in names:
        e = res[n]
        t_r, info = e["rnnjit"]
        ms = {k: f"{e[k][0] * 1e3:,.2f}" if k in e else "n/a" for k in ("rnnjit", *REAL_ENGINES)}
        rs = []
        for k in REAL_ENGINES:
            if k in e:
                ratios[n, k] = e[k][0] / t_r
                rs.append(f"{ratios[n, k]:.2f}x")
            else:
                rs.append("n/a")
        lines.append(f"| {n} | {info['shape']} | {ms['rnnjit']} | {ms['torch']} | {ms['onnxruntime']} | "
                     f"{ms['openvino']} | {' | '.join(rs)} | {info['max_abs_diff']:.1e} |")  # fmt: skip
    return lines + ["", "OpenVINO's default inference precision on this CPU (AVX512_BF16) is bf16, which does not "
                    "compute the model's float32 numbers; every OpenVINO figure here is f32. An engine missing from a "
                    "row could not run the export or did not match torch (bench/real_models.py says which).", ""]


def parity_lines(res) -> list[str]:
    """What the whole-model cases checked: each engine's max abs difference from torch's packed forward."""
    lines = []
    for name, engines in res.items():
        diffs = {e: info["max_abs_diff"] for e, (_, info) in engines.items() if "max_abs_diff" in info}
        if diffs:
            lines.append(f"{name}: max abs difference from the model's own torch forward (packed), per engine: "
                         + ", ".join(f"{e} {d:.1e}" for e, d in diffs.items())
                         + " (rnnjit's budget 1e-5; the padded torch forward runs its reverse direction over the "
                         "padding, so it does not compute this model).")  # fmt: skip
    return lines + ([""] if lines else [])


def chart(results, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    engines = ["rnnjit", "torch", "torch_packed", "onnxruntime"]
    fig, axes = plt.subplots(len(results), 1, figsize=(12, 4.5 * len(results)), squeeze=False)
    for ax, (label, res) in zip(axes[:, 0], results):
        names = [n for n in res if n != "sgemm"]
        width = 0.8 / len(engines)
        for i, e in enumerate(engines):
            vals = []
            for n in names:
                t = res[n].get(e)
                vals.append(res[n][e][1]["sequences"] / t[0] if t else 0)
            ax.bar([k + i * width for k in range(len(names))], vals, width, label=e)
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(names))])
        ax.set_xticklabels(names, rotation=25, ha="right")
        ax.set_yscale("log")
        ax.set_ylabel("sequences / s (log)")
        ax.set_title(label)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def profile_section(extra) -> list[str]:
    """The per-part kernel profile (`bench.profile_parts`), run in a fresh process with the OPENBLAS vars unset."""
    env = make_env({k: None for k in BLAS_VARS}, extra)
    cmd = [sys.executable, "-m", "bench.profile_parts"]
    print("+", " ".join(cmd[1:]), flush=True)
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        return ["## Per-part profile", "", f"(bench.profile_parts failed: {r.stderr.strip().splitlines()[-1:]})", ""]
    return [r.stdout]


def cli_section(extra, quick: bool) -> list[str]:
    """The CLI end to end on the polyphone tagger's shape vs Model.predict (`bench.cli_tagger`), in a fresh process."""
    env = make_env({k: None for k in BLAS_VARS}, extra)
    cmd = [sys.executable, "-m", "bench.cli_tagger", "--threads", extra["RNNJIT_BENCH_THREADS"]]
    cmd += ["--rows", "2048", "--batch-rows", "1024", "--repeat", "2"] if quick else []
    print("+", " ".join(cmd[1:]), flush=True)
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        return ["## The CLI end to end on the polyphone tagger's shape", "",
                f"(bench.cli_tagger failed: {r.stderr.strip().splitlines()[-1:]})", ""]  # fmt: skip
    return [r.stdout]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="reduced grid (RNNJIT_BENCH_QUICK=1)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--l2", default=None, help="OPENBLAS_L2_SIZE for the CI-like run (default: leave unset)")
    ap.add_argument("--out", default=str(BENCH / "REPORT.md"))
    ap.add_argument("--baseline", default=str(BENCH), help="folder of the recorded REPORT-*.json to compare with")
    ap.add_argument("--runs", type=int, default=1,
                    help="run each suite N times: the report shows the first, <out stem>-ratios.json keeps all N "
                         "(record a baseline with --quick --runs 3 --out bench/REPORT-quick.md)")
    ap.add_argument("--no-profile", dest="profile", action="store_false", help="skip the per-part kernel profile")
    args = ap.parse_args(argv)
    extra = {"RNNJIT_BENCH_THREADS": str(args.threads)}
    if args.quick:
        extra["RNNJIT_BENCH_QUICK"] = "1"
    out = Path(args.out)
    cpu, ncpu, vers = machine_info()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    doc = [
        "# rnnjit benchmark report",
        "",
        f"Generated {started} by `python -m bench.report{' --quick' if args.quick else ''} --threads {args.threads}"
        f"{f' --runs {args.runs}' if args.runs > 1 else ''}` "
        f"(run from the repository root). Machine: {cpu}, {ncpu} CPUs visible. "
        + ", ".join(f"{k} {v}" for k, v in vers.items())
        + ".",
        "",
        f"Every engine runs with {args.threads} threads (rnnjit `threads=`, `torch.set_num_threads`, onnxruntime "
        "`intra_op_num_threads`), on the same arrays, in the same process, after a warm-up call, the minimum over a time budget of calls (bench/timing.py: "
        "about 1 s of calls per engine and case, 0.15 s with `--quick`; at least 5 rounds, 3 above a second; the "
        "rnnjit/torch ratio compared with the recorded runs alternates the two engines' calls). "
        "rnnjit returns the output at each sequence's last step (`last`, what scoring uses); torch and onnxruntime "
        "compute every step's output; the last column is rnnjit returning every step too (`all`). GFLOP/s counts "
        "the recurrent stack's multiply-adds on valid steps only. The machine is shared (other jobs were running), "
        "so absolute numbers are noisy; ratios come from the same run. torch runs under `torch.inference_mode()`, "
        "as its users run inference. The `text_classifier` row is a whole model (nn.Embedding, bidirectional "
        "LSTM, mean over valid steps, linear, sigmoid; bench/text_classifier.py) on padded token batches, rnnjit "
        "through its public API (`rnnjit.convert` of the saved state_dict, `rnnjit.load`, `Model.predict`); there "
        "`torch packed` is the model's own forward, `torch` the same module on the padded batch.",
        "",
        "Load average (1, 5, 15 min) when the run started: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())
        + f" on {ncpu} CPUs" + (" -- **a busy machine: other jobs shared the cores, expect noisy ratios**"
                                if os.getloadavg()[0] > 1.0 else "") + ".",
        "",
    ]
    results, all_ratios, starts, compared, runs_by_env = [], [], [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, (label, changes) in enumerate(environments(args.l2)):
            data, shown = run_suite(changes, extra, Path(tmp) / f"bench{k}.json")
            runs_by_env[JSON_NAMES[k]] = [baseline.torch_ratios(data)] + [
                baseline.torch_ratios(run_suite(changes, extra, Path(tmp) / f"bench{k}-{i}.json")[0])
                for i in range(1, args.runs)
            ]  # fmt: skip
            lines, ratios, res = section(label, data, shown)
            doc += lines
            curve = batch_curve(ratios, res)
            if curve:
                shape = res[next(n for n in res if n.startswith("lstm_b") and n[6:].isdigit())]["rnnjit"][1]["shape"]
                doc += [f"Batch curve (LSTM, {shape.split(' ', 1)[1]}), {label}:", "", *curve]
            results.append((label, res))
            all_ratios.append(ratios)
            compared += compare(label, changes, extra, data, Path(args.baseline), JSON_NAMES[k], args.quick, tmp)
            # pytest-benchmark's own JSON beside the report: `pytest-benchmark compare` reads it
            (out.parent / f"{out.stem}-{JSON_NAMES[k]}.json").write_text(json.dumps(data, indent=1))
            starts.append((label, shell_prefix(changes, extra), start_times(changes, extra)))
    baseline.write_ratios(out.parent / f"{out.stem}-ratios.json", runs_by_env,
                          f"python -m bench.report{' --quick' if args.quick else ''} --threads {args.threads} "
                          f"--runs {args.runs}")  # fmt: skip
    for line in compared:
        print(line)
    doc += ["## Start-up: compile and warm start", ""]
    for label, prefix, ((imp_c, first_c), (imp_w, first_w), demo) in starts:
        doc.append(
            f"- {label}: cold (empty `NUMBA_CACHE_DIR`): import {imp_c:.2f} s, first call incl. compile of the "
            f"default (float32) kernel **{first_c:.1f} s**; second process (warm cache): import {imp_w:.2f} s, "
            f"first call {first_w:.2f} s"
            + (f"; `rnnjit score` on the demo bundle and Parquet file, whole process: **{demo:.2f} s**." if demo else ".")
        )
    doc += ["", "Measured with `" + "python -c <COLD_SCRIPT in bench/report.py>` and "
            "`python -m rnnjit.cli score --model data/demo_bundle.npz --input data/demo_sequences.parquet "
            "--output scores.parquet --quiet --overwrite`, each in a fresh process.", ""]  # fmt: skip
    doc += ["## Goals (ratios rnnjit/other, same run)", ""]
    if args.quick:
        doc += ["(Reduced grid, `--quick`: small batches and 20 steps, so these are not the goal shapes.)", ""]
    doc += [ "| goal | " + " | ".join(r[0] for r in results) + " |",
            "|---|" + "---|" * len(results)]  # fmt: skip
    for case, vs, need, label in GOALS:
        cells = [goal_cell(ratios, res, case, vs, need) for ratios, (_, res) in zip(all_ratios, results)]
        doc.append(f"| {label} | " + " | ".join(cells) + " |")
    curve_worst = []
    for ratios in all_ratios:
        pts = [r for (c, e), r in ratios.items() if e == "torch" and c.startswith("lstm_b") and c[6:].isdigit()]
        curve_worst.append(f"{min(pts):.2f}x {'met' if min(pts) >= 1.0 else 'NOT met'}" if pts else "n/a")
    doc.append("| batch curve B = 1..256: no B slower than torch (worst) | " + " | ".join(curve_worst) + " |")
    for ratios in all_ratios[:1]:
        ort = [(c, r) for (c, e), r in ratios.items() if e == "onnxruntime"]
        if ort:
            worst = min(ort, key=lambda t: t[1])
            doc.append(f"| >= 1.2x onnxruntime on every shape it runs (worst: {worst[0]}) | "
                       + " | ".join(f"{min(r for (c, e), r in rr.items() if e == 'onnxruntime'):.2f}x" for rr in all_ratios)
                       + " |")  # fmt: skip
    doc += ["| with OPENBLAS vars set, no shape below 1.0x torch (worst) | "
            + " | ".join(f"{min(r for (c, e), r in rr.items() if e == 'torch'):.2f}x" for rr in all_ratios) + " |", ""]
    doc += ["## Compared with the recorded run", "",
            "Ratios rnnjit/torch of this run against the recorded ones (`bench/REPORT-quick-ratios.json` with "
            "`--quick`: every ratio of the several runs that recorded the reduced grid; else `bench/REPORT-ratios.json`"
            " or the pytest-benchmark JSON of the run of bench/REPORT.md). A case whose ratio is more than 25% below "
            "the recorded median and below every recorded run is measured again in a fresh process; only a case "
            "still below on that re-run is a WARNING (never a failure: the machines are noisy). See bench/baseline.py "
            "for the measurements behind this rule.", "", *compared, ""]  # fmt: skip
    doc += cli_section(extra, args.quick)
    if args.profile:
        doc += profile_section(extra)
    png = out.with_suffix(".png")
    try:
        chart(results, png)
        doc += [f"![sequences per second]({png.name})", ""]
    except ImportError:
        doc += ["(matplotlib not installed: `pip install matplotlib` for the chart)", ""]
    notes = BENCH / "report_notes.md"
    if notes.is_file():
        doc += [notes.read_text()]
    load_line = next(i for i, line in enumerate(doc) if line.startswith("Load average"))
    doc[load_line] += " When it ended: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()) + "."
    out.write_text("\n".join(doc) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
