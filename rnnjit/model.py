"""`Model`: a loaded bundle, ready to score batches of sequences."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rnnjit.engines import get_engine
from rnnjit.errors import InputError, InputTypeError
from rnnjit.head import apply_head, head_output_size
from rnnjit.spec import OUTPUT_MODES, HeadStep, RNNSpec


class Model:
    """A recurrent model plus head, as described by a bundle.

    Build one with `rnnjit.load`. Weights are held under their PyTorch
    state_dict keys in ``weights`` (C-contiguous, ``dtype``).
    """

    def __init__(
        self,
        spec: RNNSpec,
        head: Sequence[HeadStep],
        weights: Mapping[str, np.ndarray],
        *,
        output: str = "last",
        dtype: str = "float32",
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.head = tuple(head)
        self.dtype = np.dtype(dtype)
        self.weights = {k: np.ascontiguousarray(v, dtype=self.dtype) for k, v in weights.items()}
        self.output = output
        self.config = dict(config or {})
        self._prepared: dict[str, Any] = {}

    # ------------------------------------------------------------------ info
    @property
    def feature_names(self) -> list[str] | None:
        return self.config.get("feature_names")

    @property
    def output_dim(self) -> int:
        """Width O of one score vector (after the head)."""
        return head_output_size(self.head, self.spec.output_size)

    @property
    def num_parameters(self) -> int:
        return int(sum(v.size for v in self.weights.values()))

    def __repr__(self) -> str:
        s = self.spec
        return (
            f"Model(cell={s.cell!r}, input_size={s.input_size}, hidden_size={s.hidden_size}, "
            f"proj_size={s.proj_size}, num_layers={s.num_layers}, bidirectional={s.bidirectional}, "
            f"output={self.output!r}, output_dim={self.output_dim}, dtype={self.dtype.name!r})"
        )

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
    ):
        """Score a batch of sequences.

        Parameters
        ----------
        x : ndarray (B, T, I) batch-first and padded, or a list of (T_i, I) arrays.
        lengths : int array (B,), optional
            Valid steps per sequence, ``1 <= lengths[b] <= T``; default T for all
            (or the list's lengths).
        h0, c0 : ndarray, optional
            Initial states in PyTorch's shapes (L*D, B, H_out) and (L*D, B, H).
        output : {"last", "final", "all"}, optional
            Overrides the bundle's output mode.
        return_state : bool
            Also return the final states, PyTorch style: ``(y, hn)`` for RNN/GRU,
            ``(y, (hn, cn))`` for LSTM.
        engine : {"numba", "numpy"}, optional
            Default numba when it can be imported, else numpy.
        threads : int, optional
            Threads for the numba engine (default: numba's default).

        Returns
        -------
        ndarray
            (B, O) for "last"/"final"; (B, T_max, O) for "all", zero past each length.
        """
        mode = self.output if output is None else output
        if mode not in OUTPUT_MODES:
            raise InputError(f"output mode {mode!r} is not known; expected one of {', '.join(OUTPUT_MODES)}")
        x, lengths = self._check_x(x, lengths)
        B, T = x.shape[0], x.shape[1]
        h_shape, c_shape = self.spec.state_shapes(B)
        h0 = self._check_state("h0", h0, h_shape)
        if c0 is not None and c_shape is None:
            raise InputError(f"c0 was given but a {self.spec.cell} model has no cell state; drop c0")
        c0 = self._check_state("c0", c0, c_shape) if c_shape else None
        if threads is not None and (not isinstance(threads, (int, np.integer)) or threads < 1):
            raise InputError(f"threads must be a positive integer, got {threads!r}")

        eng = get_engine(engine)
        y, hn, cn = eng.run(self._prepare(eng), x, lengths, h0, c0, mode, threads)
        y = apply_head(self.head, self.weights, y)
        if mode == "all" and self.head:
            y = np.where((np.arange(T)[None, :] < lengths[:, None])[:, :, None], y, 0)
        y = np.ascontiguousarray(y, dtype=self.dtype)
        if not return_state:
            return y
        return (y, (hn, cn)) if self.spec.has_cell_state else (y, hn)

    def _prepare(self, eng):
        key = eng.__name__
        if key not in self._prepared:
            self._prepared[key] = eng.prepare(self.spec, self.weights)
        return self._prepared[key]

    # ------------------------------------------------------------ validation
    def _check_x(self, x, lengths):
        I = self.spec.input_size
        if isinstance(x, (list, tuple)):
            seqs = [np.asarray(s) for s in x]
            for b, s in enumerate(seqs):
                if s.ndim != 2 or s.shape[1] != I:
                    raise InputError(
                        f"sequence {b} has shape {s.shape}; expected (T, {I}) for this model's input_size={I}"
                    )
            list_lengths = np.array([s.shape[0] for s in seqs], dtype=np.int64)
            if lengths is not None and not np.array_equal(np.asarray(lengths), list_lengths):
                raise InputError("lengths disagree with the lengths of the sequences in the list; omit lengths")
            T = int(list_lengths.max()) if len(seqs) else 0
            padded = np.zeros((len(seqs), T, I), dtype=self.dtype)
            for b, s in enumerate(seqs):
                padded[b, : s.shape[0]] = s
            x, lengths = padded, list_lengths
        else:
            if not isinstance(x, np.ndarray):
                try:
                    x = np.asarray(x)
                except Exception as exc:
                    raise InputTypeError(f"x must be a numpy array or a list of arrays, got {type(x).__name__}") from exc
            if x.ndim != 3:
                raise InputError(
                    f"x has shape {x.shape}; expected (batch, time, {I}) batch-first, "
                    "or pass a list of (T_i, features) arrays"
                )
            if x.shape[2] != I:
                raise InputError(
                    f"x has {x.shape[2]} features per step; this model expects input_size={I}"
                )
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise InputTypeError(f"x has dtype {x.dtype}; expected a floating-point array")
        x = np.ascontiguousarray(x, dtype=self.dtype)
        B, T = x.shape[0], x.shape[1]
        if lengths is None:
            if T == 0 and B > 0:
                raise InputError("x has 0 time steps; every sequence needs at least one step")
            lengths = np.full(B, T, dtype=np.int64)
        else:
            lengths = np.asarray(lengths)
            if lengths.shape != (B,):
                raise InputError(f"lengths has shape {lengths.shape}; expected ({B},), one per sequence")
            if B and not np.issubdtype(lengths.dtype, np.integer):
                if not np.all(np.mod(lengths, 1) == 0):
                    raise InputTypeError(f"lengths has dtype {lengths.dtype} with fractional values; expected integers")
            lengths = lengths.astype(np.int64)
            if B and (lengths.min() < 1 or lengths.max() > T):
                bad = int(np.flatnonzero((lengths < 1) | (lengths > T))[0])
                raise InputError(
                    f"lengths[{bad}] = {int(lengths[bad])} is out of range; expected 1 <= length <= {T} "
                    "(the padded time dimension); drop empty sequences before scoring"
                )
        return x, np.ascontiguousarray(lengths)

    def _check_state(self, name, s, shape):
        if s is None:
            return None
        s = np.asarray(s)
        if s.shape != shape:
            raise InputError(
                f"{name} has shape {s.shape}; expected {shape} = (num_layers*num_directions, batch, "
                f"{'hidden_size' if name == 'c0' else 'h_out'}) as in PyTorch"
            )
        if not np.issubdtype(s.dtype, np.number):
            raise InputTypeError(f"{name} has dtype {s.dtype}; expected a floating-point array")
        return np.ascontiguousarray(s, dtype=self.dtype)
