"""The kernels' precision table (`rnnjit.kernels.precision`) and the argument builder (`kernels.kernel_args`)."""

from __future__ import annotations

import numpy as np
import pytest

from rnnjit import kernels
from rnnjit.kernels.layer import run_worker
from rnnjit.kernels.precision import PRECISIONS, lanes, precision_of
from rnnjit.kernels.team import run_team


@pytest.mark.parametrize("name, expected_lanes", [("float32", 16), ("float64", 8)])
def test_full_precisions_fill_one_512_bit_register(name, expected_lanes):
    p = PRECISIONS[name]
    assert p.lanes == expected_lanes == lanes(p.dtype)
    assert p.dtype.name == name and p.operand == p.dtype and p.k_pack == 1


@pytest.mark.parametrize("dtype, expected", [(np.float64, "float64"), (np.float32, "float32"), (np.float16, "float32")])
def test_weights_dtype_picks_the_full_precision(dtype, expected):
    assert precision_of(dtype).name == expected


def test_kernel_args_follow_each_kernels_parameter_names():
    py = getattr(run_worker, "py_func", run_worker)  # a plain function under NUMBA_DISABLE_JIT=1
    names = py.__code__.co_varnames[: py.__code__.co_argcount]
    values = {n: i for i, n in enumerate(names[::-1])} | {"unused": -1}
    assert kernels.kernel_args(run_worker, values) == tuple(range(len(names)))[::-1]
    kernels._PICK.pop(run_team, None)
    with pytest.raises(TypeError, match="run_team needs tok, seq, slen, nb, maxlen"):
        kernels.kernel_args(run_team, {"cell": 0, "x": 1})
