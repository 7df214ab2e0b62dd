"""Activations that vectorize: a rational tanh for float32, exact formulas for float64.

numba's ``np.tanh``/``np.exp`` are scalar libm calls (about 20 ns per element
on the reference machine), which makes a straight LSTM port 3-5x slower than
PyTorch. For float32 we use a [13/6] rational approximation of tanh (the
constants of Eigen's ``ptanh_float``) on the clamped range |x| <= 7.905, where
float32 tanh is 1 to within an ulp: multiplies, adds, min/max and one exact
division (no libm call, so the loops compile to AVX-512; the divider works in
parallel with the FMA pipes). Max abs error vs float64 tanh is 2.6e-7
(sigmoid: 1.6e-7), checked in ``tests/test_kernels.py``. (A division-free
Newton reciprocal was tried: 10 FMA-pipe operations per tanh made the LSTM
update as expensive as its matrix product at H=32.) float64 uses
``tanh(x) = 1 - 2/(exp(2x) + 1)`` with a vectorizable exp (`_exp_f64`): max
abs error ~3e-16, where numba's ``np.tanh`` was a scalar libm call.

``sigmoid(x) = 0.5 + 0.5*tanh(x/2)`` for both dtypes (no overflow, one tanh).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from rnnjit.kernels.config import HELPER_JIT, JIT

_CLAMP = 7.90531110763549805
_A1, _A3, _A5, _A7 = 4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08
_A9, _A11, _A13 = -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16
_B0, _B2, _B4, _B6 = 4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06


def tanh(x):
    """tanh for use inside kernels (rational approximation for float32)."""
    return np.tanh(x)


def sigmoid(x):
    """Logistic function for use inside kernels."""
    return 0.5 + 0.5 * np.tanh(0.5 * x)


def sigmoid_tanh(a, b):
    """sigmoid(a) * tanh(b) with one division instead of two (the LSTM's i*g and o*tanh(c))."""
    return (0.5 + 0.5 * np.tanh(0.5 * a)) * np.tanh(b)


@njit(**HELPER_JIT)
def _tanh_frac_f32(x):
    """(n, d) with tanh(x) = n / d: the rational before its division."""
    x = min(max(x, np.float32(-_CLAMP)), np.float32(_CLAMP))
    x2 = x * x
    p = np.float32(_A13)
    p = p * x2 + np.float32(_A11)
    p = p * x2 + np.float32(_A9)
    p = p * x2 + np.float32(_A7)
    p = p * x2 + np.float32(_A5)
    p = p * x2 + np.float32(_A3)
    p = p * x2 + np.float32(_A1)
    q = np.float32(_B6)
    q = q * x2 + np.float32(_B4)
    q = q * x2 + np.float32(_B2)
    q = q * x2 + np.float32(_B0)
    return x * p, q


def _sigmoid_tanh_f32(a, b):
    # sigmoid(a) = 0.5 + 0.5 tanh(a/2) = (d_a + n_a) / (2 d_a), so the product
    # is one fraction; numerator and denominator stay within float32 range.
    na, da = _tanh_frac_f32(np.float32(0.5) * a)
    nb, db = _tanh_frac_f32(b)
    return (da + na) * nb / (np.float32(2.0) * da * db)


def _tanh_f32(x):
    n, d = _tanh_frac_f32(x)
    return n / d


def _sigmoid_f32(x):
    return np.float32(0.5) + np.float32(0.5) * tanh(np.float32(0.5) * x)


@intrinsic
def _times_pow2(typingctx, p, n):
    """``p * 2**n`` for a float64 ``p`` and an integral-valued float64 ``n`` (adds n to p's exponent).

    Plain integer operations on the bits (no libm ``ldexp`` call), so loops
    calling it still vectorize. The caller keeps the result a normal number.
    """
    if not (p == types.float64 and n == types.float64):
        return None
    sig = types.float64(p, n)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        bits = builder.bitcast(args[0], i64)
        e = builder.shl(builder.fptosi(args[1], i64), ir.Constant(i64, 52))
        return builder.bitcast(builder.add(bits, e), ir.DoubleType())

    return sig, codegen


_LOG2E = 1.4426950408889634
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # fdlibm: n * _LN2_HI is exact
_EXP_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(14))  # degree 13: 4e-18 on |r| <= ln2/2


