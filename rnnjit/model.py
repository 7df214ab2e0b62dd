"""`Model`: a loaded bundle, ready to score batches of sequences.

A model is a chain of steps (`rnnjit.spec.Step`): an optional embedding, one
or more recurrent modules, pooling, normalization, linear layers and
activations, run by the engine (`rnnjit.engines`) on the rows they apply to,
never on padding:

- a step whose kind declares a `rnnjit.kinds.Fusion` runs inside the engine
  when it touches a recurrent module on the declared side (dropout between
  them does not count): an embedding that feeds one (the engine reads table
  rows by token id, no (B, T, E) array) and a pooling right after the last one
  (the engine pools in its output pass, no (B, T, F) array);
- a run of steps whose kind is ``per_vector`` (linear, norms, activations,
  dropout) is one ``run_steps`` call of the engine over the valid steps (or
  one row per sequence after ``last``/``final``/pooling), written packed when
  a recurrent module follows, which reads them by index (no padded (B, T, F)
  array between modules), or into the padded result when the chain ends there.

State layout with several recurrent modules: ``h0``/``c0`` (and the returned
states) are lists with one entry per recurrent module in chain order, each in
that module's PyTorch shape; ``c0`` has entries for LSTM modules only (None
elsewhere). The flattened per-row state columns concatenate the modules in
chain order (see `rnnjit.scoring`). A single module keeps PyTorch's plain
``(L*D, B, H)`` arrays.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rnnjit.engines import get_engine
from rnnjit.errors import InputError, InputTypeError
from rnnjit.inputs import SMALL_BATCH, check_features, check_lengths, check_tokens
from rnnjit.kinds import KINDS
from rnnjit.small_call import SmallCall, small_call
from rnnjit.spec import OUTPUT_MODES, PRECISIONS, RNNSpec, Step, chain_widths, input_width, rnn_step
from rnnjit.steps import renorm_rows  # noqa: F401 - its home until the table; callers import it from here


def check_precision(precision, dtype: np.dtype) -> str:
    """``precision`` if it is one of `PRECISIONS` and computes with ``dtype``, else an `InputError`."""
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r} is not known; expected one of {', '.join(PRECISIONS)}")
    if precision != "float32" and dtype != np.float32:
        raise InputError(
            f"precision {precision!r} computes everything outside its products in float32, not {dtype.name}; "
            f"load the bundle with dtype='float32' (the default) to use it"
        )
    return precision


class _Valid:
    """Which steps of a padded (B, T) batch are valid: the mask and its flat indexes, built when a step asks.

    A chain whose recurrent modules hand on one vector per sequence (or run
    every step in their launch) never needs them: a batch of one then builds
    neither.
    """

    __slots__ = ("lengths", "shape", "size", "_mask", "_flat", "_full")

    def __init__(self, lengths: np.ndarray, T: int) -> None:
        self.lengths, self.shape, self.size = lengths, (lengths.shape[0], T), lengths.shape[0] * T
        self._mask = self._flat = self._full = None

    @property
    def full(self) -> bool:
        """True when every sequence is T steps long (no padding)."""
        if self._full is None:
            L, T = self.lengths, self.shape[1]
            self._full = bool(L.shape[0] == 0 or (min(L.tolist()) if L.shape[0] <= SMALL_BATCH else L.min()) == T)
        return self._full

    @property
    def mask(self) -> np.ndarray:
        """(B, T) bool: step t of sequence b is valid."""
        if self._mask is None:
            self._mask = np.arange(self.shape[1])[None, :] < self.lengths[:, None]
        return self._mask

    @property
    def flat(self) -> np.ndarray:
        """b*T + t of every valid step, sequence by sequence (int64)."""
        if self._flat is None:
            self._flat = np.arange(self.size, dtype=np.int64) if self.full else np.flatnonzero(self.mask)
        return self._flat


class Model:
    """A chain of steps with its weights, as described by a bundle.

    Build one with `rnnjit.load`. ``Model(chain, weights)`` takes a sequence of
    `Step`; ``Model(spec, head, weights)`` (one recurrent module and a head)
    is kept for code written against version-1 bundles. Weights are held under
    their PyTorch state_dict keys in ``weights`` (C-contiguous, ``dtype``).
    """

    def __init__(
        self,
        chain,
        head: Sequence[Step] | Mapping[str, np.ndarray] = (),
        weights: Mapping[str, np.ndarray] | None = None,
        *,
        output: str = "last",
        dtype: str = "float32",
        config: Mapping[str, Any] | None = None,
        precision: str = "float32",
    ) -> None:
        if isinstance(chain, RNNSpec):
            chain = (rnn_step(chain), *head)
        elif weights is None:
            weights = head
        self.chain = tuple(chain)
        self.dtype = np.dtype(dtype)
        self.precision = check_precision(precision, self.dtype)
        self.weights = {k: np.ascontiguousarray(v, dtype=self.dtype) for k, v in weights.items()}
        # what scoring reads: the bundle's weights, with what a step replaces (an embedding's max_norm)
        self._scoring = dict(self.weights)
        for step in self.chain:
            self._scoring.update(KINDS[step.kind].scoring_weights(step, self.weights))
        self.output = output
        self.config = dict(config or {})
        self._rnn_index = tuple(i for i, s in enumerate(self.chain) if KINDS[s.kind].recurrent)
        # read on every predict: looked up once (a chain does not change after the model is built)
        self._rnns = tuple(self.chain[i].rnn for i in self._rnn_index)
        self._embedding = self.chain[0] if KINDS[self.chain[0].kind].reads_tokens else None
        self._pooling = next((s.name for s in self.chain if KINDS[s.kind].pools_time), None)
        self._input_size = 1 if self._embedding is not None else input_width(self.chain)
        self._output_dim = chain_widths(self.chain)
        self._prepared: dict[tuple[str, int], Any] = {}
        self._schedules: dict[str, tuple[tuple, ...]] = {}  # `_schedule`, per output mode
        self._variants: dict[str, Model] = {}  # `with_precision`
        self._small_calls: dict[tuple, SmallCall | None] = {}  # `rnnjit.small_call`, per lengths
        self._fused_into = self._fusions()
        self._fused = frozenset(j for js in self._fused_into.values() for j in js)

    def with_precision(self, precision: str | None) -> Model:
        """This model scoring at ``precision`` (None: as it is): the same weights, its own prepared kernels."""
        if precision is None or precision == self.precision:
            return self
        other = self._variants.get(precision)
        if other is None:
            other = copy.copy(self)
            other.precision = check_precision(precision, self.dtype)
            other._prepared, other._variants, other._small_calls = {}, {self.precision: self}, {}
            self._variants[precision] = other
        return other

    def _fusions(self) -> dict[int, tuple[int, ...]]:
        """Recurrent step index -> the steps its engine launch runs, in chain order.

        Each kind says in the table whether an engine can run it per tile with
        a recurrent module (`rnnjit.kinds.Fusion`) and on which side: the run
        of such steps right before a module (``"input"``) and right after it
        (``"output"``) goes into its launch; no-op steps (dropout) in a run
        are skipped over. The engine gets each fused step's ``engine_args``.
        """
        out = {}
        for i in self._rnn_index:
            fused = []
            for d, position in ((-1, "input"), (1, "output")):
                j = i + d
                while 0 <= j < len(self.chain):
                    kind = KINDS[self.chain[j].kind]
                    if kind.fusion is not None and kind.fusion.position == position:
                        fused.append(j)
                    elif not kind.noop:
                        break
                    j += d
            out[i] = tuple(sorted(fused))
        return out

    # ------------------------------------------------------------------ info
    @property
    def rnns(self) -> tuple[RNNSpec, ...]:
        """Every recurrent module, in chain order."""
        return self._rnns

    @property
    def spec(self) -> RNNSpec:
        """The first recurrent module (the only one in most models)."""
        return self.chain[self._rnn_index[0]].rnn

    @property
    def head(self) -> tuple[Step, ...]:
        """The steps after the last recurrent module."""
        return self.chain[self._rnn_index[-1] + 1 :]

    @property
    def embedding(self) -> Step | None:
        """The first step when it reads token ids (an embedding), else None."""
        return self._embedding

    @property
    def takes_tokens(self) -> bool:
        """True when the input is integer token ids (the first step is an embedding)."""
        return self._embedding is not None

    @property
    def input_size(self) -> int:
        """Values per input step: 1 token id, or the features the first step takes."""
        return self._input_size

    @property
    def has_cell_state(self) -> bool:
        return any(s.has_cell_state for s in self.rnns)

    @property
    def pooling(self) -> str | None:
        return self._pooling

    @property
    def assumed(self) -> list[dict[str, Any]]:
        """What convert assumed because the weights cannot tell (see `rnnjit.assumptions`); [] when nothing."""
        return list(self.config.get("assumed") or [])

    @property
    def feature_names(self) -> list[str] | None:
        return self.config.get("feature_names")

    @property
    def output_dim(self) -> int:
        """Width O of one score vector (after the last step)."""
        return self._output_dim

    @property
    def num_parameters(self) -> int:
        return int(sum(v.size for v in self.weights.values()))

    def returns_steps(self, output: str | None = None) -> bool:
        """True when scores are per step ((B, T, O)): output "all" and no pooling after it."""
        return (output or self.output) == "all" and self.pooling is None

    def describe(self) -> str:
        """The chain as ``--chain`` spells it."""
        return ",".join(s.label() for s in self.chain)

    def __repr__(self) -> str:
        if self._rnn_index == (0,):  # one module and a head, as before chains
            s = self.spec
            return (
                f"Model(cell={s.cell!r}, input_size={s.input_size}, hidden_size={s.hidden_size}, "
                f"proj_size={s.proj_size}, num_layers={s.num_layers}, bidirectional={s.bidirectional}, "
                f"output={self.output!r}, output_dim={self.output_dim}, dtype={self.dtype.name!r}"
                f"{self._precision_repr()})"
            )
        return (
            f"Model(chain={self.describe()!r}, input_size={self.input_size}, output={self.output!r}, "
            f"output_dim={self.output_dim}, dtype={self.dtype.name!r}{self._precision_repr()})"
        )

    def _precision_repr(self) -> str:
        return "" if self.precision == "float32" else f", precision={self.precision!r}"

    # --------------------------------------------------------------- scoring
    def predict(
        self,
        x,
        lengths=None,
        h0=None,
        c0=None,
        output: str | None = None,
        return_state: bool = False,
        engine: str | None = None,
        threads: int | None = None,
        row_name=None,
        packed: bool = False,
    ):
        """Score a batch of sequences.

        Parameters
        ----------
        x : ndarray (B, T, I) batch-first and padded, a list of (T_i, I) arrays,
            a pandas Series or pyarrow array of sequences; (B, T) or 1-d
            sequences when I == 1. Integer token ids (B, T) or a list of 1-d
            integer arrays when the model starts with an embedding.
        lengths : int array (B,), optional
            Valid steps per sequence, ``1 <= lengths[b] <= T``; default T for all
            (or the list's lengths).
        h0, c0 : ndarray, optional
            Initial states in PyTorch's shapes (L*D, B, H_out) and (L*D, B, H);
            with several recurrent modules, a list with one entry (or None) per
            module (c0: None for modules without a cell state).
        output : {"last", "final", "all"}, optional
            What the last recurrent module hands on; overrides the bundle's mode.
            A model that pools over time needs "all".
        return_state : bool
            Also return the final states, PyTorch style: ``(y, hn)`` for RNN/GRU,
            ``(y, (hn, cn))`` for LSTM; with several modules ``(y, [state, ...])``,
            one per module as that module returns it.
        engine : {"numba", "numpy"}, optional
            Default numba when it can be imported, else numpy.
        threads : int, optional
            Threads for the numba engine (default: numba's default).
        row_name : callable(int) -> str, optional
            Names sequence b in messages (scoring passes the input row).
        packed : bool
            With per-step output: return only the valid steps, ``(sum(lengths), O)``,
            sequence after sequence (``np.concatenate([y[b, :lengths[b]] for b in
            range(B)])`` of the padded result, the same bits), without building the
            padded array. Per-sequence outputs are (B, O) either way.

        Returns
        -------
        ndarray
            (B, O) per sequence, or (B, T_max, O) for "all" without pooling,
            zero past each length; with ``packed``, (sum(lengths), O).
        """
        mode = self.output if output is None else output
        if mode not in OUTPUT_MODES:
            raise InputError(f"output mode {mode!r} is not known; expected one of {', '.join(OUTPUT_MODES)}")
        if self._pooling and mode != "all":
            raise InputError(
                f"this model pools over time (pool:{self.pooling}), so its last recurrent module hands on "
                f"every step; output mode {mode!r} does not apply, drop it"
            )
        if threads is not None and (not isinstance(threads, (int, np.integer)) or threads < 1):
            raise InputError(f"threads must be a positive integer, got {threads!r}")
        if self._embedding is not None:
            x, lengths = check_tokens(x, lengths, self._embedding.in_features)
        else:
            x, lengths = check_features(x, lengths, self._input_size, self.dtype, state_given=h0 is not None)
        B, T = x.shape[0], x.shape[1]
        lengths = check_lengths(lengths, B, T)
        h0s, c0s = self._check_states(h0, c0, B)

        eng = get_engine(engine)
        if h0 is None and c0 is None and B:  # a small call on one thread: its steps worked out once per lengths
            small = small_call(self, eng, mode, lengths, T, packed)
            if small is not None:
                y, states = small(eng, x, lengths, row_name)
                if not return_state:
                    return y
                return (y, states[0]) if len(states) == 1 else (y, states)
        valid = _Valid(lengths, T)
        # Per-step values are rows of a 2-d array: step t of sequence b is row idx[b, t], or with idx
        # None row b*T + t of a padded batch; per-sequence values are (B, F); rows None: the token ids x.
        rows = None if self._embedding is not None else np.ascontiguousarray(x, self.dtype).reshape(B * T, x.shape[2])
        idx, per_step = None, True
        states = []
        for op, *a in self._schedule(mode):
            if op == "check":  # a check of the model's input (an embedding's token ids)
                check, step = a
                check(step, self._scoring, x, lengths, row_name)
            elif op == "rows":  # per-vector steps, run together on the rows they apply to
                run, last = a
                # the chain's last per-vector steps write the padded result, or with ``packed`` the valid steps
                rows, idx = self._run_rows(eng, run, rows, idx, per_step, valid, threads, last=last and not packed)
            elif op == "numpy":  # numpy between launches (an embedding or a pooling no module runs)
                kind, step = a
                y = kind.apply(step, self._scoring, self._padded(x, rows, idx, per_step, valid), lengths)
                rows, idx, per_step = (y.reshape(B * T, y.shape[2]), None, True) if y.ndim == 3 else (y, None, False)
            else:  # a recurrent module's launch, with the steps fused into it
                i, select, fused, has_c = a
                k = len(states)
                args = dict(fused)
                if "table" in args:  # token ids read through a fused embedding
                    y_in = x
                elif idx is None:  # a padded batch
                    y_in = rows.reshape(B, T, rows.shape[1])
                else:  # the packed valid steps of the steps before, read by index
                    y_in, args["table"] = idx, rows
                y, hn, cn = eng.run(self._prepare(eng, i), y_in, lengths, h0s[k], c0s[k], select, threads, **args)
                per_step = y.ndim == 3
                rows, idx = (y.reshape(B * T, y.shape[2]) if per_step else y), None
                states.append((hn, cn) if has_c else hn)
        if packed and per_step:
            y = np.ascontiguousarray(self._packed(x, rows, idx, valid), dtype=self.dtype)
        else:
            y = np.ascontiguousarray(self._padded(x, rows, idx, per_step, valid), dtype=self.dtype)
        if not return_state:
            return y
        return (y, states[0]) if len(states) == 1 else (y, states)

    def _schedule(self, mode: str) -> tuple[tuple, ...]:
        """What `predict` does for output mode ``mode``, in chain order, worked out once per mode.

        ``("check", check, step)``: a check of the model's input;
        ``("rows", run, last)``: a run of per-vector steps (chain indexes; last:
        they end the chain, written into the padded result);
        ``("numpy", kind, step)``: a step no launch runs;
        ``("rnn", i, select, fused args, has cell state)``: a recurrent module's
        launch with the engine arguments of the steps fused into it
        (`rnnjit.kinds.Fusion`). A pooling's arguments replace ``select``.
        """
        sched = self._schedules.get(mode)
        if sched is not None:
            return sched
        out, run, last_rnn = [], [], self._rnn_index[-1]
        for i, step in enumerate(self.chain):
            kind = KINDS[step.kind]
            if kind.check_input is not None:
                out.append(("check", kind.check_input, step))
            if i in self._fused:
                continue  # the recurrent module's launch runs it
            if kind.per_vector:  # collected, then run together on the rows they apply to
                run.append(i)
                continue
            if run:
                out.append(("rows", tuple(run), False))
                run = []
            if not kind.recurrent:
                out.append(("numpy", kind, step))
                continue
            args = {"select": mode if i == last_rnn else "all"}
            for j in self._fused_into[i]:
                args.update(KINDS[self.chain[j].kind].fusion.engine_args(self.chain[j], self._scoring))
            select = args.pop("select")
            out.append(("rnn", i, select, args, step.rnn.has_cell_state))
        if run:
            out.append(("rows", tuple(run), True))
        sched = self._schedules[mode] = tuple(out)
        return sched

    @staticmethod
    def _padded(x, rows, idx, per_step, valid: _Valid):
        """The current value as numpy steps take it: (B, T, F) padded, (B, F) per sequence, or the token ids."""
        if rows is None:
            return x
        if not per_step:
            return rows
        if idx is None:
            return rows.reshape(*valid.shape, rows.shape[1])
        y = rows[idx]
        y[~valid.mask] = 0
        return y

    @staticmethod
    def _packed(x, rows, idx, valid: _Valid):
        """The current per-step value's valid steps, (S, F) sequence by sequence."""
        if idx is not None:  # rows already are the valid steps in that order (`_run_rows` writes them so)
            return rows
        if rows is not None and valid.full:  # no padding: the padded rows are the valid steps
            return rows
        return Model._padded(x, rows, idx, True, valid)[valid.mask]

    def _run_rows(self, eng, run, rows, idx, per_step, valid: _Valid, threads, last):
        """Run the per-vector steps ``run`` (chain indices) on the rows they apply to; the new (rows, idx).

        Per step: the valid steps only, written packed (the next recurrent
        module reads them by index) or, for the chain's last steps, into the
        padded (B*T, O) result (zeros past each length). Per sequence: B rows.
        """
        if rows is None:  # token ids straight into per-vector steps: no chain has that (an embedding comes first)
            if all(KINDS[self.chain[j].kind].noop for j in run):
                return rows, idx
            raise InputError("per-vector steps cannot read token ids; the chain needs an embedding first")
        prepared, width = self._steps(eng, run, rows.shape[1])
        if prepared is None:
            return rows, idx
        if not per_step:
            src_idx = np.arange(rows.shape[0], dtype=np.int64)
            out = np.empty((rows.shape[0], width), self.dtype)
            eng.run_steps(prepared, rows, src_idx, out, src_idx, threads)
            return out, None
        flat = valid.flat
        src_idx = flat if idx is None else idx.reshape(-1)[flat]
        if last:  # the padded result: zeros past each length (every row is written when there is no padding)
            out = (np.empty if valid.full else np.zeros)((valid.size, width), self.dtype)
            eng.run_steps(prepared, rows, src_idx, out, flat, threads)
            return out, None
        packed = np.arange(flat.size, dtype=np.int64)
        out = np.empty((flat.size, width), self.dtype)
        eng.run_steps(prepared, rows, src_idx, out, packed, threads)
        new_idx = np.zeros(valid.size, np.int64)
        new_idx[flat] = packed
        return out, new_idx.reshape(valid.shape)

    def _steps(self, eng, run, in_width: int):
        """(the per-vector steps ``run`` prepared for rows ``in_width`` wide, or None if all are no-ops; output width)."""
        key = (eng.__name__, run[0], in_width)
        found = self._prepared.get(key)  # once per input width
        if found is None:
            width = in_width
            for j in run:
                width = KINDS[self.chain[j].kind].gives(self.chain[j], width)
            if all(KINDS[self.chain[j].kind].noop for j in run):
                found = (None, width)
            else:
                steps = [self.chain[j] for j in run]
                found = (eng.prepare_steps(steps, self._scoring, in_width, self.dtype), width)
            self._prepared[key] = found
        return found

    def _prepare(self, eng, i: int):
        key = (eng.__name__, i)
        if key not in self._prepared:
            precision = None if self.precision == "float32" else self.precision  # None: the weights' dtype
            self._prepared[key] = eng.prepare(self.chain[i].rnn, self._scoring, precision)
        return self._prepared[key]

    # ------------------------------------------------------------ validation
    def _check_states(self, h0, c0, B: int):
        rnns = self._rnns
        n = len(rnns)
        if h0 is None and c0 is None:  # zero states: nothing to check
            return [None] * n, [None] * n
        if n == 1:
            h0s, c0s = [h0], [c0]
        else:
            h0s, c0s = self._per_module("h0", h0, n), self._per_module("c0", c0, n)
        for k, spec in enumerate(rnns):
            h_shape, c_shape = spec.state_shapes(B)
            where = "" if n == 1 else f"[{k}] (module {spec.prefix[:-1] or 'rnn'!r})"
            h0s[k] = self._check_state(f"h0{where}", h0s[k], h_shape)
            if c0s[k] is not None and c_shape is None:
                raise InputError(f"c0{where} was given but a {spec.cell} module has no cell state; drop it")
            c0s[k] = self._check_state(f"c0{where}", c0s[k], c_shape) if c_shape else None
        return h0s, c0s

    @staticmethod
    def _per_module(name, s, n):
        if s is None:
            return [None] * n
        if not isinstance(s, (list, tuple)) or len(s) != n:
            raise InputError(
                f"{name} must be a list with one entry (or None) per recurrent module ({n} in this model), "
                "each in that module's PyTorch shape"
            )
        return list(s)

    def _check_state(self, name, s, shape):
        if s is None:
            return None
        s = np.asarray(s)
        if s.shape != shape:
            raise InputError(
                f"{name} has shape {s.shape}; expected {shape} = (num_layers*num_directions, batch, "
                f"{'hidden_size' if name.startswith('c0') else 'h_out'}) as in PyTorch"
            )
        if not np.issubdtype(s.dtype, np.number):
            raise InputTypeError(f"{name} has dtype {s.dtype}; expected a floating-point array")
        return np.ascontiguousarray(s, dtype=self.dtype)
