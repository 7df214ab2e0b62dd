"""What ``convert`` had to assume because the weights cannot tell, each said in one line.

A state_dict holds tensors, not ``forward()``: nn.RNN's nonlinearity, the
activations around linear layers, what the model selects from the recurrent
output (the last step, ``hn``, every step, a pooling), and the ``eps`` of
LayerNorm/BatchNorm are not in it. When the user did not state one of these
and the default could change the numbers, `find` returns a record saying what
was assumed and the flag that states it. ``convert`` stores the records in the
bundle config (``assumed``), the CLI prints each as a ``note:`` line, ``inspect``
lists them and ``verify --against`` names them as "not checkable from weights":
torch built from the bundle's config agrees with the bundle by construction.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from rnnjit.spec import Step


def find(
    chain: Sequence[Step],
    *,
    output_given: bool,
    nonlinearity_given: bool,
    head_inferred: bool,
    explicit_eps: Collection[str] = (),
    weight_dtypes: Collection[str] = (),
    explicit_nonlinearity: Collection[str] = (),
    explicit_max_norm: Collection[str] = (),
) -> list[dict[str, Any]]:
    """The defaults ``convert`` used that the user did not state and that could change the scores.

    Parameters
    ----------
    chain : the converted chain.
    output_given : the output mode came from a flag or the config file.
    nonlinearity_given : ``--nonlinearity`` (or the config's) was given.
    head_inferred : the head was read from the weights (neither ``--head`` nor ``--chain``).
    explicit_eps : names of norm steps whose ``eps`` the chain stated (``ln:eps=1e-6``).
    weight_dtypes : dtypes of the weights as the file holds them.
    explicit_nonlinearity : names of nn.RNN modules whose nonlinearity the chain stated (``rnn2:relu``).
    explicit_max_norm : names of embeddings whose max_norm the chain stated (``emb:max_norm=1.0`` or ``=none``).

    Returns
    -------
    list of dict
        ``{"what", "assumed", "label", "note"}``: ``label`` is a few words for
        a list ("output mode last"), ``note`` the one line for people, ending
        with how to state the right value.
    """
    found: list[dict[str, Any]] = []
    rnn_steps = [s for s in chain if s.kind == "rnn"]
    for s in rnn_steps:
        if s.rnn.cell == "rnn_tanh" and not nonlinearity_given and s.name not in explicit_nonlinearity:
            found.append(_record(
                "nonlinearity", "tanh", f"nn.RNN {_name(s)} nonlinearity tanh",
                f"nn.RNN {_name(s)}: nonlinearity assumed tanh (not in the weights); "
                f"if it was built with nonlinearity='relu': --nonlinearity relu"
                f"{f' (or {s.name}:relu in --chain for this module only)' if len(rnn_steps) > 1 else ''}",
            ))
    if head_inferred:
        found.append(_head_record(chain))
    if not output_given and not any(s.kind == "pool" for s in chain):
        found.append(_output_record(chain))
    for s in chain:
        if s.kind in ("layernorm", "batchnorm") and (s.name or "layernorm") not in explicit_eps:
            what = "LayerNorm" if s.kind == "layernorm" else "BatchNorm1d"
            token = s.label()
            found.append(_record(
                "eps", f"{s.eps:g}", f"{what} {token!r} eps {s.eps:g}",
                f"{what} {token!r}: eps assumed {s.eps:g} (PyTorch's default; not in the weights); "
                f"if it was built with another eps, write it in the chain: {token}:eps=1e-6",
            ))
    for s in chain:
        if s.kind == "embedding" and s.name not in explicit_max_norm:
            found.append(_record(
                "max_norm", "none", f"embedding {s.label()!r} without max_norm",
                f"embedding {s.label()!r}: assumed no max_norm (nn.Embedding's default; not in the weights); "
                f"if it was built with max_norm=M, write {s.label()}:max_norm=M in --chain "
                f"({s.label()}:max_norm=none states the default)",
            ))
    for act, (param, module) in _ACTIVATION_DEFAULTS.items():
        if any(s.kind == "activation" and s.name == act for s in chain):
            found.append(_record(
                "activation_parameter", param, f"{act} {param}",
                f"{act} assumed {param} ({module}'s default; not in the weights); rnnjit runs no other "
                f"value, so a model built with another one cannot be scored",
            ))
    for half, call, rounding in (("float16", "half", "1e-3"), ("bfloat16", "bfloat16", "1e-2")):
        if half in weight_dtypes:
            found.append(_record(
                "dtype", "float32", f"{half} weights computed in float32",
                f"the weights are {half} (model.{call}()); rnnjit computes in float32 (the {half} values widen "
                f"exactly), so scores equal torch's for model.float() and differ from a {half} torch run by its "
                f"rounding (about {rounding}); convert model.float().state_dict() to state it",
            ))
    return [f for f in found if f]


# The parameter each activation of the chain runs with; a model's own value is not in its state_dict.
_ACTIVATION_DEFAULTS = {
    "leaky_relu": ("negative_slope=0.01", "nn.LeakyReLU"),
    "elu": ("alpha=1.0", "nn.ELU"),
    "gelu": ("approximate='none' (the exact erf form)", "nn.GELU"),
}


def _record(what: str, assumed: str, label: str, note: str) -> dict[str, Any]:
    return {"what": what, "assumed": assumed, "label": label, "note": note}


def _name(step: Step) -> str:
    return repr(step.name) if step.name else "(the saved module)"


def _head_record(chain: Sequence[Step]) -> dict[str, Any] | None:
    last_rnn = max(i for i, s in enumerate(chain) if s.kind == "rnn")
    tail = [s for s in chain[last_rnn + 1:] if s.kind == "linear"]
    if not tail:
        return None  # no linear layer in the file: raw recurrent outputs, which the weights do say
    fc = tail[-1].label()
    inferred = ",".join(s.label() for s in chain)
    return _record(
        "head_activation", "none", f"no activation around {fc!r}",
        f"chain inferred as {inferred!r}: head {fc!r} assumed to have no activation (not in the weights): "
        f"scores are its raw outputs (logits); if forward() applies one, state the head: --head '{fc},sigmoid' "
        f"(or softmax, log_softmax; 'relu,{fc}' for one before it)",
    )


def _output_record(chain: Sequence[Step]) -> dict[str, Any]:
    last_rnn = max(i for i, s in enumerate(chain) if s.kind == "rnn")
    spec = chain[last_rnn].rnn
    tokens = [s.label() for s in chain]
    pooled = ",".join([*tokens[: last_rnn + 1], "pool:mean", *tokens[last_rnn + 1:]])
    if spec.bidirectional:
        note = (
            "output mode assumed last: [forward, backward] outputs at each sequence's last valid step, what "
            "out[:, -1] gives; a forward() that uses hn, e.g. torch.cat((hn[-2], hn[-1]), 1), gets "
            "other numbers: --output-mode final (both exist and differ for a bidirectional module)"
        )
    else:
        note = (
            "output mode assumed last: the output at each sequence's last valid step (equal to hn[-1]); "
            f"to score every step: --output-mode all; to pool over time: --chain '{pooled}'"
        )
    return _record("output_mode", "last", "output mode last", note)


def labels(config: dict[str, Any]) -> list[str] | None:
    """The short labels of a bundle config's assumptions; None for a bundle converted before they were recorded."""
    if "assumed" not in config:
        return None
    return [str(a.get("label", a.get("what", "?"))) for a in config.get("assumed") or []]
