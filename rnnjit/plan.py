"""What to read and what comes out: the column plan every runner shares.

`plan_scoring` checks the input schema against the model and the options once,
before any row is read, and says which columns to read, what the batches handed
to `rnnjit.scoring.score_batch` look like, and the output schema. The local
runner (`rnnjit.local`) and the Spark runner use the same plan, so the same
options give the same rows on one machine and on a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

import pyarrow as pa

from rnnjit.errors import InputError
from rnnjit.io.long_layout import LongLayout, group_long, resolve_long_layout
from rnnjit.scoring import ScoreOptions, output_schema, pass_through_columns

LAYOUTS = ("list", "long")


@dataclass(frozen=True)
class ScorePlan:
    """The columns to read, the options `score_batch` runs with, and the output schema.

    Attributes
    ----------
    layout : "list" or "long".
    columns : input columns to read, in order.
    options : the options as `score_batch` must see them (long layout: the
        grouped ``features`` column, the id columns passed through).
    list_schema : schema of the list-layout batches `score_batch` receives.
    output_schema : schema of every batch `score_batch` returns.
    long : the long-layout column roles, or None for the list layout.
    notes : what the user should know about this run (guessed columns, a state
        column that looks misnamed); the CLI prints them and the summary keeps them.
    """

    layout: str
    columns: tuple[str, ...]
    options: ScoreOptions
    list_schema: pa.Schema
    output_schema: pa.Schema
    long: LongLayout | None = None
    notes: tuple[str, ...] = ()

    def sequences(self, batches: Iterable[pa.RecordBatch], dtype, locate=None) -> Iterator[tuple[pa.RecordBatch, int]]:
        """``(list-layout batch, input rows consumed)`` from batches of `columns`.

        ``locate(n) -> (file, row in file)`` names input rows in long-layout messages.
        """
        if self.long is not None:
            yield from group_long(iter(batches), self.long, dtype, locate, memory_limit=self.options.memory_limit)
        else:
            for b in batches:
                yield b, b.num_rows


def plan_scoring(
    model,
    schema: pa.Schema,
    options: ScoreOptions,
    *,
    layout: str = "list",
    order_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    explicit_state: Sequence[str] = (),
) -> ScorePlan:
    """Check ``schema`` against the model and options; see `ScorePlan`.

    ``explicit_state``: state column names the user gave (``h0_column``):
    each must exist, where the defaults ``h0``/``c0`` are used only when present.

    Raises `InputError` naming the missing or mistyped column and the fix.
    """
    if layout not in LAYOUTS:
        raise InputError(f"layout {layout!r} is not known; expected one of {', '.join(LAYOUTS)}")
    names = list(schema.names)
    notes = list(_state_checks(model, names, options, explicit_state))
    if layout == "long":
        lay = resolve_long_layout(schema, model, options.id_columns, order_column, feature_columns, options)
        options = replace(
            options, features_column="features", pass_through=tuple(lay.id_columns), row_label="sequence"
        )
        list_schema = pa.schema(
            [schema.field(c) for c in lay.id_columns]
            + [pa.field("features", pa.list_(pa.list_(pa.float32(), len(lay.feature_columns))))]
            + [schema.field(c) for c in (lay.h0_column, lay.c0_column) if c]
        )
        columns = tuple(lay.columns)
        if lay.note:
            notes.append(lay.note)
    else:
        lay = None
        if options.features_column not in names:
            raise InputError(
                f"column {options.features_column!r} not found; the input has columns {', '.join(names)}; "
                "name the sequence column with features_column, or use layout='long' for one row per step"
            )
        try:
            keep = pass_through_columns(schema, options)
        except InputError as exc:
            if not notes:
                raise
            raise InputError(f"{exc}; {notes[0].removeprefix('warning: ')}") from None
        cols = [*keep, options.features_column]
        cols += [c for c in (options.h0_column, options.c0_column) if c in names]
        columns = tuple(dict.fromkeys(cols))
        list_schema = pa.schema([schema.field(c) for c in columns])
    return ScorePlan(layout, columns, options, list_schema, output_schema(model, list_schema, options), lay,
                     tuple(notes))


def _state_checks(model, names: list[str], options: ScoreOptions, explicit: Sequence[str]) -> Iterator[str]:
    """Refuse what cannot carry state; note yesterday's ``hn``/``cn`` joined back without a rename."""
    for c in explicit:
        if c not in names:
            opt = "c0_column" if c == options.c0_column and c != options.h0_column else "h0_column"
            raise InputError(
                f"state column {c!r} ({opt}) not found; the input has columns {', '.join(names)}; "
                f"name an existing column, or drop {opt} to start from zeros"
            )
    if options.emit_state and any(r.bidirectional for r in model.rnns):  # any module, not only the first
        raise InputError(
            "emit_state on a bidirectional model: its reverse direction reads each sequence from the end, "
            "so a state carried into tomorrow's chunk cannot continue it; score whole sequences without emit_state"
        )
    if options.emit_state and model.pooling not in (None, "last"):
        raise InputError(
            f"emit_state on a model that pools over time (pool:{model.pooling}): each score would cover only "
            "the steps of its own chunk, so chunks carried on with the state do not add up to the whole "
            "sequence's score; score whole sequences without emit_state"
        )
    pairs = [("hn", options.h0_column, "h0_column")]
    if model.has_cell_state:
        pairs.append(("cn", options.c0_column, "c0_column"))
    for out, state, keyword in pairs:
        if out in names and state not in names:
            yield (
                f"warning: the input has a {out!r} column but no {state!r}: scoring starts from a zero state; "
                f"if {out!r} is the previous run's final state, pass {keyword}={out!r} (or rename it to {state!r})"
            )
