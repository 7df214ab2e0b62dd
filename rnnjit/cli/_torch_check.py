"""Run PyTorch on a bundle's reference input (only when torch is importable).

Used by ``rnnjit verify --against``; nothing else in rnnjit imports torch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


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


def _torch_rnn(torch, spec, sd):
    kw = dict(num_layers=spec.num_layers, bias=spec.bias, batch_first=True, bidirectional=spec.bidirectional)
    if spec.cell == "lstm":
        net = torch.nn.LSTM(spec.input_size, spec.hidden_size, proj_size=spec.proj_size, **kw)
    elif spec.cell == "gru":
        net = torch.nn.GRU(spec.input_size, spec.hidden_size, **kw)
    else:
        net = torch.nn.RNN(spec.input_size, spec.hidden_size, nonlinearity=spec.cell.split("_")[1], **kw)
    dtype = next(iter(sd.values())).dtype
    net = net.to(dtype)
    net.load_state_dict({k[len(spec.prefix):]: sd[k] for k in spec.expected_shapes()})
    return net


def torch_chain(torch, model, sd, x, lengths, mode):
    """PyTorch's own modules and functions, step by step, on the weights torch read from the file."""
    F = torch.nn.functional
    acts = {
        "sigmoid": torch.sigmoid, "softmax": lambda v: torch.softmax(v, dim=-1),
        "log_softmax": lambda v: torch.log_softmax(v, dim=-1), "tanh": torch.tanh, "relu": torch.relu,
        "identity": lambda v: v, "gelu": F.gelu, "elu": F.elu, "leaky_relu": F.leaky_relu,
    }
    lens = torch.from_numpy(lengths)
    T = x.shape[1]
    mask = (torch.arange(T)[None, :] < lens[:, None])
    last_rnn = max(i for i, s in enumerate(model.chain) if s.kind == "rnn")
    y = x
    for i, step in enumerate(model.chain):
        p = step.prefix
        if step.kind == "embedding":
            y = F.embedding(y, sd[f"{p}weight"].clone(), max_norm=step.max_norm)  # max_norm renormalizes in place
        elif step.kind == "rnn":
            net = _torch_rnn(torch, step.rnn, sd)
            packed = torch.nn.utils.rnn.pack_padded_sequence(y, lens, batch_first=True, enforce_sorted=False)
            out, hn = net(packed)
            hn = hn[0] if isinstance(hn, tuple) else hn
            out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
            sel = mode if i == last_rnn else "all"
            if sel == "all":
                y = out
            elif sel == "last":
                y = out[torch.arange(x.shape[0]), lens - 1]
            else:
                s, D = step.rnn, step.rnn.num_directions
                y = torch.cat([hn[(s.num_layers - 1) * D + d] for d in range(D)], dim=1)
        elif step.kind == "pool":
            m = mask[:, :, None]
            if step.name == "last":
                y = y[torch.arange(x.shape[0]), lens - 1]
            elif step.name == "max":
                y = y.masked_fill(~m, float("-inf")).max(dim=1).values
            else:
                y = (y * m).sum(dim=1)
                if step.name == "mean":
                    y = y / lens[:, None].to(y.dtype)
        elif step.kind == "linear":
            w = sd[f"{p}weight"]
            y = F.linear(y, w.reshape(w.shape[0], w.shape[1]), sd.get(f"{p}bias") if step.bias else None)
        elif step.kind == "layernorm":
            y = F.layer_norm(y, (y.shape[-1],), sd.get(f"{p}weight") if step.affine else None,
                             sd.get(f"{p}bias") if step.bias else None, step.eps)
        elif step.kind == "batchnorm":
            flat = y.reshape(-1, y.shape[-1])
            flat = F.batch_norm(flat, sd[f"{p}running_mean"], sd[f"{p}running_var"],
                                sd.get(f"{p}weight") if step.affine else None,
                                sd.get(f"{p}bias") if step.affine else None, False, 0.0, step.eps)
            y = flat.reshape(y.shape)
        elif step.kind == "activation":
            y = acts[step.name](y)
    if y.dim() == 3:
        y = y * mask[:, :, None].to(y.dtype)
    return y
