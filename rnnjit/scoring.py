"""Score one Arrow batch: the single scoring function the CLI and Spark call.

``score_batch(model, batch, options)`` takes a list-layout RecordBatch (or
Table) and returns a RecordBatch with the pass-through columns, then ``score``
(and ``hn``/``cn`` with ``emit_state``). It is stateless, so it can run inside
``DataFrame.mapInArrow``::

    options = ScoreOptions(pass_through=("id",))

    def score_partition(batches):
        model = rnnjit.load("bundle.npz")
        yield from score_batches(model, batches, options)

    schema = output_schema(model, pa.schema(df.schema ...), options)  # the result schema

Row outcomes:

- a sequence with at least one step and finite values gets a score;
- a zero-length sequence gets a null score (counted as ``empty``, never an error);
- a null row, a null step or value, NaN or inf is an error naming the row, or
  with ``on_invalid="skip"`` a null score (counted as ``invalid``); for a
  model that starts with an embedding, so is a null, fractional or
  out-of-range token id.

State columns with several recurrent modules: ``h0``/``hn`` hold every
module's h in chain order, each flattened row-major from its PyTorch
(L*D, H_out); ``c0``/``cn`` likewise for the LSTM modules only. With one
module this is PyTorch's (L*D, H_out) flattened, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rnnjit import memory

from rnnjit.io.arrow import (
    decode_features,
    decode_state,
    encode_scores,
    encode_state,
    rows_to_state,
    score_type,
    state_to_rows,
    state_type,
)
from rnnjit.errors import InputError
from rnnjit.io.tokens import decode_tokens
from rnnjit.spec import OUTPUT_MODES, PRECISIONS

ON_INVALID = ("error", "skip")
OUTPUT_COLUMNS = ("score", "hn", "cn")


@dataclass(frozen=True)
class ScoreOptions:
    """How to read a batch and what to write.

    Attributes
    ----------
    features_column : list-layout column with the sequences.
    pass_through : columns copied to the output, in order; None copies every
        column except the features and state columns.
    id_columns : columns that name a row in error messages (default: the
        pass-through columns called ``id``, if any).
    output_mode : "last" | "final" | "all"; None uses the bundle's mode.
    emit_state : also write ``hn`` (and ``cn`` for LSTM) per row.
    on_invalid : "error" (default) or "skip" (null score, counted).
    h0_column, c0_column : optional initial-state columns, used when present.
    engine, threads : passed to `Model.predict`.
    precision : what the recurrent products compute in (`rnnjit.spec.PRECISIONS`); None: the model's own
        (``rnnjit.load(..., precision=)``). The output schema's metadata names the one used.
    row_label : what messages call a row ("row", or "sequence" for grouped long input).
    memory_limit : bytes (or "4G") the padded arrays of one batch may take; None:
        `rnnjit.memory.limit()` (``$RNNJIT_MEMORY_LIMIT`` or 1 GiB).
    """

    features_column: str = "features"
    pass_through: tuple[str, ...] | None = None
    id_columns: tuple[str, ...] = ()
    output_mode: str | None = None
    emit_state: bool = False
    on_invalid: str = "error"
    h0_column: str = "h0"
    c0_column: str = "c0"
    engine: str | None = None
    threads: int | None = None
    precision: str | None = None
    row_label: str = "row"
    memory_limit: int | str | None = None

    def __post_init__(self):
        if self.on_invalid not in ON_INVALID:
            raise InputError(f"on_invalid={self.on_invalid!r} is not known; expected one of {', '.join(ON_INVALID)}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise InputError(f"precision {self.precision!r} is not known; expected one of {', '.join(PRECISIONS)}")
        if self.output_mode is not None and self.output_mode not in OUTPUT_MODES:
            raise InputError(
                f"output mode {self.output_mode!r} is not known; expected one of {', '.join(OUTPUT_MODES)}"
            )


@dataclass
class ScoreStats:
    """Counters accumulated over batches (rows = sequences)."""

    rows: int = 0
    scored: int = 0
    empty: int = 0
    invalid: int = 0
    first_invalid: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunOptions:
    """How a runner reads and writes a dataset, around the per-batch `ScoreOptions`.

    One object for `rnnjit.local.score_dataset`, `rnnjit.spark.score_files` and
    `rnnjit.spark.score_dataframe`, built once at the edge (the CLI) and
    passed down whole. Each runner also takes any field below (or of
    `ScoreOptions`) as a keyword, which `build` folds into the object.

    Attributes
    ----------
    score : ScoreOptions
    layout : "list" (one row per sequence) or "long" (one row per step).
    order_column, feature_columns : long layout only.
    explicit_state : state column names the user named; each must exist
        (``score.h0_column``/``c0_column`` otherwise are used only when present).
    batch_rows : rows read per batch; bounds memory.
    fmt : "parquet" | "csv" | "jsonl"; default from the output's extension.
    output_layout : "file" | "dataset"; default from the output's name.
    overwrite : replace an existing output (a dataset directory: hold this run's output only).
    resume : dataset output: redo only the input files without a committed, unchanged output.
    """

    score: ScoreOptions = field(default_factory=ScoreOptions)
    layout: str = "list"
    order_column: str | None = None
    feature_columns: tuple[str, ...] | None = None
    explicit_state: tuple[str, ...] = ()
    batch_rows: int = 4096
    fmt: str | None = None
    output_layout: str | None = None
    overwrite: bool = False
    resume: bool = False

    def __post_init__(self):
        if not isinstance(self.batch_rows, (int, np.integer)) or isinstance(self.batch_rows, bool) \
                or self.batch_rows < 1:
            raise InputError(f"batch_rows must be a positive integer, got {self.batch_rows!r}")
        if self.feature_columns is not None:
            object.__setattr__(self, "feature_columns", tuple(self.feature_columns))
        object.__setattr__(self, "explicit_state", tuple(self.explicit_state))

    @classmethod
    def build(cls, options: RunOptions | ScoreOptions | None = None, **given) -> RunOptions:
        """``options`` (a `RunOptions`, a `ScoreOptions` for its ``score``, or None) with the fields ``given``.

        Raises `TypeError` for a keyword that is neither a `RunOptions` nor a `ScoreOptions` field.
        """
        run = options if isinstance(options, RunOptions) else cls(score=options or ScoreOptions())
        score_names = {f.name for f in fields(ScoreOptions)}
        run_names = {f.name for f in fields(cls)} - {"score"}
        unknown = sorted(set(given) - score_names - run_names)
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {', '.join(unknown)}; expected fields of RunOptions "
                            "or ScoreOptions")
        score = {k: v for k, v in given.items() if k in score_names}
        if score:
            run = replace(run, score=replace(run.score, **score))
        rest = {k: v for k, v in given.items() if k in run_names}
        return replace(run, **rest) if rest else run


def pass_through_columns(schema: pa.Schema, options: ScoreOptions) -> list[str]:
    """The input columns copied to the output, validated against ``schema``."""
    names = schema.names
    if options.pass_through is None:
        skip = {options.features_column, options.h0_column, options.c0_column}
        cols = [n for n in names if n not in skip]
    else:
        cols = list(options.pass_through)
        for c in cols:
            if c not in names:
                raise InputError(
                    f"column {c!r} was asked for but the input has columns {', '.join(names)}; "
                    "check id_columns"
                )
    written = OUTPUT_COLUMNS if options.emit_state else ("score",)  # hn/cn pass through unless this run writes them
    clash = [c for c in cols if c in written]
    if clash:
        by = "the score column" if clash[0] == "score" else "the state column emit_state writes"
        raise InputError(
            f"input column {clash[0]!r} would be overwritten by {by} of the same name; "
            "rename it, or list the columns to keep with id_columns"
        )
    return cols


PRECISION_KEY = b"rnnjit.precision"
"""The output schema's metadata key naming the precision the scores were computed at."""


def output_schema(model, schema: pa.Schema, options: ScoreOptions) -> pa.Schema:
    """Schema of every batch `score_batch` returns for input ``schema`` (metadata: `PRECISION_KEY`)."""
    mode = options.output_mode or model.output
    fields = [schema.field(c) for c in pass_through_columns(schema, options)]
    fields.append(pa.field("score", score_type(model.output_dim, _shape_mode(model, mode))))
    if options.emit_state:
        fields.append(pa.field("hn", state_type()))
        if model.has_cell_state:
            fields.append(pa.field("cn", state_type()))
    return pa.schema(fields, metadata={PRECISION_KEY: (options.precision or model.precision).encode()})


def _shape_mode(model, mode: str) -> str:
    """"all" when scores are per step, else "last" (a pooled model scores once per row)."""
    return "all" if model.returns_steps(mode) else "last"


def state_parts(model):
    """Per recurrent module: ``(ld, h_out, hidden or 0)``, in chain order (see the module docstring)."""
    return [(r.num_layers * r.num_directions, r.h_out, r.hidden_size if r.has_cell_state else 0)
            for r in model.rnns]


def _split_state(rows: np.ndarray, parts, which: int):
    """(B, W) flattened rows -> one PyTorch (L*D, B, H) array per module (None where ``which`` is 0)."""
    out, at = [], 0
    for p in parts:
        ld, width = p[0], p[which]
        if not width:
            out.append(None)
            continue
        out.append(rows_to_state(rows[:, at : at + ld * width], ld))
        at += ld * width
    return out


def _join_state(states) -> np.ndarray:
    return np.concatenate([state_to_rows(s) for s in states if s is not None], axis=1)


def score_batches(model, batches, options: ScoreOptions | None = None, *, stats: ScoreStats | None = None):
    """Score an iterable of list-layout batches lazily (the shape ``mapInArrow`` wants).

    Rows are numbered across batches in messages.
    """
    seen = 0
    for batch in batches:
        yield score_batch(model, batch, options, stats=stats, row_offset=seen)
        seen += batch.num_rows


def _row_namer(batch, id_columns, row_offset, row_label="row", index=None):
    def name(i: int) -> str:
        label = f"{row_label} {row_offset + (i if index is None else int(index[i]))}"
        if id_columns:
            ids = ", ".join(f"{c}={batch.column(c)[i].as_py()!r}" for c in id_columns)
            label += f" ({ids})"
        return label

    return name


def _check_columns(batch, options: ScoreOptions) -> None:
    names = batch.schema.names
    if options.features_column not in names:
        raise InputError(
            f"column {options.features_column!r} not found; the input has columns {', '.join(names)}; "
            "name the sequence column with features_column, or use layout='long' for one row per step"
        )


# A batch is scored as one padded (rows, longest, features) array. Past this many padding cells beyond
# twice the batch's real steps, or past the memory limit, its rows are scored in groups of similar length.
PAD_SLACK_CELLS = 1 << 20


def _step_bytes(model) -> int:
    """Bytes one padded step of one row costs: the input and, per recurrent module, its outputs (x2, both buffers)."""
    width = model.input_size + 2 * max(r.output_size for r in model.rnns) + model.output_dim
    return width * np.dtype(model.dtype).itemsize


def _row_lengths(col) -> np.ndarray | None:
    """Steps per row from the list offsets alone (nothing decoded); None for a column type without them."""
    try:
        lengths = pc.list_value_length(col).fill_null(0)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    return np.asarray(lengths.to_numpy(zero_copy_only=False), dtype=np.int64)


def length_groups(lengths: np.ndarray, step_bytes: int, limit: int) -> list[np.ndarray] | None:
    """Row groups whose padded arrays stay within twice their real steps and within ``limit``; None: one group.

    Rows are sorted by length (stably) and cut where the length crosses a power
    of two, so no row is padded to more than twice its own length; a group
    whose padded array would pass ``limit`` is cut into fewer rows. The
    caller restores the input order.
    """
    B = lengths.size
    if not B:
        return None
    T, real = int(lengths.max()), int(lengths.sum())
    if B * T <= 2 * real + PAD_SLACK_CELLS and B * T * step_bytes <= limit:
        return None
    order = np.argsort(lengths, kind="stable")
    bucket = np.floor(np.log2(np.maximum(lengths[order], 1))).astype(np.int64)
    groups = []
    for idx in np.split(order, np.flatnonzero(np.diff(bucket)) + 1):
        rows = max(1, limit // max(int(lengths[idx].max()) * step_bytes, 1))
        groups += [idx[i : i + rows] for i in range(0, idx.size, rows)]
    return groups


def score_batch(model, batch, options: ScoreOptions | None = None, *, stats: ScoreStats | None = None,
                row_offset: int = 0) -> pa.RecordBatch:
    """Score a list-layout Arrow batch.

    Parameters
    ----------
    model : rnnjit.Model
    batch : pa.RecordBatch or pa.Table
        One row per sequence; ``options.features_column`` holds (T_i, I) steps.
        Optional ``h0``/``c0`` columns hold each row's initial state, flattened
        row-major from PyTorch's (L*D, H_out) / (L*D, H); a null state is zeros.
    options : ScoreOptions, optional
    stats : ScoreStats, optional
        Counters to add this batch's row outcomes to.
    row_offset : int
        Number of rows before this batch, so messages give the input row.

    Returns
    -------
    pa.RecordBatch
        Pass-through columns, ``score`` (float32, fixed_size_list<float32>[O], or
        a list per step for "all"), and ``hn``/``cn`` (list<float32>) with emit_state.
    """
    options = options or ScoreOptions()
    model = model.with_precision(options.precision)
    if isinstance(batch, pa.Table):
        batch = batch.combine_chunks()
        batch = batch.to_batches()[0] if batch.num_rows else pa.RecordBatch.from_pylist([], schema=batch.schema)
    _check_columns(batch, options)
    lengths = _row_lengths(batch.column(options.features_column))
    limit = memory.limit(options.memory_limit)
    groups = None if lengths is None else length_groups(lengths, _step_bytes(model), limit)
    if groups is None:
        return _score_rows(model, batch, options, stats, row_offset, None, limit, lengths)
    # One long sequence among short ones: score rows of similar length together, then restore the input order.
    # A row's score does not depend on the other rows of its batch (the engines' batch-invariance), so the
    # bits are those of the unsplit batch.
    parts = [_score_rows(model, batch.take(pa.array(idx)), options, stats, row_offset, idx, limit, lengths[idx])
             for idx in groups]
    inverse = np.empty(batch.num_rows, dtype=np.int64)
    inverse[np.concatenate(groups)] = np.arange(batch.num_rows)
    joined = pa.Table.from_batches(parts).take(pa.array(inverse)).combine_chunks()
    return joined.to_batches()[0]


def _score_rows(model, batch, options: ScoreOptions, stats, row_offset: int, index, limit: int,
                lengths: np.ndarray | None) -> pa.RecordBatch:
    """`score_batch` for rows that are scored as one padded array; ``index`` maps them to the input batch's rows,
    ``lengths`` are their steps as `score_batch` read them (None for a column type without list offsets).

    Three stages: `_decode` (Arrow columns to arrays, every row checked), `_predict`
    (the model on the valid rows) and `_encode` (the output columns).
    """
    keep = pass_through_columns(batch.schema, options)
    id_cols = tuple(options.id_columns) or tuple(c for c in keep if c == "id")
    row_name = _row_namer(batch, id_cols, row_offset, options.row_label, index)
    if lengths is not None and lengths.size and int(lengths.max()) * batch.num_rows * _step_bytes(model) > limit:
        r = int(np.argmax(lengths))
        raise memory.InputMemoryError(
            f"{row_name(r)}: its {int(lengths[r])} steps would need "
            f"{memory.human(int(lengths[r]) * batch.num_rows * _step_bytes(model))} to score, past the memory limit "
            f"of {memory.human(limit)}; raise it with memory_limit (or {memory.ENV}), or split the sequence"
        )
    d = _decode(model, batch, options, row_name)
    shape_mode = _shape_mode(model, options.output_mode or model.output)
    y, hs, cs = _predict(model, d, options, shape_mode, row_name)
    out = _encode(model, batch, keep, d, y, hs, cs, options, shape_mode)
    if stats is not None:
        dec = d.dec
        stats.rows += batch.num_rows
        stats.scored += int(dec.rows.size)
        stats.empty += int(dec.empty.sum())
        stats.invalid += int(dec.invalid.sum())
        if dec.reasons and not stats.first_invalid:
            stats.first_invalid.append(next(iter(dec.reasons.values())))
    return out


@dataclass
class _Decoded:
    """One batch's inputs as arrays: the decoded sequences and the initial states (None where not given)."""

    dec: object  # rnnjit.io.arrow.Decoded (or the token decoder's): x, lengths, rows, empty, invalid, reasons
    parts: list  # state_parts(model): (L*D, H_out, H or 0) per recurrent module
    h0: np.ndarray | None = None
    h0_null: np.ndarray | None = None
    c0: np.ndarray | None = None
    c0_null: np.ndarray | None = None

    @property
    def h_width(self) -> int:
        return sum(ld * h for ld, h, _ in self.parts)

    @property
    def c_width(self) -> int:
        return sum(ld * c for ld, _, c in self.parts)


def _decode(model, batch, options: ScoreOptions, row_name) -> _Decoded:
    """Decode the sequence column and the state columns; an invalid row is an error unless on_invalid='skip'."""
    names = batch.schema.names
    col = batch.column(options.features_column)
    if model.takes_tokens:
        dec = decode_tokens(col, model.embedding.in_features, options.features_column, row_name)
    else:
        dec = decode_features(col, model.input_size, model.dtype, options.features_column, row_name)
    d = _Decoded(dec, state_parts(model))
    lds = [p[0] for p in d.parts]
    one = len(d.parts) == 1
    spec = model.spec
    if options.h0_column in names:
        d.h0, d.h0_null = decode_state(
            batch.column(options.h0_column), d.h_width, model.dtype, options.h0_column, row_name,
            f"= num_layers*num_directions ({lds[0]}) * h_out ({spec.h_out}), flattened row-major from PyTorch's "
            "(L*D, H_out)" if one else "= every recurrent module's (L*D, H_out) flattened row-major, in chain order",
        )
    if options.c0_column in names:
        if not d.c_width:
            raise InputError(
                f"the input has a {options.c0_column!r} column but a "
                f"{'/'.join(dict.fromkeys(r.cell for r in model.rnns))} model has no cell state; drop it"
            )
        d.c0, d.c0_null = decode_state(
            batch.column(options.c0_column), d.c_width, model.dtype, options.c0_column, row_name,
            f"= num_layers*num_directions ({lds[0]}) * hidden_size ({spec.hidden_size}), flattened row-major"
            if one else "= every LSTM module's (L*D, H) flattened row-major, in chain order",
        )
    if dec.reasons and options.on_invalid == "error":
        first = next(iter(dec.reasons.values()))
        raise InputError(f"{first}; fix or drop that row, or pass on_invalid='skip' to write a null score for it")
    return d


def _predict(model, d: _Decoded, options: ScoreOptions, shape_mode: str, row_name):
    """The model on the valid rows: ``(y, hn per module, cn per module or None)``; per-step scores packed
    (the valid steps, row after row: what `encode_scores` wraps without a copy)."""
    dec, parts = d.dec, d.parts
    one = len(parts) == 1
    rows = dec.rows
    if not rows.size:
        O = model.output_dim
        y = np.zeros((0, O), np.float32)
        hs = [np.zeros((ld, 0, h), np.float32) for ld, h, _ in parts]
        cs = [np.zeros((ld, 0, c), np.float32) if c else None for ld, _, c in parts]
        return y, hs, cs
    h0s = _split_state(d.h0[rows], parts, 1) if d.h0 is not None else None
    c0s = _split_state(d.c0[rows], parts, 2) if d.c0 is not None else None
    pred = model.predict(
        dec.x,
        lengths=dec.lengths,
        h0=(h0s[0] if one else h0s) if h0s is not None else None,
        c0=(c0s[0] if one else c0s) if c0s is not None else None,
        output=options.output_mode or model.output,
        return_state=options.emit_state,
        engine=options.engine,
        threads=options.threads,
        row_name=lambda g: row_name(int(rows[g])),
        packed=shape_mode == "all",  # the valid steps only: the score column's values as they are
    )
    if not options.emit_state:
        return pred, None, None
    per_module = [pred[1]] if one else pred[1]
    hs = [st[0] if isinstance(st, tuple) else st for st in per_module]
    cs = [st[1] if isinstance(st, tuple) else None for st in per_module]
    return pred[0], hs, cs


def _encode(model, batch, keep, d: _Decoded, y, hs, cs, options: ScoreOptions, shape_mode: str) -> pa.RecordBatch:
    """The output batch: pass-through columns, ``score``, and ``hn``/``cn`` with emit_state."""
    dec, B = d.dec, batch.num_rows
    rows = dec.rows
    columns = [batch.column(c) for c in keep]
    fields = [batch.schema.field(c) for c in keep]
    columns.append(encode_scores(y, rows, dec.lengths, B, shape_mode))
    fields.append(pa.field("score", score_type(model.output_dim, shape_mode)))
    if options.emit_state:
        states = [("hn", _join_state(hs), d.h0, d.h0_null, d.h_width)]
        if d.c_width:
            states.append(("cn", _join_state(cs), d.c0, d.c0_null, d.c_width))
        for name, s, s0, s0_null, width in states:
            # an empty sequence keeps its initial state (so a day without data carries over);
            # invalid rows and empty rows without a given state get a null state
            full = np.zeros((B, width), np.float32)
            valid = np.zeros(B, dtype=bool)
            if s0 is not None:
                full[dec.empty] = s0[dec.empty]
                valid[dec.empty] = ~s0_null[dec.empty]
            full[rows] = s
            valid[rows] = True
            columns.append(encode_state(full, valid))
            fields.append(pa.field(name, state_type()))
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))
