"""Feature columns in the shapes users have, rewritten as a list of steps (no copy of the values).

`rnnjit.io.arrow.decode_features` decodes ``list<list<num>>`` and its
fixed-size variants; the shapes below are rewritten to one of those first by
building new Arrow arrays over the same value buffers.
"""

from __future__ import annotations

import pyarrow as pa

from rnnjit.errors import InputTypeError


def is_list_type(t: pa.DataType) -> bool:
    """Any Arrow list: list, large_list or fixed_size_list (the one check every reader uses)."""
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def is_numeric_type(t: pa.DataType) -> bool:
    """An integer or floating type: what a feature or state value may be."""
    return pa.types.is_floating(t) or pa.types.is_integer(t)


def as_steps(arr: pa.Array, input_size: int, column: str) -> pa.Array:
    """The shapes users have, as a list of steps: list<fixed_size_list<num>[I]> or list<list<num>>.

    - ``arrow.fixed_shape_tensor`` of shape (T, I) (or (T,) when I is 1): one
      (T, I) block per row, stored row-major;
    - ``list<num>`` / ``fixed_size_list<num>[T]`` for a model with input_size 1:
      a univariate series, one value per step.
    ``fixed_size_list<fixed_size_list<num>[I]>[T]`` needs nothing: offsets are
    computed for any list-like type.
    """
    t = arr.type
    if getattr(t, "extension_name", "") == "arrow.fixed_shape_tensor":
        shape, perm = list(t.shape), t.permutation
        if perm is not None and list(perm) != sorted(perm):
            raise InputTypeError(
                f"column {column!r} is a tensor with permutation {list(perm)}; expected row-major (T, I) blocks; "
                "write it with the default dimension order"
            )
        if len(shape) == 1:
            shape = [shape[0], 1]
        if len(shape) != 2:
            raise InputTypeError(
                f"column {column!r} holds tensors of shape {tuple(t.shape)}; expected (T, {input_size}) per row"
            )
        storage = arr.storage
        steps = pa.FixedSizeListArray.from_arrays(storage.values, shape[1])
        return pa.Array.from_buffers(
            pa.list_(steps.type, shape[0]), len(storage), [storage.buffers()[0]],
            offset=storage.offset, children=[steps],
        )
    if is_list_type(t) and is_numeric_type(t.value_type):
        if input_size != 1:
            raise InputTypeError(
                f"column {column!r} has type {t}; expected list<list<float>> ({input_size} values per step): "
                "a list of numbers is one value per step, which fits only a model with input_size=1; "
                "write each step as a list, or use layout='long' for one row per step"
            )
        if pa.types.is_fixed_size_list(t):
            steps = pa.FixedSizeListArray.from_arrays(arr.values, 1)
            return pa.Array.from_buffers(
                pa.list_(steps.type, t.list_size), len(arr), [arr.buffers()[0]],
                offset=arr.offset, children=[steps],
            )
        steps = pa.FixedSizeListArray.from_arrays(arr.values, 1)
        outer = pa.large_list(steps.type) if pa.types.is_large_list(t) else pa.list_(steps.type)
        return pa.Array.from_buffers(outer, len(arr), arr.buffers()[:2], offset=arr.offset, children=[steps])
    return arr
