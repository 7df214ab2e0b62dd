"""Run PyTorch on a bundle's reference input (only when torch is importable).

Used by ``rnnjit verify --against``; nothing else in rnnjit imports torch.
"""

from __future__ import annotations

import importlib.util

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
        sd = torch.load(str(weight_file), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - safetensors or npz: read it torch-free, run torch on it
        from rnnjit.formats import read_state_dict

        arrays, _ = read_state_dict(weight_file)
        sd = {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}
    if not isinstance(sd, dict):
        return {"skipped": "the file does not hold a state_dict"}
    for wrap in ("state_dict", "model", "model_state_dict", "net"):
        if wrap in sd and isinstance(sd[wrap], dict) and not any(torch.is_tensor(v) for v in sd.values()):
            sd = sd[wrap]
            break
    keys = set(model.weights)
    for strip in ("", "module.", "model."):
        if all(strip + k in sd for k in keys):
            sd = {k: sd[strip + k] for k in keys}
            break
    else:
        return {"skipped": "the file's keys do not match the bundle's (prefix?)"}

    s = model.spec
    dtype = torch.float64 if model.dtype == np.float64 else torch.float32
    kw = dict(num_layers=s.num_layers, bias=s.bias, batch_first=True, bidirectional=s.bidirectional)
    if s.cell == "lstm":
        net = torch.nn.LSTM(s.input_size, s.hidden_size, proj_size=s.proj_size, **kw)
    elif s.cell == "gru":
        net = torch.nn.GRU(s.input_size, s.hidden_size, **kw)
    else:
        net = torch.nn.RNN(s.input_size, s.hidden_size, nonlinearity=s.cell.split("_")[1], **kw)
    net = net.to(dtype)
    net.load_state_dict({k[len(s.prefix):]: v.to(dtype) for k, v in sd.items() if k.startswith(s.prefix)
                         and k[len(s.prefix):].split("_l")[0] in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")})
    x = np.asarray(ref["x"], dtype=model.dtype)
    lengths = np.asarray(ref["lengths"], dtype=np.int64)
    mode = ref.get("output", model.output)
    with torch.no_grad():
        xt = torch.from_numpy(x)
        packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.from_numpy(lengths), batch_first=True,
                                                         enforce_sorted=False)
        out, hn = net(packed)
        hn = hn[0] if isinstance(hn, tuple) else hn
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        B = x.shape[0]
        if mode == "all":
            y = out
        elif mode == "last":
            y = out[torch.arange(B), torch.from_numpy(lengths - 1)]
        else:
            D = s.num_directions
            y = torch.cat([hn[(s.num_layers - 1) * D + d] for d in range(D)], dim=1)
        for step in model.head:
            if step.kind == "linear":
                w = sd[f"{step.name}.weight"].to(dtype)
                w = w.reshape(w.shape[0], w.shape[1])
                y = y @ w.T
                if step.bias:
                    y = y + sd[f"{step.name}.bias"].to(dtype)
            else:
                y = {
                    "sigmoid": torch.sigmoid,
                    "softmax": lambda v: torch.softmax(v, dim=-1),
                    "log_softmax": lambda v: torch.log_softmax(v, dim=-1),
                    "tanh": torch.tanh,
                    "relu": torch.relu,
                    "identity": lambda v: v,
                }[step.name](y)
        if mode == "all":
            mask = torch.arange(x.shape[1])[None, :] < torch.from_numpy(lengths)[:, None]
            y = y * mask[:, :, None].to(y.dtype)
    expected = y.numpy().astype(np.float64)
    got = model.predict(x, lengths=lengths, output=mode, engine=engine).astype(np.float64)
    err = float(np.max(np.abs(got - expected))) if got.size else 0.0
    tol = 10 * tolerance(model.dtype, float(np.max(np.abs(expected))) if expected.size else 1.0)
    return {"ok": err <= tol, "max_abs_error": err, "tolerance": tol, "n_sequences": int(B),
            "torch_version": torch.__version__}
