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

from rnnjit.kinds import KINDS, record
from rnnjit.spec import Step

# The order of the notes: the module, what it hands on, then each step's settings, then the file.
_ORDER = ("nonlinearity", "head_activation", "output_mode", "eps", "max_norm", "activation_parameter", "dtype")


def find(
    chain: Sequence[Step],
    *,
    output_given: bool,
    nonlinearity_given: bool,
    head_inferred: bool,
    stated: Sequence[Collection[str]] | None = None,
    weight_dtypes: Collection[str] = (),
) -> list[dict[str, Any]]:
    """The defaults ``convert`` used that the user did not state and that could change the scores.

    Parameters
    ----------
    chain : the converted chain.
    output_given : the output mode came from a flag or the config file.
    nonlinearity_given : ``--nonlinearity`` (or the config's) was given.
    head_inferred : the head was read from the weights (neither ``--head`` nor ``--chain``).
    stated : per chain step, the options its ``--chain`` token stated (``ln:eps=1e-6`` states
        ``eps``, ``rnn2:relu`` ``nonlinearity``); None when the chain was not written out.
    weight_dtypes : dtypes of the weights as the file holds them.

    Returns
    -------
    list of dict
        ``{"what", "assumed", "label", "note"}``: ``label`` is a few words for
        a list ("output mode last"), ``note`` the one line for people, ending
        with how to state the right value. Each step kind declares its own
        guesses (`rnnjit.kinds.StepKind.guesses`).
    """
    found: list[dict[str, Any]] = []
    for i, step in enumerate(chain):
        said = stated[i] if stated is not None else ()
        for option, rec in KINDS[step.kind].guesses(step, chain):
            if option in said or (option == "nonlinearity" and nonlinearity_given):
                continue
            if all(rec["label"] != f["label"] for f in found):  # one note for two relus
                found.append(rec)
    if head_inferred:
        found.append(_head_record(chain))
    if not output_given and not any(KINDS[s.kind].pools_time for s in chain):
        found.append(_output_record(chain))
    for half, call, rounding in (("float16", "half", "1e-3"), ("bfloat16", "bfloat16", "1e-2")):
        if half in weight_dtypes:
            found.append(record(
                "dtype", "float32", f"{half} weights computed in float32",
                f"the weights are {half} (model.{call}()); rnnjit computes in float32 (the {half} values widen "
                f"exactly), so scores equal torch's for model.float() and differ from a {half} torch run by its "
                f"rounding (about {rounding}); convert model.float().state_dict() to state it",
            ))
    return sorted((f for f in found if f), key=lambda f: _ORDER.index(f["what"]))


def _head_record(chain: Sequence[Step]) -> dict[str, Any] | None:
    last_rnn = max(i for i, s in enumerate(chain) if KINDS[s.kind].recurrent)
    tail = [s for s in chain[last_rnn + 1:] if s.kind == "linear"]
    if not tail:
        return None  # no linear layer in the file: raw recurrent outputs, which the weights do say
    fc = tail[-1].label()
    inferred = ",".join(s.label() for s in chain)
    return record(
        "head_activation", "none", f"no activation around {fc!r}",
        f"chain inferred as {inferred!r}: head {fc!r} assumed to have no activation (not in the weights): "
        f"scores are its raw outputs (logits); if forward() applies one, state the head: head='{fc},sigmoid' "
        f"(or softmax, log_softmax; 'relu,{fc}' for one before it)",
    )


def _output_record(chain: Sequence[Step]) -> dict[str, Any]:
    last_rnn = max(i for i, s in enumerate(chain) if KINDS[s.kind].recurrent)
    spec = chain[last_rnn].rnn
    tokens = [s.label() for s in chain]
    pooled = ",".join([*tokens[: last_rnn + 1], "pool:mean", *tokens[last_rnn + 1:]])
    if spec.bidirectional:
        note = (
            "output mode assumed last: [forward, backward] outputs at each sequence's last valid step, what "
            "out[:, -1] gives; a forward() that uses hn, e.g. torch.cat((hn[-2], hn[-1]), 1), gets "
            "other numbers: output='final' (both exist and differ for a bidirectional module)"
        )
    else:
        note = (
            "output mode assumed last: the output at each sequence's last valid step (equal to hn[-1]); "
            f"to score every step: output='all'; to pool over time: chain='{pooled}'"
        )
    return record("output_mode", "last", "output mode last", note)


def labels(config: dict[str, Any]) -> list[str] | None:
    """The short labels of a bundle config's assumptions; None for a bundle converted before they were recorded."""
    if "assumed" not in config:
        return None
    return [str(a.get("label", a.get("what", "?"))) for a in config.get("assumed") or []]
