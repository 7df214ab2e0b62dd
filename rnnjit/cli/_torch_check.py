"""Run PyTorch on a bundle's reference input (only when torch is importable).

Used by ``rnnjit verify --against``; nothing else in rnnjit imports torch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from rnnjit.kinds import KINDS


def torch_compare(model, weight_file, engine=None):
    """Compare model.predict with torch on the stored reference input.

    Returns None when torch is not installed, ``{"skipped": reason}`` when the
    comparison cannot run, else ``ok``, ``max_abs_error``, ``tolerance``,
    ``n_sequences``, ``torch_version``.
    """
    if importlib.util.find_spec("torch") is None:
        return None
    ref = model.config.get("reference")
    if not ref:
        return {"skipped": "the bundle stores no reference input"}
    import torch

    from rnnjit.verify import tolerance

    try:  # torch reads the file itself, so this also checks rnnjit's reader
        obj = torch.load(str(weight_file), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - safetensors or npz: read it torch-free, run torch on it
        from rnnjit.formats import read_state_dict

        arrays, _ = read_state_dict(weight_file)
        sd = {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}
    else:
        sd = _unwrap_as_convert_does(torch, obj, weight_file)
    missing = sorted(set(model.weights) - set(sd))
    if missing:
        return {"skipped": f"tensor {missing[0]!r} of the bundle is not in {Path(weight_file).name} as torch reads it "
                f"({len(missing)} missing; is it the file the bundle was converted from?)"}
    sd = {k: sd[k] for k in model.weights}

    dtype = torch.float64 if model.dtype == np.float64 else torch.float32
    x = np.asarray(ref["x"], dtype=np.int64 if model.takes_tokens else model.dtype)
    lengths = np.asarray(ref["lengths"], dtype=np.int64)
    mode = ref.get("output", model.output)
    B = x.shape[0]
    with torch.no_grad():
        y = torch_chain(torch, model, {k: v.to(dtype) for k, v in sd.items()}, torch.from_numpy(x), lengths, mode)
    expected = y.numpy().astype(np.float64)
    got = model.predict(x, lengths=lengths, output=mode, engine=engine).astype(np.float64)
    err = float(np.max(np.abs(got - expected))) if got.size else 0.0
    tol = 10 * tolerance(model.dtype, float(np.max(np.abs(expected))) if expected.size else 1.0)
    return {"ok": err <= tol, "max_abs_error": err, "tolerance": tol, "n_sequences": int(B),
            "torch_version": torch.__version__}


def _unwrap_as_convert_does(torch, obj, weight_file):
    """The state_dict inside what ``torch.load`` returned, found by convert's own rules.

    `rnnjit.formats.checkpoint.unwrap` and `strip_prefix` (what `convert`
    runs) see the checkpoint with torch's tensors as numpy arrays, so a
    wrapper convert unwraps (``{"model_state": sd}``, ``module.``, ...) is
    unwrapped here the same way.
    """
    from rnnjit.formats import checkpoint

    def plain(node, seen):
        if torch.is_tensor(node):
            t = node.detach().cpu()
            return (t.float() if t.dtype == torch.bfloat16 else t).numpy()
        if isinstance(node, dict) and id(node) not in seen:
            return {k: plain(v, seen | {id(node)}) for k, v in node.items()}
        return node

    flat, _, _ = checkpoint.unwrap(plain(obj, frozenset()), Path(weight_file).name)
    sd, _, _ = checkpoint.strip_prefix(flat)
    return {k: torch.from_numpy(np.array(v)) for k, v in sd.items() if isinstance(v, np.ndarray)}


def torch_chain(torch, model, sd, x, lengths, mode):
    """PyTorch's own modules and functions, step by step (each kind's ``torch`` in `rnnjit.kinds`), on the weights torch read from the file."""
    lens = torch.from_numpy(lengths)
    last_rnn = max(i for i, s in enumerate(model.chain) if KINDS[s.kind].recurrent)
    y = x
    for i, step in enumerate(model.chain):
        y = KINDS[step.kind].torch(torch, step, sd, y, lens, mode if i == last_rnn else "all")
    if y.dim() == 3:
        mask = torch.arange(x.shape[1])[None, :] < lens[:, None]
        y = y * mask[:, :, None].to(y.dtype)
    return y
