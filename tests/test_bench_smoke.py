"""The benchmark code runs (tiny shapes, no timing): bench fixtures, every engine's runner, the report tables."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")


def test_runners_agree_on_a_tiny_case():
    import torch

    from bench.cases import Case
    from bench.conftest import Bench, runner

    case = Case("tiny", "lstm", 5, 4, 3, 8, varlen=(1, 4))
    b = Bench(case, torch)
    y_rnnjit = runner(b, "rnnjit_all", 1)()  # Model.predict, every step
    out, _ = runner(b, "torch", 1)()
    packed = runner(b, "torch_packed", 1)()
    assert y_rnnjit.shape == (5, 4, 8) and out.shape == (5, 4, 8) and packed is not None
    # padded torch runs every step; compare where both define the output: full-length sequences
    full = b.lengths == 4
    np.testing.assert_allclose(y_rnnjit[full], out.numpy()[full], atol=1e-5)
    assert case.flops(b.steps) > 0


def test_report_section_renders():
    from bench.report import section

    data = {
        "benchmarks": [
            {"stats": {"min": 0.5}, "extra_info": {"case": "c", "engine": "rnnjit", "sequences": 100, "gflop": 1.0,
                                                   "shape": "B=100"}},  # fmt: skip
            {"stats": {"min": 1.0}, "extra_info": {"case": "c", "engine": "torch", "sequences": 100, "gflop": 1.0,
                                                   "shape": "B=100"}},  # fmt: skip
        ]
    }
    lines, ratios, _ = section("label", data, "cmd")
    assert ratios[("c", "torch")] == pytest.approx(2.0)
    assert any("| c | B=100 |" in line for line in lines)


def test_text_classifier_case_runs_through_the_public_api_with_torchs_numbers():
    import torch

    from bench.cases import Case
    from bench.text_classifier import PARITY_ATOL, TextBench, max_abs_diff, text_runner

    case = Case("tiny_text", "lstm", 6, 7, 4, 8, bidir=True, varlen=(1, 7), vocab=50)
    b = TextBench(case, torch)
    assert b.ids.dtype == np.int64 and (b.ids[np.arange(7)[None] >= b.lengths[:, None]] == 0).all()
    y = text_runner(b, "rnnjit", 1)()
    assert y.shape == (6, 1) and max_abs_diff(b, y) <= PARITY_ATOL
    assert max_abs_diff(b, text_runner(b, "torch_packed", 1)()) == 0.0
    # the padded forward's reverse direction reads the padding: not the model's numbers when lengths vary
    assert max_abs_diff(b, text_runner(b, "torch", 1)()) > PARITY_ATOL
    ort = text_runner(b, "onnxruntime", 1)
    if not isinstance(ort, str):
        assert max_abs_diff(b, ort()) <= PARITY_ATOL
    assert "V=50 E=4" in case.shape and case.flops(b.steps) > 0


@pytest.mark.parametrize("arch", ["speaker", "beat", "ocr", "tagger", "onset"])
def test_real_architectures_run_through_the_public_api_with_torchs_numbers(arch):
    import torch

    from bench.real_models import PARITY_ATOL, RealBench, RealCase, max_abs_diff, real_runner

    case = RealCase(f"tiny_{arch}", arch, 3, 6, varlen=(2, 6) if arch == "tagger" else None)
    b = RealBench(case, torch)
    for engine in ("rnnjit", "torch"):
        assert max_abs_diff(b, real_runner(b, engine, 1)()) <= PARITY_ATOL
    ort = real_runner(b, "onnxruntime", 1)
    if not isinstance(ort, str):
        assert max_abs_diff(b, ort()) <= PARITY_ATOL


def test_rounds_fill_the_time_budget_within_bounds():
    from bench.timing import BUDGET_S, MAX_ROUNDS, MIN_ROUNDS, rounds_for

    assert rounds_for(1e-5) == MAX_ROUNDS
    assert rounds_for(2.0) == 3
    assert rounds_for(BUDGET_S / 10) == max(MIN_ROUNDS, 10)
    assert MIN_ROUNDS <= rounds_for(BUDGET_S / 2) <= rounds_for(BUDGET_S / 50) <= MAX_ROUNDS


def test_a_warning_needs_a_drop_below_every_recorded_run_and_again_on_the_rerun(tmp_path):
    from bench import baseline

    ratios = {"steady": 1.9, "dropped": 1.0, "noisy": 0.9, "new": 0.1}
    baseline.write_ratios(tmp_path / "REPORT-quick-ratios.json",
                          {"openblas-unset": [{"steady": 2.0, "dropped": 2.0, "noisy": 2.0},
                                              {"steady": 2.1, "dropped": 2.1, "noisy": 0.8},
                                              {"steady": 1.9, "dropped": 1.9, "noisy": 2.2}]}, "cmd")  # fmt: skip
    recorded, where = baseline.load_reference(tmp_path, "openblas-unset", quick=True)
    assert recorded["noisy"] == [2.0, 0.8, 2.2] and "median of 3" in where
    # 'noisy' is 55% below its median but a recorded run was lower still; 'new' has no record
    assert baseline.suspects(ratios, recorded) == ["dropped"]
    assert baseline.summary("env", ratios, recorded, where, [], None)[0].endswith("outside the recorded runs.")
    confirmed = baseline.summary("env", ratios, recorded, where, ["dropped"], {"dropped": 1.1})
    assert any(line.startswith("- WARNING env: dropped") for line in confirmed)
    recovered = baseline.summary("env", ratios, recorded, where, ["dropped"], {"dropped": 1.8})
    assert not any("WARNING" in line for line in recovered) and "dropped 1.00x -> 1.80x" in recovered[-1]
    assert baseline.node_ids(["dropped", "text_classifier"]) == [
        "bench/test_bench_engines.py::test_engine[dropped-rnnjit]",
        "bench/test_bench_text.py::test_text_classifier[text_classifier-rnnjit]",
    ]


def test_an_overloaded_machine_is_said_once_a_quiet_one_not_at_all():
    from bench import baseline

    assert baseline.load_note(2.5, 2) == []
    assert "overloaded (load average 5.4 on 2 CPUs" in baseline.load_note(5.4, 2)[0]


def test_the_reference_falls_back_to_one_recorded_pytest_benchmark_run(tmp_path):
    import json

    from bench import baseline

    doc = {"benchmarks": [{"stats": {"min": t}, "extra_info": {"case": "c", "engine": e}}
                          for e, t in (("rnnjit", 0.5), ("torch", 1.5))]}  # fmt: skip
    (tmp_path / "REPORT-openblas-unset.json").write_text(json.dumps(doc))
    recorded, where = baseline.load_reference(tmp_path, "openblas-unset", quick=False)
    assert recorded == {"c": [pytest.approx(3.0)]} and "one run" in where
    # a rnnjit row that carries the paired ratio (calls alternated with torch's) is compared by it
    doc["benchmarks"][0]["extra_info"]["paired_torch_ratio"] = 2.5
    assert baseline.torch_ratios(doc) == {"c": 2.5}
    assert baseline.load_reference(tmp_path, "openblas-haswell", quick=False) is None


def test_precision_bench_builds_every_engine_and_renders(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    from bench import precision

    monkeypatch.setattr(precision, "BUDGET_S", 0.0)  # one round: this checks the code, not the speed
    shape = precision.Shape(3, 4, 5, 8)
    res = precision.measure(shape, 1, 1, tmp_path)
    assert set(res) == set(precision.CLASS)
    assert res["rnnjit float32"]["max_abs"] < 1e-5 and 0 < res["rnnjit bf16"]["max_abs"] < 0.05
    report = tmp_path / "REPORT.md"
    report.write_text("# Report\n\nkept\n")
    table = precision.section({shape.name: res}, 1, "load a", "load b", "cmd", cpu=True)
    precision.write_section(report, table, precision.NOTES)
    precision.write_section(report, table, precision.NOTES)  # a second run replaces, not appends
    text = report.read_text()
    assert text.count(precision.MARK_START) == 1 and "kept" in text and "| B=3 T=4 I=5 H=8 |" in text


def test_model_profile_times_every_engine_call():
    from bench.profile_models import profile, rnn_flop
    from rnnjit.model import Model
    from rnnjit.spec import RNNSpec, Step, rnn_step

    spec = RNNSpec("lstm", 5, 6, 2, True, True, 0, "r.")
    rng = np.random.default_rng(0)
    w = {f"r.{k}{sfx}": rng.standard_normal(shape).astype(np.float32)
         for l, i in ((0, 5), (1, 12)) for sfx in (f"_l{l}", f"_l{l}_reverse")
         for k, shape in (("weight_ih", (24, i)), ("weight_hh", (24, 6)), ("bias_ih", (24,)), ("bias_hh", (24,)))}
    w["fc.weight"], w["fc.bias"] = rng.standard_normal((3, 12)).astype(np.float32), np.zeros(3, np.float32)
    model = Model((rnn_step(spec), Step("linear", "fc", 12, 3, bias=True)), w, output="all")
    lengths = np.array([4, 2, 3])
    total, parts = profile(model, rng.standard_normal((3, 4, 5)).astype(np.float32), lengths, rounds=1)
    assert [name for name, _, _ in parts] == ["lstm I=5 H=6 x2 bi", "steps 12 -> 3"]
    # both layers, both directions, 4 gates, inputs and h per valid step; the linear layer per valid step
    assert parts[0][2] == 2 * 4 * 6 * (5 + 6) * 2 * 9 + 2 * 4 * 6 * (12 + 6) * 2 * 9 == rnn_flop(spec, 9)
    assert parts[1][2] == 2 * 12 * 3 * 9
    assert total >= sum(t for _, t, _ in parts) > 0


def test_cli_tagger_parts_times_every_part_and_renders():
    from bench.cli_tagger_parts import measure

    lines = measure(batches=2, batch_rows=8, threads=1, rounds=1)
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| what")]
    assert len(rows) == 8 and rows[-1].startswith("| Parquet writer, `StreamingFile`")
    assert all(len(r.split("|")) == 7 for r in rows)


def test_fixed_costs_lists_every_worker_and_the_checks():
    import torch

    from bench.fixed_costs import measure
    from bench.predict_overhead import Small

    res = measure(Small("gru_b4", 2, torch, False), calls=2, rounds=1)
    workers = [k for k in res if k.endswith("whole call")]
    assert workers and all(res[k] > 0 for k in res)
    assert {"predict", "check_lengths", "predict's Python (worker launches no-ops)"} <= set(res)


def test_mid_batches_prints_a_row_per_batch_and_tile_kind(capsys):
    from bench import mid_batches

    mid_batches.main(["--stacks", "32x2", "--B", "17,64", "--plans", "auto,4+0,16+1", "--T", "3", "--rounds", "1",
                      "--threads", "1"])  # fmt: skip
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| 32x2 |")]
    assert [r.split("|")[2].strip() for r in rows] == ["17", "64"]
    assert all(len(r.split("|")) == 2 + 3 + 2 * 3 + 2 for r in rows)  # stack, B, plan, 3 plans x 2, vs64, GFLOP/s
    assert rows[1].split("|")[-3].strip() == "1.00"  # B=64 against itself
    assert all(float(v) > 0 for v in rows[0].split("|")[-2].split()[1::2])  # each plan's GFLOP/s
    mid_batches.main(["--tiles", "--stacks", "32x2", "--T", "3", "--rounds", "1"])
    row = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| 32x2 |")]
    assert len(row) == 1 and row[0].split("|")[4].strip() == "1.00"  # the 48-lane tile is the unit