@njit(**HELPER_JIT)
def _exp_f64(y):
    """exp(y) for |y| <= 40: y = n ln2 + r, |r| <= ln2/2, exp(r) by Taylor (Horner), times 2**n."""
    n = np.floor(y * _LOG2E + 0.5)
    r = (y - n * _LN2_HI) - n * _LN2_LO
    p = _EXP_TAYLOR[13]
    p = p * r + _EXP_TAYLOR[12]
    p = p * r + _EXP_TAYLOR[11]
    p = p * r + _EXP_TAYLOR[10]
    p = p * r + _EXP_TAYLOR[9]
    p = p * r + _EXP_TAYLOR[8]
    p = p * r + _EXP_TAYLOR[7]
    p = p * r + _EXP_TAYLOR[6]
    p = p * r + _EXP_TAYLOR[5]
    p = p * r + _EXP_TAYLOR[4]
    p = p * r + _EXP_TAYLOR[3]
    p = p * r + _EXP_TAYLOR[2]
    p = p * r + 1.0
    p = p * r + 1.0
    return _times_pow2(p, n)


def _tanh_f64(x):
    # 1 - 2/(exp(2x) + 1): absolute error ~2e-16 everywhere (the relative error
    # near 0 is larger, but parity is in absolute terms); |x| <= 20 is where
    # float64 tanh is not yet 1 to within 1e-17.
    x = min(max(x, -20.0), 20.0)
    return 1.0 - 2.0 / (_exp_f64(2.0 * x) + 1.0)


def _sigmoid_f64(x):
    return 0.5 + 0.5 * tanh(0.5 * x)


def _sigmoid_tanh_f64(a, b):
    # sigmoid(a) = E_a / (E_a + 1), tanh(b) = (E_b - 1) / (E_b + 1), E_a = exp(a), E_b = exp(2b);
    # clamped like tanh, every factor stays below exp(40).
    ea = _exp_f64(min(max(a, -40.0), 40.0))
    eb = _exp_f64(2.0 * min(max(b, -20.0), 20.0))
    return ea * (eb - 1.0) / ((ea + 1.0) * (eb + 1.0))


@overload(tanh, jit_options=HELPER_JIT)
def _tanh_overload(x):
    if x == types.float32:
        return _tanh_f32
    if isinstance(x, types.Float):
        return _tanh_f64
    return None


@overload(sigmoid, jit_options=HELPER_JIT)
def _sigmoid_overload(x):
    if x == types.float32:
        return _sigmoid_f32
    if isinstance(x, types.Float):
        return _sigmoid_f64
    return None


# Inlined at numba-IR level: left to LLVM's inliner, the float64 body (two
# inlined exps) stayed a call inside the LSTM update loops, which then ran
# scalar (measured, 1536 values: 8.0 ns per value, 1.15 inlined; the whole
# float64 LSTM update 17.2 -> 2.9 ns per value; float32 unchanged).
@overload(sigmoid_tanh, jit_options=HELPER_JIT, inline="always")
def _sigmoid_tanh_overload(a, b):
    if a == types.float32 and b == types.float32:
        return _sigmoid_tanh_f32
    if isinstance(a, types.Float) and isinstance(b, types.Float):
        return _sigmoid_tanh_f64
    return None


@njit(**JIT)
def _evaluate(xs, t, s):
    for i in range(xs.shape[0]):
        t[i] = tanh(xs[i])
        s[i] = sigmoid(xs[i])


def evaluate(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tanh(xs), sigmoid(xs)) as the kernels compute them, for a 1-D float array (tests)."""
    xs = np.ascontiguousarray(xs)
    t, s = np.empty_like(xs), np.empty_like(xs)
    _evaluate(xs, t, s)
    return t, s
