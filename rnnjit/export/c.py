"""``rnnjit export-c``: a bundle's whole chain as one dependency-free C99 file (NAME.h + NAME.c).

The chain is split where it stops being per step: the steps before the
reduction (embedding, recurrent modules, per-step linear layers, norms and
activations) run on every step; the reduction is a pooling over valid steps,
or the last recurrent module's "last"/"final" output; the steps after it run
once per sequence. Output mode "all" without pooling has no reduction: every
step runs per step and the output is (T, O).

Two drivers are generated, both from the same step emitters (the ``c_emit``
slot of each entry of the step-kind table `rnnjit.kinds.KINDS`, written in
`rnnjit.export.c_steps`):

- unidirectional chains stream: ``NAME_step`` advances the state (every
  layer's h and c, a running pooling accumulator, the step count) by one
  input step and applies the per-sequence tail to what the reduction holds so
  far; whole-sequence scoring is the same loop, so streaming step by step
  equals whole-sequence scoring bit for bit. No scratch memory.
- chains with a bidirectional module need the whole sequence: they run layer
  by layer over two (T, W) buffers the caller supplies
  (``NAME_SCRATCH_SIZE(T)`` values); there is no ``NAME_step``.

Nothing allocates; nothing global is mutable; every entry returns an int code.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass

import numpy as np

from rnnjit.errors import ArchitectureError, InputError
from rnnjit.export.c_steps import CContext, CStep, runtime
from rnnjit.kinds import KINDS
from rnnjit.model import Model
from rnnjit.spec import OUTPUT_MODES

C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if inline int long "
    "register restrict return short signed sizeof static struct switch typedef union unsigned void volatile while "
    "bool true false main".split()
)
PREFIX_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")


def check_prefix(prefix: str) -> str | None:
    """None when ``prefix`` can start every C name of the file, else what is wrong with it."""
    if not PREFIX_RE.fullmatch(prefix):
        return "a C identifier: a letter, then letters, digits or '_' (at most 63)"
    if prefix in C_KEYWORDS:
        return "not a C keyword"
    return None


@dataclass
class CSource:
    """The generated pair and what it holds."""

    prefix: str
    header: str
    source: str
    n_values: int  # weight values written as literals


@dataclass
class _Plan:
    pre: list[CStep]  # per step, in chain order (embedding and recurrent modules included)
    reduce: str | None  # "pool", "last", "final", or None (output "all": everything per step)
    pool: CStep | None
    post: list[CStep]  # once per sequence
    per_step: bool


def _plan(model: Model, ctx: CContext, output: str) -> _Plan:
    chain = model.chain
    width = model.input_size
    steps: list[CStep] = []
    for step in chain:
        emit = KINDS[step.kind].c_emit
        if emit is None:
            raise ArchitectureError(
                f"export-c cannot write a {step.kind} step ({step.label()!r}) yet: its kind has no C emitter; "
                "score this model with rnnjit instead"
            )
        cs = emit(ctx, step, width)
        steps.append(cs)
        width = cs.width_out
    last_rnn = max(i for i, s in enumerate(chain) if KINDS[s.kind].recurrent)
    pool_at = next((i for i, s in enumerate(chain) if KINDS[s.kind].pools_time), None)
    if pool_at is not None:
        return _Plan(steps[:pool_at], "pool", steps[pool_at], steps[pool_at + 1 :], False)
    if output in ("last", "final"):
        return _Plan(steps[: last_rnn + 1], output, None, steps[last_rnn + 1 :], False)
    return _Plan(steps, None, None, [], True)


def _weights(model: Model, dtype: np.dtype) -> dict[str, np.ndarray]:
    """The weights scoring reads, in the export dtype (each kind's ``scoring_weights``: a max_norm table renormalized)."""
    w = {k: np.asarray(v, dtype=dtype) for k, v in model.weights.items()}
    for step in model.chain:
        w.update(KINDS[step.kind].scoring_weights(step, w))
    return w


def generate(model: Model, prefix: str = "model", dtype: str | None = None) -> CSource:
    """Generate ``prefix.h`` and ``prefix.c`` for ``model`` (its chain, its output mode).

    Parameters
    ----------
    model : a loaded bundle (`rnnjit.load`).
    prefix : the C name every symbol of the file starts with (macros in capitals).
    dtype : "float32" or "float64" (default: the bundle's dtype).
    """
    problem = check_prefix(prefix)
    if problem:
        raise InputError(f"prefix {prefix!r} must be {problem}")
    dtype = str(np.dtype(dtype or model.dtype))
    if dtype not in ("float32", "float64"):
        raise InputError(f"dtype {dtype!r} is not supported; expected float32 or float64")
    output = model.output
    if output not in OUTPUT_MODES:
        raise InputError(f"output mode {output!r} is not known; expected one of {', '.join(OUTPUT_MODES)}")
    ctx = CContext(prefix, dtype, _weights(model, np.dtype(dtype)))
    plan = _plan(model, ctx, output)
    return _Writer(model, ctx, plan, dtype).write()


class _Writer:
    def __init__(self, model: Model, ctx: CContext, plan: _Plan, dtype: str):
        self.m, self.ctx, self.plan, self.dtype = model, ctx, plan, dtype
        self.p, self.P = ctx.p, ctx.p.upper()
        self.rnns = [s for s in plan.pre if s.layers]
        self.streaming = not any(s.step.rnn.bidirectional for s in self.rnns)
        self.tokens = model.takes_tokens
        self.I = 1 if self.tokens else model.input_size
        self.O = model.output_dim
        # state offsets: modules in chain order, each (L*D, h_out) / (L*D, hidden) for LSTMs
        self.h_off, self.c_off, h, c = {}, {}, 0, 0
        for s in self.rnns:
            spec = s.step.rnn
            self.h_off[id(s)], self.c_off[id(s)] = h, c
            ld = spec.num_layers * spec.num_directions
            h += ld * spec.h_out
            c += ld * spec.hidden_size if spec.has_cell_state else 0
        self.h_size, self.c_size = h, c
        every = [self.I, *(w for s in (*plan.pre, *([plan.pool] if plan.pool else []), *plan.post)
                           for w in (s.width_in, s.width_out))]
        self.maxw = max(every + [max((s.step.rnn.hidden_size for s in self.rnns), default=1)])
        self.seqw = max([self.I] + [w for s in plan.pre for w in (s.width_in, s.width_out)])
        self.work = max([1] + [s.work for s in self.rnns])
        self.acc = plan.pool.width_in if plan.pool else 0
        self.red_w = plan.pool.width_in if plan.pool else (plan.pre[-1].width_out if plan.pre else self.I)

    # ------------------------------------------------------------ pieces
    def cell_call(self, layer, x: str, h: str, c: str) -> str:
        c_arg = c if layer.cell == "lstm" else "NULL"
        return f"{self.p}_{layer.cell}(&{layer.struct}, {x}, {h}, {c_arg}, work);"

    def vec_chain(self, steps, cur="cur", nxt="nxt") -> list[str]:
        lines = []
        for s in steps:
            if s.vec is None:
                continue
            lines += [s.vec(cur, nxt), f"tmp = {cur}; {cur} = {nxt}; {nxt} = tmp;"]
        return lines

    def input_row(self, x_expr: str, dst: str) -> list[str]:
        if self.tokens:
            return [self.plan.pre[0].lookup(f"{x_expr}[0]", dst)]
        return [f"memcpy({dst}, {x_expr}, {self.I} * sizeof *{dst});"]

    def advance(self) -> str:
        """Streaming: one input step through the per-step steps into the reduction."""
        p, plan = self.p, self.plan
        body = [f"{p}_real va[{self.P}_MAXW], vb[{self.P}_MAXW], work[{self.P}_WORK];",
                f"{p}_real *cur = va, *nxt = vb, *tmp = NULL;", "int i = 0;",
                "(void)nxt; (void)tmp; (void)i; (void)work; (void)out;"]
        if self.tokens:
            body.append(f"if (x[0] < 0 || x[0] >= {self.P}_VOCAB_SIZE) return {self.P}_ERR_TOKEN;")
        body += self.input_row("x", "cur")
        start = 1 if self.tokens else 0
        for s in plan.pre[start:]:
            if s.layers:
                src = "cur"
                for layer in s.layers:
                    off = self.h_off[id(s)] + layer.layer * layer.h_out
                    coff = self.c_off[id(s)] + layer.layer * layer.hidden
                    body.append(self.cell_call(layer, src, f"s->h + {off}", f"s->c + {coff}"))
                    src = f"s->h + {off}"
                body.append(f"memcpy(cur, {src}, {s.width_out} * sizeof *cur);")
            else:
                body += self.vec_chain([s])
        if plan.reduce == "pool":
            body.append(plan.pool.acc_add("s->acc", "cur"))
        else:
            body.append(f"memcpy(out, cur, {self.red_w} * sizeof *out);")
        body.append("s->t++;")
        body.append(f"return {self.P}_OK;")
        return (f"/* one input step through the per-step part of the chain; out: what the reduction hands on */\n"
                f"static int {p}_advance({p}_state *s, const {p}_input *x, {p}_real *out)\n{{\n"
                + _indent(body) + "\n}")

    def finish(self) -> str:
        """The per-sequence tail applied to the reduction's vector ``v`` (or the state's pooling accumulator)."""
        p, plan = self.p, self.plan
        body = [f"{p}_real va[{self.P}_MAXW], vb[{self.P}_MAXW];",
                f"{p}_real *cur = va, *nxt = vb, *tmp = NULL;", "int i = 0;", "(void)nxt; (void)tmp; (void)i;"]
        if plan.reduce == "pool":
            body.append(plan.pool.acc_out("acc", "n", "cur"))
        else:
            body.append(f"memcpy(cur, v, {self.red_w} * sizeof *cur);")
        body += self.vec_chain(plan.post)
        body.append(f"memcpy(y, cur, {self.O} * sizeof *y);")
        args = f"const {p}_real *v, const {p}_real *acc, int64_t n, {p}_real *y"
        return (f"/* the per-sequence tail: from the reduction's vector v (or pooling accumulator acc over n steps) to y */\n"
                f"static void {p}_finish({args})\n{{\n" + _indent(["(void)v; (void)acc; (void)n;", *body]) + "\n}")

    def seq_streaming(self) -> str:
        p, P = self.p, self.P
        body = [f"{p}_state s;", f"{p}_real v[{P}_MAXW] = {{0}};", "int64_t t;", "(void)scratch;",
                f"{p}_reset_from(&s, h0, c0);", "for (t = 0; t < T; t++) {",
                f"    {p}_advance(&s, x + t * {self.I}, v);"]
        if self.plan.per_step:
            body.append(f"    {p}_finish(v, s.acc, s.t, y + t * {self.O});")
        body.append("}")
        if not self.plan.per_step:
            body.append(f"{p}_finish(v, s.acc, s.t, y);")
        body += [f"{p}_get_state(&s, hn, cn);", f"return {P}_OK;"]
        return self._seq_fn(body)

    def _seq_fn(self, body) -> str:
        p = self.p
        return (f"/* one whole sequence, inputs checked by the caller */\n"
                f"static int {p}_seq(const {p}_input *x, int64_t T, const {p}_real *h0, const {p}_real *c0, "
                f"{p}_real *y, {p}_real *hn, {p}_real *cn, {p}_real *scratch)\n{{\n" + _indent(body) + "\n}")

    def seq_layers(self) -> str:
        """Whole sequence, layer by layer over two caller-supplied (T, SEQW) buffers: any chain, bidirectional too."""
        p, P, plan = self.p, self.P, self.plan
        body = [f"{p}_real *buf[2];", f"const {p}_real *cur;",
                f"{p}_real va[{P}_MAXW], vb[{P}_MAXW], work[{P}_WORK], h[{P}_MAXW], c[{P}_MAXW];",
                f"{p}_real *v = va, *u = vb, *tmp = NULL;", "int which = 0, i = 0;", "int64_t t;",
                "(void)v; (void)u; (void)tmp; (void)i; (void)c; (void)work; (void)h0; (void)c0; (void)hn; (void)cn;",
                "buf[0] = scratch;", f"buf[1] = scratch + (size_t)T * {P}_SEQW;"]
        width = self.I
        if self.tokens:
            body += ["for (t = 0; t < T; t++) {",
                     "    " + plan.pre[0].lookup("x[t]", f"buf[which] + t * {plan.pre[0].width_out}"),
                     "}", "cur = buf[which]; which ^= 1;"]
            width = plan.pre[0].width_out
        else:
            body.append("cur = x;")
        last_rnn = self.rnns[-1]
        for s in plan.pre[1 if self.tokens else 0 :]:
            if s.vec is not None:
                body += ["for (t = 0; t < T; t++) {",
                         "    " + s.vec(f"(cur + t * {s.width_in})", f"(buf[which] + t * {s.width_out})"),
                         "}", "cur = buf[which]; which ^= 1;"]
            elif s.layers:
                spec = s.step.rnn
                D, hout, hid = spec.num_directions, spec.h_out, spec.hidden_size
                for layer in s.layers:
                    k = layer.layer * D + layer.direction
                    hoff, coff = self.h_off[id(s)] + k * hout, self.c_off[id(s)] + k * hid
                    loop = "for (t = T - 1; t >= 0; t--)" if layer.direction else "for (t = 0; t < T; t++)"
                    init = [f"if (h0) memcpy(h, h0 + {hoff}, {hout} * sizeof *h); "
                            f"else for (i = 0; i < {hout}; i++) h[i] = 0;"]
                    if spec.has_cell_state:
                        init.append(f"if (c0) memcpy(c, c0 + {coff}, {hid} * sizeof *c); "
                                    f"else for (i = 0; i < {hid}; i++) c[i] = 0;")
                    body += [f"/* {spec.prefix or 'rnn'} layer {layer.layer} {'reverse' if layer.direction else 'forward'} */",
                             *init, loop + " {",
                             "    " + self.cell_call(layer, f"cur + t * {layer.in_size}", "h", "c"),
                             f"    memcpy(buf[which] + t * {D * hout} + {layer.direction * hout}, h, {hout} * sizeof *h);",
                             "}", f"if (hn) memcpy(hn + {hoff}, h, {hout} * sizeof *h);"]
                    if spec.has_cell_state:
                        body.append(f"if (cn) memcpy(cn + {coff}, c, {hid} * sizeof *c);")
                    if s is last_rnn and plan.reduce == "final" and layer.layer == spec.num_layers - 1:
                        body.append(f"memcpy(v + {layer.direction * hout}, h, {hout} * sizeof *v);")
                    if layer.direction == D - 1:
                        body.append("cur = buf[which]; which ^= 1;")
                if s is last_rnn and plan.reduce == "last":
                    body.append(f"memcpy(v, cur + (T - 1) * {s.width_out}, {s.width_out} * sizeof *v);")
            width = s.width_out
        if plan.reduce == "pool":
            body += [plan.pool.acc_init("u"), "for (t = 0; t < T; t++) {",
                     "    " + plan.pool.acc_add("u", f"(cur + t * {width})"), "}",
                     plan.pool.acc_out("u", "T", "v")]
        if plan.per_step:
            body.append(f"memcpy(y, cur, (size_t)T * {self.O} * sizeof *y);")
        else:
            body += self.vec_chain(plan.post, "v", "u")
            body.append(f"memcpy(y, v, {self.O} * sizeof *y);")
        body.append(f"return {P}_OK;")
        return self._seq_fn(body)

    # ------------------------------------------------------------ files
    def write(self) -> CSource:
        header = self.header()
        source = self.source()
        return CSource(self.p, header, source, self.ctx.n_values)

    def scratch_macro(self) -> str:
        if self.streaming:
            return "0"
        return f"(2 * (size_t)(T) * {self.seqw})"

    def header(self) -> str:
        p, P = self.p, self.P
        real = self.ctx.real
        inp = "int64_t" if self.tokens else f"{p}_real"
        lines = [self.comment(), f"#ifndef {P}_H", f"#define {P}_H", "",
                 "#include <stddef.h>", "#include <stdint.h>", "", "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
                 f"typedef {real} {p}_real;",
                 f"typedef {inp} {p}_input; /* {'one token id per step' if self.tokens else f'{P}_INPUT_SIZE values per step'} */",
                 "",
                 f"#define {P}_INPUT_SIZE {self.I} /* {p}_input values per step */",
                 f"#define {P}_OUTPUT_SIZE {self.O} /* values per output vector */",
                 f"#define {P}_PER_STEP {int(self.plan.per_step)} /* 1: one output vector per step, 0: one per sequence */",
                 f"#define {P}_Y_SIZE(T) ({'(size_t)(T) * ' if self.plan.per_step else ''}{P}_OUTPUT_SIZE) "
                 "/* y values for a sequence of T steps */",
                 f"#define {P}_TAKES_TOKENS {int(self.tokens)}"]
        if self.tokens:
            lines.append(f"#define {P}_VOCAB_SIZE {self.plan.pre[0].step.in_features} /* valid ids: 0..{P}_VOCAB_SIZE-1 */")
        lines += [f"#define {P}_H_SIZE {self.h_size} /* h0/hn values: modules in chain order, each (L*D, H_out) */",
                  f"#define {P}_C_SIZE {self.c_size} /* c0/cn values: LSTM modules in chain order, each (L*D, H) */",
                  f"#define {P}_STATE_SIZE ({P}_H_SIZE + {P}_C_SIZE)",
                  f"#define {P}_STREAMING {int(self.streaming)} /* 1: {p}_state and {p}_step exist (unidirectional chain) */",
                  f"#define {P}_SCRATCH_SIZE(T) {self.scratch_macro()} /* {p}_real values of scratch for T steps */",
                  "", f"#define {P}_OK 0",
                  f"#define {P}_ERR_ARGUMENT (-1) /* a NULL pointer, T < 1, B < 0 or a length outside 1..T_max */",
                  f"#define {P}_ERR_TOKEN (-2) /* a token id outside 0..{P}_VOCAB_SIZE-1 */" if self.tokens else
                  f"/* {P}_ERR_TOKEN (-2) is for token models only */", ""]
        if self.streaming:
            lines += [f"/* the streaming state: every layer's h (and c), the pooling accumulator, the step count.",
                      f"   Its members are private; use {p}_reset, {p}_reset_from and {p}_get_state. */",
                      "typedef struct {",
                      f"    {p}_real h[{max(1, self.h_size)}];",
                      f"    {p}_real c[{max(1, self.c_size)}];",
                      f"    {p}_real acc[{max(1, self.acc)}];",
                      "    int64_t t;",
                      f"}} {p}_state;", "",
                      f"int {p}_reset({p}_state *state);",
                      f"int {p}_reset_from({p}_state *state, const {p}_real *h0, const {p}_real *c0);",
                      f"int {p}_get_state(const {p}_state *state, {p}_real *hn, {p}_real *cn);",
                      f"int {p}_step({p}_state *state, const {p}_input *x_t, {p}_real *y_t);"]
        lines += [f"int {p}_score(const {p}_input *x, int64_t T, {p}_real *y, {p}_real *scratch);",
                  f"int {p}_score_from(const {p}_input *x, int64_t T, const {p}_real *h0, const {p}_real *c0,",
                  f"    {p}_real *y, {p}_real *hn, {p}_real *cn, {p}_real *scratch);",
                  f"int {p}_score_batch(const {p}_input *x, const int64_t *lengths, int64_t B, int64_t T_max,",
                  f"    {p}_real *y, {p}_real *scratch);",
                  "", "#ifdef __cplusplus", "}", "#endif", f"#endif /* {P}_H */", ""]
        return "\n".join(lines)

    def comment(self) -> str:
        m, p, P = self.m, self.p, self.P
        cfg = m.config
        prov = cfg.get("provenance") or {}
        out = []
        out.append(f"{p}.h / {p}.c: generated by rnnjit {prov.get('rnnjit_version') or ''} `rnnjit export-c`; do not edit.")
        out.append("")
        out.append("The model")
        out.append(f"  chain: {m.describe()}")
        for s in m.chain:
            out.append(f"    - {_describe_step(s)}")
        out.append(f"  output mode: {m.output}" + (f" (pooled: pool:{m.pooling})" if m.pooling else ""))
        out.append(f"  computed in {self.dtype} (bundle weights {cfg.get('dtype', m.dtype.name)}); "
                   f"{self.ctx.n_values} weight values as exact hex float literals")
        if prov:
            src = prov.get("source")
            sha = prov.get("sha256")
            out.append(f"  converted from: {src}" + (f" (sha256 {sha})" if sha else "")
                       + (f" on {prov['created']}" if prov.get("created") else ""))
        if m.feature_names:
            out.append(f"  features: {', '.join(map(str, m.feature_names))}")
        out.append("  assumed at convert time (not in the weights; check them against your forward()):")
        if m.assumed:
            for a in m.assumed:
                out.append(f"    - {a.get('note') or a.get('label') or json.dumps(a)}")
        else:
            out.append("    - nothing")
        out.append("")
        out.append("Shapes")
        x_desc = "int64 token ids, one per step" if self.tokens else f"{self.I} {self.ctx.real}s per step"
        out.append(f"  input x: T steps of {P}_INPUT_SIZE = {self.I} ({x_desc}), step-major")
        if self.plan.per_step:
            out.append(f"  output y: T vectors of {P}_OUTPUT_SIZE = {self.O} (one per step)")
        else:
            out.append(f"  output y: one vector of {P}_OUTPUT_SIZE = {self.O} per sequence")
        out.append(f"  h0/hn: {P}_H_SIZE = {self.h_size} values, c0/cn: {P}_C_SIZE = {self.c_size}: recurrent modules in")
        out.append("  chain order, each in PyTorch's (num_layers*num_directions, H) layout for one sequence, row-major")
        out.append("  (rnnjit's h0/c0 state columns; c for LSTM modules only).")
        out.append("")
        out.append("Entry points (every one returns 0, or a negative code: *_ERR_ARGUMENT, *_ERR_TOKEN; on an error")
        out.append("nothing is written)")
        out.append(f"  {p}_score(x, T, y, scratch): one whole sequence of T >= 1 steps, as PyTorch scores it unpadded.")
        out.append(f"  {p}_score_from(x, T, h0, c0, y, hn, cn, scratch): the same from initial states h0/c0 (NULL:")
        out.append("    zeros), also writing the final states hn/cn (NULL: not wanted).")
        out.append(f"  {p}_score_batch(x, lengths, B, T_max, y, scratch): B padded sequences, x (B, T_max, INPUT_SIZE),")
        out.append(f"    each scored alone over its first lengths[b] steps (1 <= lengths[b] <= T_max; padding is never")
        out.append(f"    read: PyTorch's pack_padded_sequence); y (B, {P}_Y_SIZE(T_max)), zero past each length.")
        if self.streaming:
            out.append(f"  {p}_reset(&s), {p}_reset_from(&s, h0, c0): start a stream (zeros / given states).")
            out.append(f"  {p}_step(&s, x_t, y_t): advance by one step; y_t is the output for the steps so far: the")
            out.append("    current step's output, or (pooled models) the pooling over the steps so far. Step by step")
            out.append(f"    equals {p}_score on the same steps, bit for bit. {p}_get_state(&s, hn, cn) reads h and c.")
            out.append(f"  scratch: {P}_SCRATCH_SIZE(T) is 0; pass NULL.")
        else:
            out.append("  A bidirectional module needs the whole sequence: there is no streaming entry. scratch holds")
            out.append(f"    {P}_SCRATCH_SIZE(T) (score_batch: T_max) {p}_real values the caller provides (stack, static")
            out.append("    or heap: this file never allocates); it may be reused between calls, not shared by threads.")
        out.append("Semantics are PyTorch's: LSTM gates i,f,g,o (with proj_size: h = W_hr(o*tanh(c))), GRU gates r,z,n with")
        out.append("the reset gate applied to (W_hn h + b_hn), bidirectional reverse direction starting at each sequence's")
        out.append("own last step; BatchNorm1d in eval mode; dropout is a no-op. No heap, no mutable globals: reentrant.")
        text = "\n".join(" * " + ln if ln else " *" for ln in out)
        return "/*\n" + text.replace("*/", "* /") + "\n */"

    def source(self) -> str:
        p, P = self.p, self.P
        parts = [f"/* {p}.c: generated by rnnjit export-c; see {p}.h for the model and the entry points. */",
                 f'#include "{p}.h"', "", "#include <math.h>", "#include <string.h>", "",
                 f"#define {P}_MAXW {self.maxw}", f"#define {P}_WORK {self.work}", f"#define {P}_SEQW {self.seqw}",
                 "", runtime(self.ctx), "", "\n\n".join(self.ctx.decls), ""]
        if self.tokens:
            parts.append(textwrap.dedent(f"""\
                static int {p}_check_tokens(const {p}_input *x, int64_t n)
                {{
                    int64_t t;
                    for (t = 0; t < n; t++)
                        if (x[t] < 0 || x[t] >= {P}_VOCAB_SIZE) return {P}_ERR_TOKEN;
                    return {P}_OK;
                }}
                """))
        if self.streaming:
            parts += [self.streaming_api(), self.advance(), "", self.finish(), "", self.seq_streaming(), ""]
        else:
            parts += [self.seq_layers(), ""]
        parts.append(self.public_api())
        return "\n".join(parts)

    def streaming_api(self) -> str:
        p, P = self.p, self.P
        acc_init = self.plan.pool.acc_init("s->acc") if self.plan.reduce == "pool" else ""
        h_fill = (f"if (h0) memcpy(s->h, h0, {P}_H_SIZE * sizeof *s->h); else for (i = 0; i < {P}_H_SIZE; i++) s->h[i] = 0;"
                  if self.h_size else "(void)h0;")
        c_fill = (f"if (c0) memcpy(s->c, c0, {P}_C_SIZE * sizeof *s->c); else for (i = 0; i < {P}_C_SIZE; i++) s->c[i] = 0;"
                  if self.c_size else "(void)c0; s->c[0] = 0;")
        c_get = f"if (cn) memcpy(cn, s->c, {P}_C_SIZE * sizeof *cn);" if self.c_size else "(void)cn;"
        return textwrap.dedent(f"""\
            int {p}_reset_from({p}_state *s, const {p}_real *h0, const {p}_real *c0)
            {{
                int i = 0;
                (void)i;
                if (!s) return {P}_ERR_ARGUMENT;
                {h_fill}
                {c_fill}
                {acc_init or 's->acc[0] = 0;'}
                s->t = 0;
                return {P}_OK;
            }}

            int {p}_reset({p}_state *s)
            {{
                return {p}_reset_from(s, NULL, NULL);
            }}

            int {p}_get_state(const {p}_state *s, {p}_real *hn, {p}_real *cn)
            {{
                if (!s) return {P}_ERR_ARGUMENT;
                if (hn) memcpy(hn, s->h, {P}_H_SIZE * sizeof *hn);
                {c_get}
                return {P}_OK;
            }}

            static int {p}_advance({p}_state *s, const {p}_input *x, {p}_real *out);
            static void {p}_finish(const {p}_real *v, const {p}_real *acc, int64_t n, {p}_real *y);

            int {p}_step({p}_state *s, const {p}_input *x_t, {p}_real *y_t)
            {{
                {p}_real v[{P}_MAXW];
                int rc;
                if (!s || !x_t || !y_t) return {P}_ERR_ARGUMENT;
                rc = {p}_advance(s, x_t, v);
                if (rc) return rc;
                {p}_finish(v, s->acc, s->t, y_t);
                return {P}_OK;
            }}
            """)

    def public_api(self) -> str:
        p, P = self.p, self.P
        need_scratch = "" if self.streaming else " || !scratch"
        tok_one = f"\n    if ({p}_check_tokens(x, T)) return {P}_ERR_TOKEN;" if self.tokens else ""
        tok_all = (f"\n    for (b = 0; b < B; b++)\n        if ({p}_check_tokens(x + b * T_max, lengths[b])) "
                   f"return {P}_ERR_TOKEN;") if self.tokens else ""
        ys = f"T_max * {P}_OUTPUT_SIZE" if self.plan.per_step else f"{P}_OUTPUT_SIZE"
        tail = ""
        if self.plan.per_step:
            tail = (f"\n        for (k = lengths[b] * {P}_OUTPUT_SIZE; k < T_max * {P}_OUTPUT_SIZE; k++) "
                    f"y[b * {ys} + k] = 0;")
        return textwrap.dedent(f"""\
            int {p}_score_from(const {p}_input *x, int64_t T, const {p}_real *h0, const {p}_real *c0,
                {p}_real *y, {p}_real *hn, {p}_real *cn, {p}_real *scratch)
            {{
                if (!x || !y || T < 1{need_scratch}) return {P}_ERR_ARGUMENT;{tok_one}
                return {p}_seq(x, T, h0, c0, y, hn, cn, scratch);
            }}

            int {p}_score(const {p}_input *x, int64_t T, {p}_real *y, {p}_real *scratch)
            {{
                return {p}_score_from(x, T, NULL, NULL, y, NULL, NULL, scratch);
            }}

            int {p}_score_batch(const {p}_input *x, const int64_t *lengths, int64_t B, int64_t T_max,
                {p}_real *y, {p}_real *scratch)
            {{
                int64_t b, k;
                (void)k;
                if (B < 0) return {P}_ERR_ARGUMENT;
                if (B == 0) return {P}_OK;
                if (!x || !lengths || !y || T_max < 1{need_scratch}) return {P}_ERR_ARGUMENT;
                for (b = 0; b < B; b++)
                    if (lengths[b] < 1 || lengths[b] > T_max) return {P}_ERR_ARGUMENT;{tok_all}
                for (b = 0; b < B; b++) {{
                    {p}_seq(x + b * T_max * {P}_INPUT_SIZE, lengths[b], NULL, NULL, y + b * {ys}, NULL, NULL, scratch);{tail}
                }}
                return {P}_OK;
            }}
            """)


def _indent(lines, n: int = 4) -> str:
    return "\n".join(" " * n + ln for ln in "\n".join(lines).split("\n"))


def _describe_step(s) -> str:
    """``label: kind field=value ...`` from the step's bundle form (a recurrent module's own fields inline)."""
    d = s.to_dict()
    fields = {**{k: v for k, v in d.items() if k not in ("kind", "name", "rnn")}, **(d.get("rnn") or {})}
    fields.pop("prefix", None)
    return f"{s.label()}: {s.kind} {' '.join(f'{k}={v}' for k, v in fields.items())}".rstrip()


def write(model: Model, out_dir, prefix: str = "model", dtype: str | None = None) -> CSource:
    """Generate and write ``out_dir/prefix.h`` and ``out_dir/prefix.c`` (each written whole, then renamed)."""
    import os
    from pathlib import Path

    src = generate(model, prefix, dtype)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in ((f"{prefix}.h", src.header), (f"{prefix}.c", src.source)):
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out_dir / name)
    return src
