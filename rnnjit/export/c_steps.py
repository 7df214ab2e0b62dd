"""One C emitter per step kind: the chain's steps as C99 text.

Each entry of the step-kind table (`rnnjit.kinds.KINDS`) names its emitter in
its ``c_emit`` slot: a function ``emit(ctx, step, width) -> CStep`` that
declares the step's weights in the generated file (``ctx.array``) and says
how the step runs in C:

- per-vector steps (linear, layernorm, batchnorm, l2norm, activation, dropout) give
  ``vec(src, dst)``: C statements computing ``dst = step(src)`` for one vector
  (``src`` and ``dst`` never alias);
- an embedding gives ``lookup(id, dst)``;
- a recurrent module gives its layer descriptors (`CStep.layers`) that the
  chain driver (`rnnjit.export.c`) steps with the cell functions below;
- a pooling gives ``acc_init(acc)``, ``acc_add(acc, v)`` and ``acc_out(acc, n, dst)``.

The math is `rnnjit.steps` and `rnnjit.reference` written in C: the same
formulas in the same order where it matters (sigmoid as ``(1+tanh(v/2))/2``,
LayerNorm with the biased variance, BatchNorm with its running statistics).
This module imports numpy only, so the table can name its functions.
Weight matrices are stored transposed (``in`` rows of ``out`` values), so a
matrix-vector product is a sum of scaled rows: each output is its own
accumulator, which a compiler vectorizes without reassociating floating point
(``-ffp-contract=off``, no ``-ffast-math`` needed).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Step = Any  # an `rnnjit.spec.Step` (not imported: rnnjit.spec stands on the table that names these emitters)


def hex_literal(v: float, f32: bool) -> str:
    """An exact C99 hex float literal (``0x1.8p+1f``): reads back bit for bit."""
    v = float(v)
    if v == 0.0:
        s = "-0x0p+0" if math.copysign(1.0, v) < 0 else "0x0p+0"
    else:
        mant, exp = v.hex().split("p")
        s = f"{mant.rstrip('0').rstrip('.')}p{exp}"
    return s + ("f" if f32 else "")


def _f32_exact(values: np.ndarray) -> np.ndarray:
    """float32 values as float64 (exact), so ``float.hex`` of each is the float32's."""
    return np.asarray(values, dtype=np.float32).astype(np.float64)


class CContext:
    """What the emitters share: the prefix, the dtype, the weight arrays written so far, the helpers used."""

    def __init__(self, prefix: str, dtype: str, weights: Mapping[str, np.ndarray]):
        self.p = prefix
        self.f32 = dtype == "float32"
        self.real = "float" if self.f32 else "double"
        self.weights = weights
        self.decls: list[str] = []
        self.helpers: set[str] = set()
        self.n_values = 0
        self._n = 0

    def math(self, name: str) -> str:
        """libm's function for this dtype (``tanhf`` for float)."""
        return name + ("f" if self.f32 else "")

    def lit(self, v: float) -> str:
        return hex_literal(float(np.float32(v)) if self.f32 else float(v), self.f32)

    def array(self, what: str, values: np.ndarray) -> str:
        """Declare ``static const REAL NAME[] = {...}`` holding ``values`` (flattened, C order); return NAME."""
        name = f"{self.p}_w{self._n}"
        self._n += 1
        flat = np.ascontiguousarray(values).reshape(-1)
        flat = _f32_exact(flat) if self.f32 else flat.astype(np.float64)
        sfx = "f" if self.f32 else ""
        lits = [hex_literal(v, False) + sfx for v in flat.tolist()]
        rows = [", ".join(lits[i : i + 6]) for i in range(0, len(lits), 6)]
        body = ",\n    ".join(rows)
        self.decls.append(f"/* {what} */\nstatic const {self.p}_real {name}[{len(lits)}] = {{\n    {body}\n}};")
        self.n_values += len(lits)
        return name

    def need(self, helper: str) -> str:
        """Mark a runtime helper as used (only used helpers are emitted: -Wunused-function) and return its C name."""
        self.helpers.add(helper)
        for dep in _HELPER_DEPS.get(helper, ()):
            self.need(dep)
        return f"{self.p}_{helper}"


@dataclass
class CLayer:
    """One layer-direction of a recurrent module as the generated file holds it."""

    struct: str  # C name of its static const descriptor
    cell: str  # lstm, gru, rnn_tanh, rnn_relu
    layer: int
    direction: int
    in_size: int
    hidden: int
    h_out: int


