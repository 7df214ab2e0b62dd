"""``rnnjit verify``: does the bundle still compute what it computed at convert time?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rnnjit.assumptions import labels as assumption_labels
from rnnjit.cli._common import (
    ENGINE_HELP, EXIT_FAILED, PRECISION_HELP, PRECISION_METAVAR, Engine, Precision, fail, metavar, pick_engine,
    pick_precision,
)
from rnnjit.engines import ENGINES


def verify_command(
    bundle: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, metavar="BUNDLE", help="A bundle (.npz).")
    ],
    against: Annotated[
        Optional[Path],
        typer.Option(exists=True, dir_okay=False, readable=True, metavar="FILE",
                     help="The original weight file: compare weights (torch-free), and outputs with torch if installed."),
    ] = None,
    engine: Annotated[Optional[Engine], typer.Option(metavar=metavar(ENGINES), help=ENGINE_HELP)] = None,
    precision: Annotated[
        Optional[Precision],
        typer.Option(metavar=PRECISION_METAVAR, help="Also score at this precision and print its distance from "
                     "float32. "
                     + PRECISION_HELP),
    ] = None,
    input: Annotated[
        Optional[Path],
        typer.Option("--input", exists=True, dir_okay=False, readable=True, metavar="SAMPLE.parquet",
                     help="With --precision: also compare on the first --rows sequences of this list-layout file."),
    ] = None,
    rows: Annotated[int, typer.Option(min=1, metavar="N", help="Sequences of --input to compare on.")] = 1000,
    sequence_column: Annotated[
        str, typer.Option(metavar="C", help="--input's column of sequences (list layout).")
    ] = "features",
    c_dir: Annotated[
        Optional[Path],
        typer.Option("--c", exists=True, file_okay=False, metavar="DIR",
                     help="A directory written by `rnnjit export-c`: compile it with the system C compiler and "
                     "score the reference input with it."),
    ] = None,
) -> None:
    """Recompute the reference input stored in the bundle and compare with the stored outputs.

    With --against, also re-read the weight file without torch and compare every
    tensor: each must be used by the bundle's chain or dropped on purpose with
    convert --ignore. When torch is importable, run torch's own modules for the
    whole chain on the reference input and compare outputs. With --c, compile
    the generated C and compare its outputs on the reference input. Exit code 0
    when everything matches, 1 when a check fails (or a check asked for could not run).

    With --precision bf16 or int8, also score the reference input (and the first
    --rows sequences of --input) at float32 and at that precision, and print the max and
    mean abs difference from float32, and for a classifier head (sigmoid,
    softmax or log_softmax last) the fraction of rows whose class changes.
    """
    import rnnjit
    from rnnjit.verify import compare_weights, verify_reference

    if against is not None:  # before any work: a device or FIFO would read without end or block
        from rnnjit.errors import WeightFileError
        from rnnjit.files import regular_file

        regular_file(against, "weight file to compare with (--against)", WeightFileError)
    model = rnnjit.load(bundle)
    eng = pick_engine(engine)  # numba that cannot load: one warning line (or exit 2 with --engine numba)
    prec = pick_precision(precision, eng)
    if input is not None and precision is None:
        raise rnnjit.InputError("--input is the sample --precision compares on; add --precision bf16, or drop --input")
    failures = []
    has_ref = bool(model.config.get("reference"))
    if has_ref:
        r = verify_reference(model, engine=eng)
        status = "ok" if r["ok"] else "MISMATCH"
        typer.echo(
            f"reference: {status}, max abs error {r['max_abs_error']:.2e} (tolerance {r['tolerance']:.1e}) "
            f"on {r['n_sequences']} sequences, engine {r['engine']}"
        )
        if not r["ok"]:
            failures.append("reference outputs differ")
    elif against is None and input is None:
        raise rnnjit.BundleError(
            "this bundle stores no reference input (converted with --no-reference); "
            "re-convert it, or pass --against model.pth"
        )
    else:
        typer.echo("reference: none stored in this bundle, skipped")
    if against is not None:
        w = compare_weights(model, against)
        if w["ok"]:
            typer.echo(f"weights: ok, {w['n_keys']} tensors identical to {against.name}")
        else:
            problems = []
            for key in ("unused", "missing", "mismatched", "different"):
                if w[key]:
                    problems.append(f"{key}: {', '.join(w[key][:5])}{' ...' if len(w[key]) > 5 else ''}")
            typer.echo(f"weights: MISMATCH ({'; '.join(problems)}), max abs error {w['max_abs_error']:.2e}")
            failures.append(f"weights differ from {against.name}")
        from rnnjit.cli._torch_check import torch_compare

        t = torch_compare(model, against, engine=eng)
        if t is None:
            typer.echo("torch: not installed, not run (pip install torch to compare with PyTorch's own modules)")
        elif t.get("skipped"):  # asked for with --against and torch is there: a check that did not run fails
            typer.echo(f"torch: NOT RUN ({t['skipped']})")
            failures.append("the torch check could not run")
        else:
            status = "ok" if t["ok"] else "MISMATCH"
            # torch runs the chain the bundle describes, so what convert assumed is not checked here
            labels = assumption_labels(model.config)
            tail = ""
            if t["ok"] and labels is None:
                status = "ok for the model as converted"
                tail = "; an older bundle: what convert assumed is not recorded"
            elif t["ok"] and labels:
                status, tail = "ok for the model as converted", f"; not checkable from weights: {', '.join(labels)}"
            typer.echo(
                f"torch: {status}, max abs error {t['max_abs_error']:.2e} (tolerance {t['tolerance']:.1e}) "
                f"on {t['n_sequences']} sequences, torch {t['torch_version']}{tail}"
            )
            if not t["ok"]:
                failures.append("outputs differ from torch")
    if precision is not None:
        _print_precision_cost(model, prec, eng, input, rows, sequence_column)
    if c_dir is not None:
        from rnnjit.cli.export_c_cmd import c_check_line

        line, ok = c_check_line(model, c_dir)
        typer.echo(line)
        if not ok:
            failures.append("the generated C differs or did not run")
    if failures:
        raise fail(f"verification failed: {'; '.join(failures)}", EXIT_FAILED)


def _print_precision_cost(model, precision: str, engine: str, sample, rows: int, sequence_column: str) -> None:
    """One line per input compared (the reference input, the sample): distance of ``precision`` from float32."""
    from rnnjit.scoring import ScoreOptions
    from rnnjit.verify import precision_cost, reference_input, sample_cost

    def line(where: str, r) -> str:
        text = (f"precision {precision}: {where}: max abs diff {r['max_abs_diff']:.2e}, mean abs diff "
                f"{r['mean_abs_diff']:.2e} from float32")
        if r["changed"] is not None:
            text += f"; {r['changed']:.2%} of rows change class ({r['rule']})"
        return text

    ref = reference_input(model)
    if ref is not None:
        r = precision_cost(model, precision, *ref, engine=engine)
        typer.echo(line(f"reference input ({r['n_rows']} rows)", r))
    if sample is not None:
        options = ScoreOptions(features_column=sequence_column, engine=engine)
        r = sample_cost(model, sample, precision, rows, options)
        typer.echo(line(f"{sample.name} (first {r['n_rows']:,} rows)", r))
