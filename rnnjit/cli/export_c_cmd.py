"""``rnnjit export-c``: the bundle's whole chain as one dependency-free C99 file (NAME.h + NAME.c)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rnnjit.cli._common import EXIT_FAILED, choices, fail

CDtype = choices("CDtype", ("float32", "float64"))


def c_check_line(model, src_dir: Path) -> tuple[str, bool]:
    """Compile the C in ``src_dir``, score the bundle's reference input with it: the report line and whether it passed."""
    from rnnjit.export.c_check import check_c, find_cc

    if find_cc() is None:
        return "c: NOT RUN: no C compiler found (looked at $CC, cc, gcc, clang); install one or set CC", False
    try:
        r = check_c(model, src_dir)
    except RuntimeError as exc:  # the compiler refused the file: its first diagnostic
        first = next((ln for ln in str(exc).splitlines()[1:] if "error" in ln), str(exc).splitlines()[0])
        return f"c: FAILED to compile: {first.strip()}", False
    status = "ok" if r["ok"] else "MISMATCH"
    return (f"c: {status}, max abs error {r['max_abs_error']:.2e} (tolerance {r['tolerance']:.1e}) on "
            f"{r['n_sequences']} sequences, {r['prefix']}.c ({r['dtype']}) compiled with {r['compiler']} -O2"), r["ok"]


def export_c_command(
    bundle: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, metavar="BUNDLE", help="A bundle (.npz).")
    ],
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", metavar="DIR", help="Directory to write NAME.h and NAME.c into. [required]"),
    ] = None,
    prefix: Annotated[
        str, typer.Option(metavar="NAME", help="File name and the prefix of every C symbol (macros in capitals).")
    ] = "model",
    dtype: Annotated[
        Optional[CDtype],
        typer.Option(metavar="float32|float64", help="The C code's real type (default: the bundle's dtype)."),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Then compile it with the system C compiler and score the bundle's "
                           "reference input with it (as `rnnjit verify --c DIR`).")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace NAME.h and NAME.c if they exist.")] = False,
) -> None:
    """Write the bundle's whole chain as C99: NAME.h (sizes, state struct, entry points) and NAME.c (weights, code).

    No heap allocation, no mutable globals, nothing beyond <math.h>, <stddef.h>,
    <stdint.h> and <string.h>. Compile with any C99 compiler, e.g.
    cc -std=c99 -O3 -c DIR/NAME.c, and link with -lm.
    """
    import rnnjit
    from rnnjit.export.c import check_prefix, write

    if output is None:
        raise fail("missing option '--output' / '-o': the directory to write NAME.h and NAME.c into, "
                   f"e.g. rnnjit export-c {bundle} -o scorer/")
    problem = check_prefix(prefix)
    if problem:
        raise fail(f"--prefix {prefix!r} must be {problem}, e.g. --prefix my_model")
    if output.exists() and not output.is_dir():
        raise fail(f"output {str(output)!r} is a file; -o takes a directory (NAME.h and NAME.c are written into it)")
    targets = [output / f"{prefix}.h", output / f"{prefix}.c"]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not overwrite:
        raise fail(f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; pass --overwrite "
                   "to replace them, or choose another --prefix or directory")
    model = rnnjit.load(bundle)
    src = write(model, output, prefix, dtype.value if dtype is not None else None)
    typer.echo(
        f"wrote {targets[0]} and {targets[1]}: {model.describe()}, output {model.output}, "
        f"{src.n_values} weight values, {dtype.value if dtype is not None else model.dtype.name}; "
        f"compile with: cc -std=c99 -O3 -c {targets[1]} (add -march=native for this machine's vector unit; link with -lm)"
    )
    if check:
        line, ok = c_check_line(model, output)
        typer.echo(line)
        if not ok:
            raise fail("the generated C does not reproduce the bundle's reference outputs", EXIT_FAILED)