@dataclass
class CStep:
    """What an emitter gives the chain driver for one step (see the module docstring)."""

    step: Step
    width_in: int
    width_out: int
    vec: Callable[[str, str], str] | None = None
    lookup: Callable[[str, str], str] | None = None
    layers: list[CLayer] = field(default_factory=list)
    acc_init: Callable[[str], str] | None = None
    acc_add: Callable[[str, str], str] | None = None
    acc_out: Callable[[str, str, str], str] | None = None
    work: int = 0  # scratch values a layer step needs (gate pre-activations)


def _transposed(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(w).T)


# ---------------------------------------------------------------- emitters
def emit_linear(ctx: CContext, step: Step, width: int) -> CStep:
    w = ctx.weights[f"{step.prefix}weight"]
    w = w.reshape(w.shape[0], w.shape[1])  # a Conv1d's (out, in, 1) is a linear layer
    out, inp = int(w.shape[0]), int(w.shape[1])
    wt = ctx.array(f"{step.prefix}weight ({out}, {inp}), stored transposed", _transposed(w))
    b = ctx.array(f"{step.prefix}bias ({out},)", ctx.weights[f"{step.prefix}bias"]) if step.bias else "NULL"
    affine = ctx.need("affine")
    return CStep(step, width, out, vec=lambda s, d: f"{affine}({d}, {wt}, {b}, {s}, {inp}, {out});")


def emit_layernorm(ctx: CContext, step: Step, width: int) -> CStep:
    w = ctx.array(f"{step.prefix}weight ({width},)", ctx.weights[f"{step.prefix}weight"]) if step.affine else "NULL"
    b = ctx.array(f"{step.prefix}bias ({width},)", ctx.weights[f"{step.prefix}bias"]) if step.bias else "NULL"
    fn, eps = ctx.need("layernorm"), ctx.lit(step.eps)
    return CStep(step, width, width, vec=lambda s, d: f"{fn}({d}, {s}, {w}, {b}, {eps}, {width});")


def emit_batchnorm(ctx: CContext, step: Step, width: int) -> CStep:
    p = step.prefix
    mean = ctx.array(f"{p}running_mean ({width},)", ctx.weights[f"{p}running_mean"])
    var = ctx.array(f"{p}running_var ({width},)", ctx.weights[f"{p}running_var"])
    w = ctx.array(f"{p}weight ({width},)", ctx.weights[f"{p}weight"]) if step.affine else "NULL"
    b = ctx.array(f"{p}bias ({width},)", ctx.weights[f"{p}bias"]) if step.affine else "NULL"
    fn, eps = ctx.need("batchnorm"), ctx.lit(step.eps)
    return CStep(step, width, width, vec=lambda s, d: f"{fn}({d}, {s}, {mean}, {var}, {w}, {b}, {eps}, {width});")


def emit_l2norm(ctx: CContext, step: Step, width: int) -> CStep:
    fn, eps = ctx.need("l2norm"), ctx.lit(step.eps)
    return CStep(step, width, width, vec=lambda s, d: f"{fn}({d}, {s}, {eps}, {width});")


def emit_activation(ctx: CContext, step: Step, width: int) -> CStep:
    if step.name in ("softmax", "log_softmax"):
        fn, log = ctx.need("softmax"), int(step.name == "log_softmax")
        return CStep(step, width, width, vec=lambda s, d: f"{fn}({d}, {s}, {width}, {log});")
    fn = ctx.need(f"act_{step.name}")
    return CStep(step, width, width, vec=lambda s, d: f"{fn}({d}, {s}, {width});")


def emit_dropout(ctx: CContext, step: Step, width: int) -> CStep:
    """A no-op in eval mode: the driver skips a step without ``vec``."""
    return CStep(step, width, width)


def emit_embedding(ctx: CContext, step: Step, width: int) -> CStep:
    # max_norm rows arrive renormalized (the kind's scoring_weights, `rnnjit.steps.renorm_rows`), as Model scores them
    table = ctx.array(
        f"{step.prefix}weight ({step.in_features}, {step.out_features})"
        + (f", rows renormalized to max_norm={step.max_norm:g}" if step.max_norm is not None else ""),
        ctx.weights[f"{step.prefix}weight"],
    )
    e = step.out_features
    return CStep(step, 1, e, lookup=lambda i, d: f"memcpy({d}, {table} + (size_t)({i}) * {e}, {e} * sizeof({ctx.p}_real));")


