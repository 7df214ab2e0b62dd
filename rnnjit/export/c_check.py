"""Compile a generated C scorer with the system compiler and run it: `rnnjit verify --c` and the tests.

A small driver program (not part of the export: it reads stdin with stdio
and may allocate) includes ``NAME.c`` (one or several scorers in one
program, picked by ``argv[1]``) and answers one request:

``int64 op, B, T_max, has_h0, has_c0``, then ``lengths`` (B int64), ``x``
(B*T_max*INPUT_SIZE inputs: reals, or int64 token ids), then h0 (B*H_SIZE
reals) and c0 (B*C_SIZE reals) when given. It writes ``int64 rc`` and:

- op 1, ``NAME_score_batch``: y (B * Y_SIZE(T_max));
- op 2, ``NAME_score_from`` on each sequence alone: y (B * Y_SIZE(T_max),
  zero past each length), hn (B*H_SIZE), cn (B*C_SIZE);
- op 3, streaming (``NAME_reset_from`` then ``NAME_step`` per step): every
  step's y_t (B, T_max, OUTPUT_SIZE), zero past each length, then hn, cn.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from rnnjit.errors import InputError

STRICT = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")

DRIVER_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *take(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p || fread(p, size, n, stdin) != n) { fprintf(stderr, "driver: short input\n"); exit(3); }
    return p;
}
"""

DRIVER = r"""
#include "P.c"

static int P_serve(void)
{
    int64_t hdr[5], op, B, T, b, t, rc = 0;
    int64_t *len;
    P_input *x;
    P_real *h0 = NULL, *c0 = NULL, *y, *hn, *cn, *scratch;
    size_t ys;
    if (fread(hdr, sizeof hdr[0], 5, stdin) != 5) { fprintf(stderr, "driver: no header\n"); return 3; }
    op = hdr[0]; B = hdr[1]; T = hdr[2];
    len = take((size_t)B, sizeof *len);
    x = take((size_t)(B * T * P_INPUT_SIZE), sizeof *x);
    if (hdr[3]) h0 = take((size_t)(B * P_H_SIZE), sizeof *h0);
    if (hdr[4]) c0 = take((size_t)(B * P_C_SIZE), sizeof *c0);
    ys = op == 3 ? (size_t)T * P_OUTPUT_SIZE : P_Y_SIZE(T);
    y = calloc((size_t)B * ys + 1, sizeof *y);
    hn = calloc((size_t)B * P_H_SIZE + 1, sizeof *hn);
    cn = calloc((size_t)B * P_C_SIZE + 1, sizeof *cn);
    scratch = P_STREAMING ? NULL : malloc(P_SCRATCH_SIZE(T) * sizeof *scratch);
    if (op == 1) {
        rc = P_score_batch(x, len, B, T, y, scratch);
    } else if (op == 2) {
        for (b = 0; b < B && !rc; b++)
            rc = P_score_from(x + b * T * P_INPUT_SIZE, len[b], h0 ? h0 + b * P_H_SIZE : NULL,
                              c0 ? c0 + b * P_C_SIZE : NULL, y + (size_t)b * ys, hn + b * P_H_SIZE,
                              cn + b * P_C_SIZE, scratch);
    } else {
#if P_STREAMING
        P_state s;
        for (b = 0; b < B && !rc; b++) {
            rc = P_reset_from(&s, h0 ? h0 + b * P_H_SIZE : NULL, c0 ? c0 + b * P_C_SIZE : NULL);
            for (t = 0; t < len[b] && !rc; t++)
                rc = P_step(&s, x + (b * T + t) * P_INPUT_SIZE, y + (size_t)b * ys + t * P_OUTPUT_SIZE);
            if (!rc) rc = P_get_state(&s, hn + b * P_H_SIZE, cn + b * P_C_SIZE);
        }
#else
        (void)t;
        rc = -100;
#endif
    }
    fwrite(&rc, sizeof rc, 1, stdout);
    fwrite(y, sizeof *y, (size_t)B * ys, stdout);
    if (op != 1) {
        fwrite(hn, sizeof *hn, (size_t)B * P_H_SIZE, stdout);
        fwrite(cn, sizeof *cn, (size_t)B * P_C_SIZE, stdout);
    }
    free(len); free(x); free(h0); free(c0); free(y); free(hn); free(cn); free(scratch);
    return 0;
}
"""


def find_cc() -> str | None:
    """The C compiler: $CC, else cc, gcc or clang on PATH; None when there is none."""
    env = os.environ.get("CC")
    if env and shutil.which(env.split()[0]):
        return env
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return name
    return None


