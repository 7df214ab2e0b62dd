"""Input checks for `Model.predict`: sequences in the shapes users have, to one padded array.

Accepted for ``x``: a padded (B, T, I) array (or (B, T) when I == 1), a list
of (T_i, I) arrays (or 1-d (T_i,) when I == 1), a pandas Series or a pyarrow
(Chunked)Array of sequences, and object arrays of per-step arrays as
``pd.read_parquet`` returns them. A model whose first step is an embedding
takes integer token ids instead: (B, T) or a list of 1-d integer arrays.
A 2-d (N, 1) array with N > 1 is refused where (B, T) is accepted: it may be
one series as a column or PyTorch's sequence-first layout.
"""

from __future__ import annotations

import numpy as np

from rnnjit.errors import InputError, InputTypeError


def _sequence_container(x):
    """A list of per-sequence objects for Series / Arrow / object arrays; None for other inputs."""
    if isinstance(x, np.ndarray):  # first: the common case, answered without the module name's look-up
        return list(x) if x.dtype == object else None
    mod = type(x).__module__ or ""
    if mod.startswith("pandas"):
        if hasattr(x, "to_numpy") and getattr(x, "ndim", 1) == 1:
            return list(x.to_numpy())
        raise InputTypeError(
            f"x is a pandas {type(x).__name__}; pass the sequence column (a Series), e.g. df['features']"
        )
    if mod.startswith("pyarrow"):
        if hasattr(x, "to_pylist") and not hasattr(x, "schema"):
            return x.to_pylist()
        raise InputTypeError(f"x is a pyarrow {type(x).__name__}; pass the sequence column, e.g. table['features']")
    if isinstance(x, (list, tuple)):
        return list(x)
    return None


def _one_sequence(s, b: int) -> np.ndarray:
    """One sequence as an ndarray; an object array of per-step arrays (pandas) is stacked."""
    if s is None:
        raise InputError(f"sequence {b} is None; drop missing sequences before scoring")
    a = np.asarray(s) if not isinstance(s, np.ndarray) else s
    if a.dtype == object:
        steps = [np.asarray(v) for v in a]
        try:
            a = np.stack(steps) if steps else np.zeros((0,))
        except ValueError as exc:
            raise InputError(f"sequence {b} has steps of different widths ({exc}); every step needs the same width") from exc
        if a.dtype == object:
            raise InputTypeError(f"sequence {b} holds {type(steps[0]).__name__} values; expected numbers")
    return a


def check_tokens(x, lengths, n_embeddings: int):
    """Integer token ids (B, T) or a list of 1-d integer arrays -> (int64 (B, T), lengths or None)."""
    seqs = _sequence_container(x)
    if seqs is not None:
        arrs = [_one_sequence(s, b) for b, s in enumerate(seqs)]
        for b, a in enumerate(arrs):
            if a.ndim != 1:
                raise InputError(
                    f"sequence {b} has shape {a.shape}; this model starts with an embedding and takes one "
                    "integer token id per step (a 1-d array per sequence)"
                )
            _require_integers(a, f"sequence {b}")
        list_lengths = np.array([a.shape[0] for a in arrs], dtype=np.int64)
        if lengths is not None and not np.array_equal(np.asarray(lengths), list_lengths):
            raise InputError("lengths disagree with the lengths of the sequences in the list; omit lengths")
        T = int(list_lengths.max()) if arrs else 0
        ids = np.zeros((len(arrs), T), dtype=np.int64)
        for b, a in enumerate(arrs):
            ids[b, : a.shape[0]] = a
        return ids, list_lengths
    a = np.asarray(x)
    if a.ndim != 2:
        raise InputError(
            f"x has shape {a.shape}; this model starts with an embedding and takes integer token ids "
            "(batch, time), or a list of 1-d integer arrays"
        )
    if lengths is None:  # with lengths, their count says which axis is the batch
        _refuse_column(a, "token ids (batch, time)", "x.reshape(1, -1)", "x.T")
    _require_integers(a, "x")
    return a.astype(np.int64, copy=False), lengths


def _require_integers(a: np.ndarray, what: str) -> None:
    if a.dtype.kind in "iu" or (a.size == 0 and a.dtype != object):  # kind: np.issubdtype(np.integer) at a tenth
        return
    raise InputTypeError(
        f"{what} has dtype {a.dtype}; this model starts with an embedding and takes integer token ids; "
        "pass the ids as an integer array (e.g. x.astype(np.int64)), not embedded vectors"
    )


