"""Shared fixtures: the engines to test, and a session cache of converted models."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

try:
    import torch
except ImportError:  # the install-floor and numba-free CI venvs have no torch: its tests are not run there
    from rnnjit.engines import numba_available

    ENGINES = ["numpy", "numba"] if numba_available() else ["numpy"]
else:
    from torch_models import ENGINES

    # Two shared cores: torch's intra-op threads only add contention at these sizes.
    torch.set_num_threads(1)

settings.register_profile(
    "rnnjit",
    deadline=None,
    max_examples=int(os.environ.get("RNNJIT_HYPOTHESIS_EXAMPLES", "25")),
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("rnnjit")


@pytest.fixture(autouse=True)
def _small_calls_on_every_thread(monkeypatch):
    """Tests use small shapes: run them on every thread they ask for, as large calls run, so thread counts
    and tile splits are exercised (by default a call with less work than a hand-off stays on one thread)."""
    try:
        from rnnjit import kernels
        from rnnjit.kernels import rows
    except ImportError:  # the numba-free venv: no kernels
        return
    monkeypatch.setattr(kernels, "ONE_THREAD_WORK", 0)
    monkeypatch.setattr(rows, "SPLIT_ROWS_WORK", 0)
    # a team or wavefront that stalled in an earlier test (a busy machine) pauses them for 30 s: every test starts
    # with none paused, so which plan a test gets does not depend on the tests before it
    from rnnjit.kernels import team_policy

    team_policy.clear_pauses()




@pytest.fixture(params=ENGINES, ids=lambda e: f"engine={e!r}")
def engine(request) -> str:
    return request.param


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261123)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    """``get(key, build, dtype)``: build, save, convert and load a torch module once per session.

    ``build()`` returns ``(torch_module, convert_kwargs)``; ``get`` returns
    ``(torch_module, rnnjit_model)`` with the bundle loaded in ``dtype``.
    """
    from torch_models import convert_and_load

    root = tmp_path_factory.mktemp("models")
    modules: dict = {}
    models: dict = {}

    def get(key, build, dtype="float32"):
        if key not in modules:
            modules[key] = build()
        module, kwargs = modules[key]
        if (key, dtype) not in models:
            d = root / f"m{len(models)}"
            d.mkdir()
            models[key, dtype], _ = convert_and_load(module, d, dtype=dtype, **kwargs)
        return module, models[key, dtype]

    return get


def pytest_configure(config):
    # hypothesis' failure reporting imports mypy_extensions, which warns on import;
    # with warnings as errors that would hide the falsifying example.
    config.addinivalue_line("filterwarnings", "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")
