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
    y_rnnjit = runner(b, "rnnjit_all", 1)()[0]
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
