"""The architecture description shared by import, bundle, engines and I/O.

`RNNSpec` describes the recurrent stack in PyTorch's terms; a head is a tuple
of `HeadStep`. Both round-trip through plain JSON dicts (the bundle config).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
OUTPUT_MODES = ("last", "final", "all")
ACTIVATIONS = ("sigmoid", "softmax", "log_softmax", "tanh", "relu", "identity")


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
class HeadStep:
    """One step of the head: a linear layer (by state_dict prefix) or an activation.

    For ``kind == "linear"``: ``name`` is the prefix without the trailing dot
    (``"fc"``, ``"decoder.2"``), ``in_features``/``out_features`` its shape and
    ``bias`` whether ``name + ".bias"`` exists. For ``kind == "activation"``:
    ``name`` is one of `ACTIVATIONS`.
    """

    kind: str
    name: str
    in_features: int = 0
    out_features: int = 0
    bias: bool = False

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "activation":
            return {"kind": "activation", "name": self.name}
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HeadStep:
        return cls(
            kind=str(d["kind"]),
            name=str(d["name"]),
            in_features=int(d.get("in_features", 0)),
            out_features=int(d.get("out_features", 0)),
            bias=bool(d.get("bias", False)),
        )