def emit_rnn(ctx: CContext, step: Step, width: int) -> CStep:
    spec = step.rnn
    layers = []
    for layer, d, sfx in spec.suffixes():
        w = spec.direction_weights(ctx.weights, sfx)
        where = f"{spec.prefix}*{sfx}"
        ih = ctx.array(f"{spec.prefix}weight_ih{sfx}, transposed", _transposed(w["ih"]))
        hh = ctx.array(f"{spec.prefix}weight_hh{sfx}, transposed", _transposed(w["hh"]))
        bih = ctx.array(f"{spec.prefix}bias_ih{sfx}", w["b_ih"]) if "b_ih" in w else "NULL"
        bhh = ctx.array(f"{spec.prefix}bias_hh{sfx}", w["b_hh"]) if "b_hh" in w else "NULL"
        hr = ctx.array(f"{spec.prefix}weight_hr{sfx}, transposed", _transposed(w["hr"])) if "hr" in w else "NULL"
        name = f"{ctx.p}_layer{len(ctx.decls)}"
        ins = spec.layer_input_size(layer)
        ctx.decls.append(
            f"/* {where}: {spec.cell}, layer {layer}, {'reverse' if d else 'forward'} */\n"
            f"static const {ctx.p}_layer {name} = {{{ih}, {hh}, {bih}, {bhh}, {hr}, "
            f"{ins}, {spec.hidden_size}, {spec.h_out}}};"
        )
        layers.append(CLayer(name, spec.cell, layer, d, ins, spec.hidden_size, spec.h_out))
    ctx.need("layer_t")
    ctx.need(spec.cell)
    # gi and gh (G*H each) and, for the LSTM, the unprojected o*tanh(c) (H)
    work = 2 * spec.gates * spec.hidden_size + (spec.hidden_size if spec.cell == "lstm" else 0)
    return CStep(step, width, spec.output_size, layers=layers, work=work)


def emit_pool(ctx: CContext, step: Step, width: int) -> CStep:
    how, n = step.name, width
    if how == "max":
        neg = "-HUGE_VAL" + ("F" if ctx.f32 else "")
        init = lambda a: f"for (i = 0; i < {n}; i++) {a}[i] = {neg};"  # noqa: E731
        add = lambda a, v: f"for (i = 0; i < {n}; i++) if ({v}[i] > {a}[i]) {a}[i] = {v}[i];"  # noqa: E731
    elif how == "last":
        init = lambda a: f"for (i = 0; i < {n}; i++) {a}[i] = 0;"  # noqa: E731
        add = lambda a, v: f"memcpy({a}, {v}, {n} * sizeof({ctx.p}_real));"  # noqa: E731
    else:  # sum, mean: a running sum
        init = lambda a: f"for (i = 0; i < {n}; i++) {a}[i] = 0;"  # noqa: E731
        add = lambda a, v: f"for (i = 0; i < {n}; i++) {a}[i] += {v}[i];"  # noqa: E731
    if how == "mean":
        out = lambda a, cnt, d: f"for (i = 0; i < {n}; i++) {d}[i] = {a}[i] / ({ctx.p}_real)({cnt});"  # noqa: E731
    else:
        out = lambda a, cnt, d: f"memcpy({d}, {a}, {n} * sizeof({ctx.p}_real));"  # noqa: E731
    return CStep(step, width, width, acc_init=init, acc_add=add, acc_out=out)


# ------------------------------------------------------------ C runtime
# Helpers the emitters call, in dependency order; P is the prefix, R the real
# type, and tanh/exp/... are replaced by the dtype's libm names.
_HELPER_DEPS = {
    "lstm": ("affine", "sigmoid", "tanh", "layer_t"),
    "gru": ("affine", "sigmoid", "tanh", "layer_t"),
    "rnn_tanh": ("affine", "tanh", "layer_t"),
    "rnn_relu": ("affine", "layer_t"),
    "sigmoid": ("tanh",),
    "act_sigmoid": ("sigmoid",),
    "act_tanh": ("tanh",),
}

