"""The architecture description shared by import, bundle, engines and I/O.

A model is a chain of `Step`: an optional embedding, one or more recurrent
modules (each described by an `RNNSpec` in PyTorch's terms), pooling over
time, normalization, linear layers and activations. Everything round-trips
through plain JSON dicts (the bundle config). What each kind of step owns,
takes, gives and does is its entry in the step-kind table (`rnnjit.kinds`);
`chain_widths` checks that the widths of consecutive steps agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# the names of cells, activations and poolings are the table's; spec hands them on as before
from rnnjit.kinds import ACTIVATIONS, CELLS, KINDS, POOLS, StepKind  # noqa: F401

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
OUTPUT_MODES = ("last", "final", "all")
PRECISIONS = ("float32", "bf16", "int8")
"""What the recurrent products compute in (``rnnjit.load(..., precision=)``, ``--precision``): ``float32`` is
the model's own dtype (float64 too when loaded with ``dtype="float64"``); ``bf16`` and ``int8`` are opt-in
(the numba engine's table: `rnnjit.kernels.precision`)."""
STEP_KINDS = tuple(KINDS)


@dataclass(frozen=True)
class RNNSpec:
    """A PyTorch ``nn.RNN``/``nn.LSTM``/``nn.GRU`` module, as its constructor saw it.

    ``prefix`` is the state_dict prefix of the module including the trailing
    dot (``"lstm."``), or ``""`` when the module itself was saved.
    """

    cell: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    bias: bool = True
    proj_size: int = 0
    prefix: str = ""

    @property
    def gates(self) -> int:
        return GATES[self.cell]

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def h_out(self) -> int:
        """Size of h (and of each direction's per-step output)."""
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    @property
    def output_size(self) -> int:
        """Width of a per-step output of the last layer (directions concatenated)."""
        return self.num_directions * self.h_out

    @property
    def has_cell_state(self) -> bool:
        return self.cell == "lstm"

    def layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.output_size

    def suffixes(self):
        """Yield ``(layer, direction, suffix)`` with suffix like ``"_l1_reverse"``."""
        for layer in range(self.num_layers):
            for d in range(self.num_directions):
                yield layer, d, f"_l{layer}" + ("_reverse" if d else "")

    def direction_weights(self, weights, sfx: str) -> dict:
        """One layer-direction's weights by role: ih, hh, and b_ih, b_hh, hr when present."""
        p = self.prefix
        w = {"ih": weights[f"{p}weight_ih{sfx}"], "hh": weights[f"{p}weight_hh{sfx}"]}
        if self.bias:
            w["b_ih"] = weights[f"{p}bias_ih{sfx}"]
            w["b_hh"] = weights[f"{p}bias_hh{sfx}"]
        if self.proj_size > 0:
            w["hr"] = weights[f"{p}weight_hr{sfx}"]
        return w

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every state_dict key of the module (with prefix) and its PyTorch shape."""
        g, h, p = self.gates, self.hidden_size, self.proj_size
        shapes: dict[str, tuple[int, ...]] = {}
        for layer, _, sfx in self.suffixes():
            pre = self.prefix
            shapes[f"{pre}weight_ih{sfx}"] = (g * h, self.layer_input_size(layer))
            shapes[f"{pre}weight_hh{sfx}"] = (g * h, self.h_out)
            if self.bias:
                shapes[f"{pre}bias_ih{sfx}"] = (g * h,)
                shapes[f"{pre}bias_hh{sfx}"] = (g * h,)
            if p > 0:
                shapes[f"{pre}weight_hr{sfx}"] = (p, h)
        return shapes

    def state_shapes(self, batch: int) -> tuple[tuple[int, int, int], tuple[int, int, int] | None]:
        """PyTorch shapes of h0/hn and c0/cn (None when the cell has no c)."""
        ld = self.num_layers * self.num_directions
        h = (ld, batch, self.h_out)
        c = (ld, batch, self.hidden_size) if self.has_cell_state else None
        return h, c

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RNNSpec:
        return cls(
            cell=str(d["cell"]),
            input_size=int(d["input_size"]),
            hidden_size=int(d["hidden_size"]),
            num_layers=int(d.get("num_layers", 1)),
            bidirectional=bool(d.get("bidirectional", False)),
            bias=bool(d.get("bias", True)),
            proj_size=int(d.get("proj_size", 0)),
            prefix=str(d.get("prefix", "")),
        )


@dataclass(frozen=True)
class Step:
    """One step of a model's chain; its kind's entry in `rnnjit.kinds.KINDS` says what it is.

    ``kind`` is one of `STEP_KINDS`. ``name`` is the state_dict prefix without
    the trailing dot for steps with weights (``"emb"``, ``"lstm"``, ``"fc"``,
    ``"decoder.2"``; ``""`` when the module itself was saved), the pooling
    method for ``pool`` (one of `POOLS`) and the function for ``activation``
    (one of `ACTIVATIONS`).

    - ``embedding``: ``in_features`` rows (num_embeddings), ``out_features``
      wide (embedding_dim); consumes integer token ids; ``max_norm`` as
      ``nn.Embedding(max_norm=...)`` (rows renormalized to it, norm 2), or None.
    - ``rnn``: ``rnn`` holds the module's `RNNSpec`.
    - ``layernorm``: over the last dim of width ``in_features``; ``affine``
      (a ``weight``), ``bias``, ``eps``. Without ``name``, a parameter-free
      ``F.layer_norm``.
    - ``batchnorm``: ``nn.BatchNorm1d`` in eval mode (running statistics) over
      ``in_features`` channels, ``affine``, ``eps``.
    - ``linear``: ``weight`` (out, in) or a Conv1d's (out, in, 1), ``bias``.
    - ``l2norm``: ``F.normalize(p=2, dim=-1, eps=eps)``, no weights.
    - ``pool``, ``activation``, ``dropout`` (a no-op) have no weights.
    """

    kind: str
    name: str
    in_features: int = 0
    out_features: int = 0
    bias: bool = False
    affine: bool = False
    eps: float = 1e-5
    rnn: RNNSpec | None = None
    max_norm: float | None = None

    @property
    def prefix(self) -> str:
        """State_dict prefix with the trailing dot (``""`` for the module itself)."""
        return f"{self.name}." if self.name else ""

    @property
    def entry(self) -> StepKind:
        """The kind's entry in the step-kind table."""
        return KINDS[self.kind]

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every state_dict key the step reads and its PyTorch shape (a Conv1d's is checked apart)."""
        return self.entry.shapes(self)

    def label(self) -> str:
        """How the step is written in ``--chain``."""
        return self.entry.label(self)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "name": self.name}
        for name in self.entry.fields:
            value = getattr(self, name)
            if value is not None:
                d[name] = value.to_dict() if name == "rnn" else value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        rnn = RNNSpec.from_dict(d["rnn"]) if d.get("rnn") is not None else None
        entry = KINDS.get(str(d["kind"]))
        eps = entry.defaults().get("eps", 1e-5) if entry is not None else 1e-5
        return cls(
            kind=str(d["kind"]),
            name=str(d["name"]),
            in_features=int(d.get("in_features", 0)),
            out_features=int(d.get("out_features", 0)),
            bias=bool(d.get("bias", False)),
            affine=bool(d.get("affine", False)),
            eps=float(d.get("eps", eps)),
            rnn=rnn,
            max_norm=None if d.get("max_norm") is None else float(d["max_norm"]),
        )


# The head of version-1 bundles: a chain of linear layers and activations.
HeadStep = Step


def rnn_step(spec: RNNSpec) -> Step:
    """The chain step of a recurrent module."""
    return Step("rnn", spec.prefix[:-1] if spec.prefix else "", rnn=spec)


def recurrent_specs(chain) -> tuple[RNNSpec, ...]:
    """The `RNNSpec` of every recurrent module, in chain order."""
    return tuple(s.rnn for s in chain if KINDS[s.kind].recurrent)


def check_step(step: Step) -> None:
    """A known kind, and what its entry's ``check`` asks (a known activation, pooling method, cell...); ValueError otherwise."""
    if step.kind not in KINDS:
        raise ValueError(f"step kind {step.kind!r} is not known; expected one of {', '.join(STEP_KINDS)}")
    entry = KINDS[step.kind]
    if step.max_norm is not None and entry.option("max_norm") is None:
        owners = " or ".join(k for k, e in KINDS.items() if e.option("max_norm"))
        raise ValueError(f"max_norm {step.max_norm!r} of step {step.name!r}: only an {owners} has one, a positive number")
    entry.check(step)


def input_width(chain) -> int | None:
    """Values per input step the chain takes: those of the first step that fixes a width
    (activations, pooling and parameter-free norms do not); None when the first step reads token ids."""
    for step in chain:
        entry = KINDS[step.kind]
        if entry.reads_tokens:
            return None
        if (takes := entry.takes(step)) is not None:
            return takes
    return None


def chain_widths(chain, input_width: int | None = None) -> int:
    """Check that consecutive steps agree on widths; return the chain's output width.

    Rules: a step that reads token ids only first; at least one recurrent
    module; at most one pooling over time, after the last recurrent module.
    ``input_width`` is the width of a float input (None: taken from the first
    step that fixes it).

    Raises
    ------
    ValueError
        Naming the step whose input width disagrees with what it receives.
    """
    chain = list(chain)
    for step in chain:
        check_step(step)
    rnns = [i for i, s in enumerate(chain) if KINDS[s.kind].recurrent]
    if not rnns:
        raise ValueError("the chain has no recurrent module; rnnjit scores RNN/LSTM/GRU models")
    pools = [i for i, s in enumerate(chain) if KINDS[s.kind].pools_time]
    if len(pools) > 1 or (pools and pools[0] < rnns[-1]):
        raise ValueError("the chain may pool over time once, after the last recurrent module")
    width = input_width
    for i, step in enumerate(chain):
        entry = KINDS[step.kind]
        if entry.reads_tokens and i:
            raise ValueError(f"{step.kind} {step.name!r} must be the first step (it reads token ids)")
        takes = entry.takes(step)
        if takes is not None:
            if width is not None and takes != width:
                what = "the input" if i == 0 else f"{chain[i - 1].label()!r}"
                raise ValueError(f"{step.label()!r} takes {takes} values but {what} gives {width}")
            width = takes
        width = entry.gives(step, width)
    return int(width)
