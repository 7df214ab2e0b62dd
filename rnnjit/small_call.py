"""`SmallCall`: what `Model.predict` does for one small batch's lengths, worked out once (issue 17, a batch of one).

A small call (a sentence through the polyphone tagger) whose every launch
runs on the calling thread alone, whatever the thread count (the engine's
`one_thread_plan` and `one_thread_steps`: decided by the lengths only), runs
the same kernels with the same arguments in the same order as `predict`'s
general loop, so the same bits; what it skips is the Python around them,
done once per lengths instead of per call: the engine's checks, tile plan
look-up and thread choice, the valid-step indexes, the per-vector steps'
look-up and thread choice. The checks of the user's input (shapes, dtypes,
lengths, token ids) still run on every call, before it.

Kept per `Model` for (output mode, packed, T, lengths) (`SMALL_CALLS` of
them); nothing in one is written by a call, so threads share it.
"""

from __future__ import annotations

import numpy as np

SMALL_CALLS = 256
"""`SmallCall`s (or the None of a call that has none) a `Model` keeps, then all dropped."""

_CHECK, _RNN, _ROWS = 0, 1, 2


class SmallCall:
    """A call's steps with everything that depends only on its lengths: built by `build`, run by `__call__`."""

    __slots__ = ("ops", "scoring", "dtype", "shape", "final")

    def __init__(self, ops, scoring, dtype, shape, final) -> None:
        self.ops, self.scoring, self.dtype, self.shape, self.final = ops, scoring, dtype, shape, final

    @classmethod
    def build(cls, model, eng, mode: str, lengths: np.ndarray, T: int, packed: bool) -> SmallCall | None:
        """The call's `SmallCall`, or None when a step of its chain runs in numpy, reads packed rows, or a launch
        could take more than the calling thread (the general loop of `Model.predict` runs those)."""
        from rnnjit.model import _Valid  # model imports this module

        B = lengths.shape[0]
        valid = _Valid(lengths, T)
        ops = []
        # the current value: its width (None: the token ids), per step or per sequence
        width = None if model._embedding is not None else model._input_size
        per_step, final = True, None
        for op, *a in model._schedule(mode):
            if op == "check":
                ops.append((_CHECK, *a))
            elif op == "rnn":
                i, select, fused, has_c = a
                if set(fused) - {"table"} or (width is None) == ("table" not in fused):
                    return None  # token ids only through a fused embedding, rows only from a module below
                spec = model.chain[i].rnn
                if width is not None and (not per_step or width != spec.input_size):
                    return None
                prepared = model._prepare(eng, i)
                plan = eng.one_thread_plan(prepared, lengths, T, select, "table" in fused)
                if plan is None:
                    return None
                ops.append((_RNN, prepared, plan, fused.get("table"), select, has_c))
                width, per_step = spec.num_directions * spec.h_out, select == "all"
            elif op == "rows":
                run, last = a
                if width is None or not last:
                    return None  # rows between modules are packed for the next one: the general loop
                prepared, out_width = model._steps(eng, run, width)
                if prepared is None:
                    continue
                if per_step:
                    src, n = valid.flat, valid.flat.size
                    if packed:
                        dst, shape, zero = np.arange(n, dtype=np.int64), (n, out_width), False
                    else:
                        dst, shape, zero = src, (B * T, out_width), not valid.full
                else:
                    src = dst = np.arange(B, dtype=np.int64)
                    shape, zero = (B, out_width), False
                if not eng.one_thread_steps(prepared, src.shape[0]):
                    return None
                ops.append((_ROWS, prepared, src, dst, shape, zero))
                width = out_width
                if per_step and packed:
                    final = "packed"
            else:
                return None  # a numpy step
        if width is None:
            return None
        if per_step and final is None:
            final = "reshape"
            if packed:
                final = None if valid.full else valid.flat
        return cls(tuple(ops), model._scoring, model.dtype, (B, T, width), final)

    def __call__(self, eng, x: np.ndarray, lengths: np.ndarray, row_name):
        """(y, states) as `Model.predict` gives them for ``x`` (checked by `rnnjit.inputs`) and ``lengths``."""
        B, T, _ = self.shape
        # the current value: (B*T, F) padded rows per step, or (B, F); None: the token ids ``x``
        rows = x.reshape(B * T, x.shape[2]) if x.ndim == 3 else None
        states = []
        for op in self.ops:
            kind = op[0]
            if kind == _CHECK:
                op[1](op[2], self.scoring, x, lengths, row_name)
            elif kind == _RNN:
                _, prepared, plan, table, select, has_c = op
                y_in = x if table is not None else rows.reshape(B, T, rows.shape[1])
                y, hn, cn = eng.run_planned(prepared, plan, y_in, lengths, select, table)
                rows = y.reshape(B * T, y.shape[2]) if y.ndim == 3 else y
                states.append((hn, cn) if has_c else hn)
            else:
                _, prepared, src, dst, shape, zero = op
                out = (np.zeros if zero else np.empty)(shape, self.dtype)
                eng.run_steps(prepared, rows, src, out, dst, 1)
                rows = out
        final = self.final
        if isinstance(final, np.ndarray):  # packed per-step output of a module: its valid steps
            y = rows[final]
        elif final == "reshape":
            y = rows.reshape(B, T, rows.shape[1])
        else:
            y = rows
        return np.ascontiguousarray(y, dtype=self.dtype), states


def small_call(model, eng, mode: str, lengths: np.ndarray, T: int, packed: bool) -> SmallCall | None:
    """``model``'s kept `SmallCall` for these lengths (built on the first call), or None (also for an engine
    without one-thread plans: the numpy reference)."""
    if not hasattr(eng, "one_thread_plan"):
        return None
    cache = model._small_calls
    key = (eng.__name__, eng.one_thread_key(), mode, packed, T, lengths.tobytes())
    found = cache.get(key, cache)
    if found is cache:
        found = SmallCall.build(model, eng, mode, lengths, T, packed)
        if len(cache) >= SMALL_CALLS:
            cache.clear()
        cache[key] = found
    return found