# float32 tanh without libm: the [13/6] rational of rnnjit's numba kernels (Eigen's ptanh_float constants;
# rnnjit/kernels/activations.py), clamped where float32 tanh is +-1; max abs error 2.6e-7. It vectorizes
# (libm's tanhf is a scalar call of ~10-20 ns, the whole cost of a small LSTM step). float64 keeps libm's tanh.
_TANH_F32 = """
/* tanh in float: a [13/6] rational approximation (max abs error 2.6e-7), no libm call, so loops vectorize */
static R P_tanh(R x)
{
    const R lim = 7.90531110763549805f;
    R x2, p, q;
    x = x < -lim ? -lim : (x > lim ? lim : x);
    x2 = x * x;
    p = -2.76076847742355e-16f;
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 + -8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    q = 1.19825839466702e-06f;
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    return x * p / q;
}"""
_TANH_F64 = """
static R P_tanh(R x) { return tanh(x); }"""

_ELMAN = """
/* one Elman RNN step, ACT: h in place; work: 2*hid values */
static void P_rnn_ACT(const P_layer *L, const R *x, R *h, R *c, R *work)
{
    R *gi = work, *gh = work + L->hid;
    int j;
    (void)c;
    P_affine(gi, L->wih, L->bih, x, L->in, L->hid);
    P_affine(gh, L->whh, L->bhh, h, L->hout, L->hid);
    for (j = 0; j < L->hid; j++) {
        const R v = gi[j] + gh[j];
        h[j] = APPLY(v);
    }
}"""

# elementwise activations: nn.GELU() is the exact erf form, nn.ELU(alpha=1.0), nn.LeakyReLU(negative_slope=0.01)
_ACT_EXPR = {
    "sigmoid": "P_sigmoid(v)",
    "tanh": "TANH(v)",
    "relu": "v > 0 ? v : (R)0",
    "identity": "v",
    "gelu": "(R)0.5 * v * ((R)1 + erf(v * SQRT1_2))",
    "elu": "v > 0 ? v : expm1(v)",
    "leaky_relu": "v >= 0 ? v : v * LEAKY",
}
_ELEMENTWISE = """
static void P_act_NAME(R *restrict y, const R *restrict x, int n)
{
    int i;
    for (i = 0; i < n; i++) {
        const R v = x[i];
        y[i] = EXPR;
    }
}"""