def check_features(x, lengths, input_size: int, dtype, *, state_given: bool = False):
    """Float features -> ((B, T, I) array of ``dtype`` padded with zeros, lengths or None).

    ``state_given``: an initial state came with ``x``, so (B, 1, I) is one step of B carried sequences.
    """
    I = input_size
    seqs = _sequence_container(x)
    if seqs is not None:
        arrs = [_one_sequence(s, b) for b, s in enumerate(seqs)]
        for b, a in enumerate(arrs):
            if a.ndim == 1 and I == 1:
                arrs[b] = a = a.reshape(-1, 1)  # a univariate series
            if a.ndim != 2 or a.shape[1] != I:
                raise InputError(
                    f"sequence {b} has shape {a.shape}; expected (T, {I}) for this model's input_size={I}"
                )
            _require_float(a, f"sequence {b}")
        list_lengths = np.array([a.shape[0] for a in arrs], dtype=np.int64)
        if lengths is not None and not np.array_equal(np.asarray(lengths), list_lengths):
            raise InputError("lengths disagree with the lengths of the sequences in the list; omit lengths")
        T = int(list_lengths.max()) if arrs else 0
        padded = np.zeros((len(arrs), T, I), dtype=dtype)
        for b, a in enumerate(arrs):
            padded[b, : a.shape[0]] = a
        return padded, list_lengths
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as exc:
            raise InputTypeError(f"x must be a numpy array or a list of arrays, got {type(x).__name__}") from exc
    if x.ndim == 2 and I == 1:
        if lengths is None:  # with lengths, their count says which axis is the batch
            _refuse_column(x, "(batch, time) univariate series", "x.reshape(1, -1)", "x.T")
        x = x[:, :, None]  # (B, T) univariate
    if x.ndim != 3:
        raise InputError(
            f"x has shape {x.shape}; expected (batch, time, {I}) batch-first, "
            "or pass a list of (T_i, features) arrays"
        )
    if x.shape[2] != I:
        raise InputError(f"x has {x.shape[2]} features per step; this model expects input_size={I}")
    if lengths is None and not state_given and x.shape[0] > 1 and x.shape[1] == 1:
        # PyTorch's sequence-first (T, 1, I), e.g. the char-RNN tutorial's lineToTensor, read batch-first
        # would score T one-step sequences with exit code 0
        n = x.shape[0]
        raise InputError(
            f"x has shape {x.shape}: {n} sequences of one step, or one {n}-step sequence in PyTorch's "
            f"sequence-first (time, batch, features) layout? pass one sequence as x.transpose(1, 0, 2) "
            f"(or a list of (T, {I}) arrays), or {n} one-step sequences with lengths=np.ones({n}, int)"
        )
    _require_float(x, "x")
    return np.ascontiguousarray(x, dtype=dtype), lengths


def _refuse_column(a: np.ndarray, what: str, one: str, seq_first: str) -> None:
    """A (N, 1) array with N > 1 is N one-step sequences or one N-step sequence: never guess which.

    One series as a column (``values.reshape(-1, 1)``, the scikit-learn habit) or
    PyTorch's sequence-first (T, 1) layout would otherwise score N sequences of
    one step each, with exit code 0.
    """
    if a.shape[0] > 1 and a.shape[1] == 1:
        n = a.shape[0]
        raise InputError(
            f"x has shape {a.shape}, read as {what}: {n} sequences of one step, or one sequence of {n} steps? "
            f"pass one sequence as {one} (or a list of 1-d arrays), PyTorch's sequence-first (time, batch) as "
            f"{seq_first}, or {n} one-step sequences as list(x)"
        )


def _require_float(a: np.ndarray, what: str) -> None:
    if a.dtype.kind == "f" or a.size == 0:  # kind "f": np.issubdtype(np.floating) at a tenth of the cost
        return
    if a.dtype.kind in "iu":
        # token ids fed to a model without an embedding would score silently wrong
        raise InputTypeError(
            f"{what} holds integers ({a.dtype}) but this model has no embedding, so it takes float features; "
            "if these are feature values pass x.astype(np.float32); token ids need the model's nn.Embedding "
            "in the bundle (rnnjit convert --chain 'emb,...')"
        )
    raise InputTypeError(f"{what} has dtype {a.dtype}; expected a floating-point array")


SMALL_BATCH = 64
"""Batches up to this many sequences have their lengths' range checked in Python, larger ones with numpy."""


def check_lengths(lengths, B: int, T: int) -> np.ndarray:
    """Valid steps per sequence, ``1 <= lengths[b] <= T`` (default T for all)."""
    if lengths is None:
        if T == 0 and B > 0:
            raise InputError("x has 0 time steps; every sequence needs at least one step")
        return np.full(B, T, dtype=np.int64)
    lengths = np.asarray(lengths)
    if lengths.shape != (B,):
        raise InputError(f"lengths has shape {lengths.shape}; expected ({B},), one per sequence")
    if B and lengths.dtype.kind not in "iu":
        if not np.all(np.mod(lengths, 1) == 0):
            raise InputTypeError(f"lengths has dtype {lengths.dtype} with fractional values; expected integers")
    lengths = lengths.astype(np.int64, copy=False)  # read only from here on: no copy of int64 lengths
    if B <= SMALL_BATCH:  # a list's min and max: numpy's reductions cost ~1 us each on a handful of values
        values = lengths.tolist()
        lo, hi = (min(values), max(values)) if B else (1, T)
    else:
        lo, hi = lengths.min(), lengths.max()
    if lo < 1 or hi > T:
        bad = int(np.flatnonzero((lengths < 1) | (lengths > T))[0])
        raise InputError(
            f"lengths[{bad}] = {int(lengths[bad])} is out of range; expected 1 <= length <= {T} "
            "(the padded time dimension); drop empty sequences before scoring"
        )
    return np.ascontiguousarray(lengths)