class CDriver:
    """A generated scorer compiled with the driver; `run` sends one request."""

    def __init__(self, exe: Path, index: int, prefix: str, header: str):
        self.exe, self.index, self.prefix = exe, index, prefix
        P = prefix.upper()

        def define(name):
            m = re.search(rf"#define {P}_{name} (\d+)", header)
            return int(m.group(1)) if m else 0

        self.dtype = np.float32 if re.search(rf"typedef float {prefix}_real;", header) else np.float64
        self.I, self.O = define("INPUT_SIZE"), define("OUTPUT_SIZE")
        self.h_size, self.c_size = define("H_SIZE"), define("C_SIZE")
        self.per_step, self.tokens = bool(define("PER_STEP")), bool(define("TAKES_TOKENS"))
        self.streaming = bool(define("STREAMING"))

    def run(self, op: int, x, lengths, h0=None, c0=None, env=None):
        """Returns ``(rc, y, hn, cn)``; y is (B, O) or (B, T, O) (op 3: always (B, T, O))."""
        lengths = np.asarray(lengths, np.int64)
        B = len(lengths)
        x = np.asarray(x, np.int64 if self.tokens else self.dtype)
        T = x.shape[1]
        hdr = np.array([op, B, T, h0 is not None, c0 is not None], np.int64)
        parts = [hdr.tobytes(), lengths.tobytes(), np.ascontiguousarray(x).tobytes()]
        for s in (h0, c0):
            if s is not None:
                parts.append(np.ascontiguousarray(s, self.dtype).tobytes())
        r = subprocess.run([str(self.exe), str(self.index)], input=b"".join(parts), capture_output=True, env=env, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"{self.exe.name} exited with {r.returncode}: {r.stderr.decode(errors='replace')}")
        out = r.stdout
        rc = int(np.frombuffer(out[:8], np.int64)[0])
        vals = np.frombuffer(out[8:], self.dtype)
        steps = op == 3 or self.per_step
        ny = B * (T * self.O if steps else self.O)
        y = vals[:ny].reshape((B, T, self.O) if steps else (B, self.O))
        if op == 1:
            return rc, y, None, None
        hn = vals[ny : ny + B * self.h_size].reshape(B, self.h_size)
        cn = vals[ny + B * self.h_size :].reshape(B, self.c_size)
        return rc, y, hn, cn


def compile_driver(src_dir, prefixes, flags=(), build_dir=None, cc: str | None = None):
    """Compile the generated scorers ``src_dir/NAME.c`` with the driver into one program.

    ``prefixes``: one NAME (returns its `CDriver`) or a list (returns a list):
    several scorers share one translation unit and one compiler run, which is
    what keeps a test grid of hundreds of small models quick to build. Always
    ``-std=c99 -Wall -Wextra -Werror -pedantic``, then ``flags``.
    """
    cc = cc or find_cc()
    if cc is None:
        raise InputError("no C compiler found (looked at $CC, cc, gcc, clang); install one or set CC")
    one = isinstance(prefixes, str)
    prefixes = [prefixes] if one else list(prefixes)
    src_dir = Path(src_dir)
    build = Path(build_dir or tempfile.mkdtemp(prefix="rnnjit-c-"))
    build.mkdir(parents=True, exist_ok=True)
    parts = [DRIVER_MAIN]
    for prefix in prefixes:
        text = re.sub(r"\bP_([A-Z])", prefix.upper() + r"_\1", DRIVER)  # macros in capitals
        parts.append(re.sub(r"\bP_", f"{prefix}_", text).replace('"P.c"', f'"{prefix}.c"'))
    cases = "".join(f"    case {k}: return {p}_serve();\n" for k, p in enumerate(prefixes))
    parts.append(f"int main(int argc, char **argv)\n{{\n    switch (argc > 1 ? atoi(argv[1]) : 0) {{\n{cases}"
                 "    default: return 4;\n    }\n}\n")
    drv = build / "driver.c"
    drv.write_text("\n".join(parts))
    exe = build / "driver"
    cmd = [*cc.split(), *STRICT, *flags, "-I", str(src_dir), "-o", str(exe), str(drv), "-lm"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr}")
    drivers = [CDriver(exe, k, p, (src_dir / f"{p}.h").read_text()) for k, p in enumerate(prefixes)]
    return drivers[0] if one else drivers


def find_prefix(src_dir) -> str:
    """The prefix of the one generated pair in ``src_dir`` (NAME.h with NAME.c)."""
    src_dir = Path(src_dir)
    names = sorted(h.stem for h in src_dir.glob("*.h") if (src_dir / f"{h.stem}.c").is_file()
                   and "rnnjit export-c" in h.read_text(errors="replace")[:400])
    if len(names) != 1:
        found = ", ".join(names) or "none"
        raise InputError(
            f"{src_dir} holds {len(names)} generated C scorers ({found}); expected exactly one NAME.h with NAME.c "
            "written by `rnnjit export-c`"
        )
    return names[0]


def check_c(model, src_dir, flags=("-O2",)) -> dict:
    """Compile the C in ``src_dir`` and score the bundle's reference input with it; compare with the stored outputs.

    Returns ``ok``, ``max_abs_error``, ``tolerance``, ``n_sequences``, ``prefix``, ``compiler``, ``dtype``.
    """
    from rnnjit.verify import tolerance

    ref = model.config.get("reference")
    if not ref:
        raise InputError(
            "this bundle stores no reference input (converted with --no-reference); re-convert it to check the C"
        )
    prefix = find_prefix(src_dir)
    with tempfile.TemporaryDirectory(prefix="rnnjit-c-") as build:
        drv = compile_driver(src_dir, prefix, flags, build)
        x = np.asarray(ref["x"], np.int64 if model.takes_tokens else np.float64)
        lengths = np.asarray(ref["lengths"], np.int64)
        expected = np.asarray(ref["y"], np.float64)
        rc, y, _, _ = drv.run(1, x, lengths)
    if rc != 0:
        raise InputError(f"the C scorer returned error code {rc} on the bundle's reference input")
    if y.shape != expected.shape:
        raise InputError(
            f"the C scorer gives outputs of shape {y.shape} but the bundle's reference has {expected.shape}; "
            "was it exported from this bundle?"
        )
    err = float(np.max(np.abs(y.astype(np.float64) - expected))) if y.size else 0.0
    tol = tolerance(np.dtype(drv.dtype), float(np.max(np.abs(expected))) if expected.size else 1.0)
    if drv.dtype == np.float64 and model.dtype == np.float32:
        tol = tolerance(np.float32, float(np.max(np.abs(expected))) if expected.size else 1.0)
    return {"ok": err <= tol, "max_abs_error": err, "tolerance": tol, "n_sequences": int(len(lengths)),
            "prefix": prefix, "compiler": find_cc(), "dtype": np.dtype(drv.dtype).name}