_HELPERS = {
    "layer_t": """
/* one layer-direction of a recurrent module: matrices transposed, NULL when absent */
typedef struct {
    const R *wih, *whh, *bih, *bhh, *whr;
    int in, hid, hout;
} P_layer;""",
    "affine": """
/* y = W x + b for W stored transposed (wt: n_in rows of n_out); b may be NULL */
static void P_affine(R *restrict y, const R *wt, const R *b, const R *restrict x, int n_in, int n_out)
{
    int i, k;
    for (i = 0; i < n_out; i++) y[i] = 0;
    for (k = 0; k < n_in; k++) {
        const R xk = x[k];
        const R *w = wt + (size_t)k * n_out;
        for (i = 0; i < n_out; i++) y[i] += w[i] * xk;
    }
    if (b) for (i = 0; i < n_out; i++) y[i] += b[i];
}""",
    "sigmoid": """
/* logistic function without overflow: 1/(1+exp(-v)) == (1+tanh(v/2))/2 */
static R P_sigmoid(R v) { return (R)0.5 * ((R)1 + TANH((R)0.5 * v)); }""",
    "lstm": """
/* one LSTM step (gates i, f, g, o): h (hout) and c (hid) in place; work: 9*hid values */
static void P_lstm(const P_layer *L, const R *x, R *h, R *c, R *work)
{
    const int H = L->hid, G = 4 * L->hid;
    R *gi = work, *gh = work + G, *m = work + 2 * G;
    int j;
    P_affine(gi, L->wih, L->bih, x, L->in, G);
    P_affine(gh, L->whh, L->bhh, h, L->hout, G);
    for (j = 0; j < H; j++) {
        const R ig = P_sigmoid(gi[j] + gh[j]);
        const R fg = P_sigmoid(gi[H + j] + gh[H + j]);
        const R gg = TANH(gi[2 * H + j] + gh[2 * H + j]);
        const R og = P_sigmoid(gi[3 * H + j] + gh[3 * H + j]);
        c[j] = fg * c[j] + ig * gg;
        m[j] = og * TANH(c[j]);
    }
    if (L->whr) P_affine(h, L->whr, NULL, m, H, L->hout);
    else memcpy(h, m, (size_t)H * sizeof *h);
}""",
    "gru": """
/* one GRU step (gates r, z, n; the reset gate multiplies W_hn h + b_hn): h in place; work: 6*hid values */
static void P_gru(const P_layer *L, const R *x, R *h, R *c, R *work)
{
    const int H = L->hid, G = 3 * L->hid;
    R *gi = work, *gh = work + G;
    int j;
    (void)c;
    P_affine(gi, L->wih, L->bih, x, L->in, G);
    P_affine(gh, L->whh, L->bhh, h, L->hout, G);
    for (j = 0; j < H; j++) {
        const R r = P_sigmoid(gi[j] + gh[j]);
        const R z = P_sigmoid(gi[H + j] + gh[H + j]);
        const R n = TANH(gi[2 * H + j] + r * gh[2 * H + j]);
        h[j] = ((R)1 - z) * n + z * h[j];
    }
}""",
    "rnn_tanh": _ELMAN.replace("ACT", "tanh").replace("APPLY(v)", "TANH(v)"),
    "rnn_relu": _ELMAN.replace("ACT", "relu").replace("APPLY(v)", "v > 0 ? v : (R)0"),
    "layernorm": """
/* LayerNorm over n values: biased variance, as torch; w and b may be NULL */
static void P_layernorm(R *restrict y, const R *restrict x, const R *w, const R *b, R eps, int n)
{
    R mean = 0, var = 0;
    int i;
    for (i = 0; i < n; i++) mean += x[i];
    mean /= (R)n;
    for (i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= (R)n;
    for (i = 0; i < n; i++) {
        R v = (x[i] - mean) / sqrt(var + eps);
        if (w) v *= w[i];
        if (b) v += b[i];
        y[i] = v;
    }
}""",
    "batchnorm": """
/* BatchNorm1d in eval mode: running statistics; w and b NULL without affine */
static void P_batchnorm(R *restrict y, const R *restrict x, const R *mean, const R *var, const R *w, const R *b,
                        R eps, int n)
{
    int i;
    for (i = 0; i < n; i++) {
        R v = (x[i] - mean[i]) / sqrt(var[i] + eps);
        if (w) v = v * w[i] + b[i];
        y[i] = v;
    }
}""",
    "l2norm": """
/* F.normalize(x, p=2, dim=-1, eps): x / max(||x||_2, eps) */
static void P_l2norm(R *restrict y, const R *restrict x, R eps, int n)
{
    R s = 0;
    int i;
    for (i = 0; i < n; i++) s += x[i] * x[i];
    s = sqrt(s);
    if (s < eps) s = eps;
    for (i = 0; i < n; i++) y[i] = x[i] / s;
}""",
    "softmax": """
/* softmax (take_log 0) or log_softmax (1) over n values, shifted by their max as torch */
static void P_softmax(R *restrict y, const R *restrict x, int n, int take_log)
{
    R m = x[0], s = 0;
    int i;
    for (i = 1; i < n; i++) if (x[i] > m) m = x[i];
    for (i = 0; i < n; i++) s += exp(x[i] - m);
    if (take_log) {
        s = log(s);
        for (i = 0; i < n; i++) y[i] = (x[i] - m) - s;
    } else {
        for (i = 0; i < n; i++) y[i] = exp(x[i] - m) / s;
    }
}""",
    **{f"act_{name}": _ELEMENTWISE.replace("NAME", name).replace("EXPR", expr) for name, expr in _ACT_EXPR.items()},
}

_LIBM = ("tanh", "exp", "log", "sqrt", "erf", "expm1")


def runtime(ctx: CContext) -> str:
    """The C text of the helpers the emitters used, in dependency order."""
    order = ["layer_t", "affine", "tanh", "sigmoid", "lstm", "gru", "rnn_tanh", "rnn_relu", "layernorm", "batchnorm",
             "l2norm", "softmax"]
    order += [k for k in _HELPERS if k.startswith("act_")]
    parts = []
    for name in order:
        if name not in ctx.helpers:
            continue
        text = _HELPERS[name] if name != "tanh" else (_TANH_F32 if ctx.f32 else _TANH_F64)
        text = text.replace("TANH(", "P_tanh(").replace("P_", f"{ctx.p}_").replace("(R)", f"({ctx.p}_real)")
        text = re.sub(r"\bR\b", f"{ctx.p}_real", text)
        text = text.replace("SQRT1_2", ctx.lit(1.0 / math.sqrt(2.0))).replace("LEAKY", ctx.lit(0.01))
        if ctx.f32:
            text = re.sub(r"\b(" + "|".join(_LIBM) + r")\(", r"\1f(", text)
        parts.append(text.strip("\n"))
    return "\n\n".join(parts)
