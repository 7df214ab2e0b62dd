"""Torch models for chain tests: real nn modules wired the way PyTorch tutorials wire them.

`ChainNet` holds named modules (so the state_dict keys are ``emb.weight``,
``lstm.weight_ih_l0``, ...) and runs them in order in its own ``forward``,
written with PyTorch's modules and the idioms users write (packing, the
transpose around BatchNorm1d/Conv1d, a masked mean). It is the oracle for
rnnjit's chain; it shares no code with rnnjit or rnnjit/cli/_torch_check.py.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

class L2Norm(nn.Module):
    """``F.normalize(x, p=2, dim=-1, eps=eps)`` as a module, the way a forward() writes it inline."""

    def __init__(self, eps: float = 1e-12):
        super().__init__()
        self.eps = eps

    def forward(self, x):
        return nn.functional.normalize(x, p=2.0, dim=-1, eps=self.eps)


OPS = {
    "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU, "softmax": lambda: nn.Softmax(dim=-1), "log_softmax": lambda: nn.LogSoftmax(dim=-1),
    "dropout": lambda: nn.Dropout(0.5),
    "l2norm": L2Norm,
}


class ChainNet(nn.Module):
    """``steps``: ``(name, module)`` pairs, or an op name (``"relu"``, ``"pool:mean"``, ``"dropout"``).

    ``output`` is what the last recurrent module hands on ("last", "final", "all").
    """

    def __init__(self, steps, *, output="last", seed=0, scale=1.0):
        super().__init__()
        torch.manual_seed(seed)
        self.order = []  # (kind, module name or pooling, --chain token)
        for i, s in enumerate(steps):
            if isinstance(s, str) and s.startswith("pool:"):
                self.order.append(("pool", s[5:], s))
            elif isinstance(s, str):
                self.add_module(f"op{i}", OPS[s]())  # parameter-free: no state_dict keys
                self.order.append(("mod", f"op{i}", s))
            else:
                self.add_module(*s)
                # a bias-free LayerNorm's lone weight could be a PReLU's: the chain names its kind
                bare_ln = isinstance(s[1], nn.LayerNorm) and s[1].elementwise_affine and s[1].bias is None
                self.order.append(("mod", s[0], f"layernorm:{s[0]}" if bare_ln else s[0]))
        self.output = output
        with torch.no_grad():
            for p in self.parameters():
                p.mul_(scale)
            for m in self.modules():
                if isinstance(m, nn.BatchNorm1d):  # trained statistics, not the init ones
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
                    m.num_batches_tracked.fill_(100)
        self.eval()

    def chain_spec(self) -> str:
        """How rnnjit's --chain spells this model."""
        return ",".join(tok for _, _, tok in self.order)

    def forward(self, x, lengths):
        T = x.shape[1]
        lengths = torch.as_tensor(np.asarray(lengths), dtype=torch.int64)
        mask = (torch.arange(T)[None, :] < lengths[:, None])[:, :, None]
        rnns = [n for n, m in self.named_children() if isinstance(m, nn.RNNBase)]
        y = x
        for kind, name, _ in self.order:
            if kind == "pool":
                how = name
                if how == "last":
                    y = y[torch.arange(y.shape[0]), lengths - 1]
                elif how == "max":
                    y = y.masked_fill(~mask, float("-inf")).amax(dim=1)
                elif how == "sum":
                    y = (y * mask).sum(dim=1)
                else:
                    y = (y * mask).sum(dim=1) / lengths[:, None].to(y.dtype)
                continue
            m = getattr(self, name)
            if isinstance(m, nn.RNNBase):
                packed = pack_padded_sequence(y, lengths, batch_first=True, enforce_sorted=False)
                out, state = m(packed)
                out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
                if name != rnns[-1] or self.output == "all":
                    y = out
                elif self.output == "last":
                    y = out[torch.arange(out.shape[0]), lengths - 1]
                else:
                    hn = state[0] if isinstance(state, tuple) else state
                    D = 2 if m.bidirectional else 1
                    y = torch.cat([hn[-D + d] for d in range(D)], dim=1)
            elif isinstance(m, (nn.BatchNorm1d, nn.Conv1d)) and y.dim() == 3:
                y = m(y.transpose(1, 2)).transpose(1, 2)  # (B, C, T) as these modules want
            elif isinstance(m, nn.Conv1d):
                y = m(y[:, :, None])[:, :, 0]
            else:
                y = m(y)
        if y.dim() == 3:
            y = y * mask
        return y

    def run(self, x, lengths, dtype=torch.float32):
        xt = torch.from_numpy(np.asarray(x))
        if xt.is_floating_point():
            xt = xt.to(dtype)
        with torch.no_grad():
            return self.to(dtype)(xt, lengths).numpy()


def token_batch(rng, vocab: int, B: int, T: int):
    """Token ids (B, T) with variable lengths (the first is T); padding holds id 0."""
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0] = T
    ids = rng.integers(1, vocab, size=(B, T))
    ids[np.arange(T)[None, :] >= lengths[:, None]] = 0
    return ids, lengths


def float_batch(rng, width: int, B: int, T: int, dtype="float32"):
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0] = T
    x = rng.standard_normal((B, T, width))
    x[np.arange(T)[None, :] >= lengths[:, None]] = 7.0  # padding a kernel must not read
    return x.astype(dtype), lengths
