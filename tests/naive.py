"""A slow, obviously-correct reference: DESIGN.md §2 written as scalar loops.

One sequence at a time, each on its own length (so there is no padding and no
masking to get wrong: the reverse direction starts at the sequence's own last
step by construction), Python floats (float64) and ``math`` only. It shares
no code with rnnjit and does not use torch or BLAS.
"""

from __future__ import annotations

import math


def sigmoid(v: float) -> float:
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


def matvec(w, v, b=None):
    """w: list of rows; returns w @ v (+ b)."""
    out = []
    for j, row in enumerate(w):
        s = 0.0
        for k, wk in enumerate(row):
            s += wk * v[k]
        out.append(s + (b[j] if b is not None else 0.0))
    return out


def step(cell, p, x, h, c, H):
    """One step of one direction. ``p`` holds ih, hh, b_ih, b_hh (or None) and hr (or None)."""
    gi = matvec(p["ih"], x, p["b_ih"])
    gh = matvec(p["hh"], h, p["b_hh"])
    if cell == "lstm":
        g = [a + b for a, b in zip(gi, gh)]
        i = [sigmoid(v) for v in g[0:H]]
        f = [sigmoid(v) for v in g[H : 2 * H]]
        cand = [math.tanh(v) for v in g[2 * H : 3 * H]]
        o = [sigmoid(v) for v in g[3 * H : 4 * H]]
        c_new = [f[j] * c[j] + i[j] * cand[j] for j in range(H)]
        h_new = [o[j] * math.tanh(c_new[j]) for j in range(H)]
        if p["hr"] is not None:
            h_new = matvec(p["hr"], h_new)
        return h_new, c_new
    if cell == "gru":
        r = [sigmoid(gi[j] + gh[j]) for j in range(H)]
        z = [sigmoid(gi[H + j] + gh[H + j]) for j in range(H)]
        # the reset gate multiplies (W_hn h + b_hn): "linear_before_reset"
        n = [math.tanh(gi[2 * H + j] + r[j] * gh[2 * H + j]) for j in range(H)]
        return [(1.0 - z[j]) * n[j] + z[j] * h[j] for j in range(H)], None
    pre = [a + b for a, b in zip(gi, gh)]
    if cell == "rnn_tanh":
        return [math.tanh(v) for v in pre], None
    return [max(v, 0.0) for v in pre], None


def params(spec, weights, layer, d):
    sfx = f"_l{layer}" + ("_reverse" if d else "")
    pre = spec["prefix"]

    def get(name):
        key = f"{pre}{name}{sfx}"
        return weights[key].tolist() if key in weights else None

    return {"ih": get("weight_ih"), "hh": get("weight_hh"), "b_ih": get("bias_ih"), "b_hh": get("bias_hh"),
            "hr": get("weight_hr")}


def run_sequence(spec, weights, seq, h0=None, c0=None):
    """One sequence (list of T input vectors). Returns (outputs (T x D*H_out), hn, cn) as lists.

    ``spec`` is the bundle's ``rnn`` dict; ``h0``/``c0`` are (L*D) lists of vectors.
    """
    cell, H = spec["cell"], spec["hidden_size"]
    D = 2 if spec["bidirectional"] else 1
    h_out = spec["proj_size"] or H
    T = len(seq)
    hn, cn = [], []
    layer_in = [list(v) for v in seq]
    for layer in range(spec["num_layers"]):
        out = [[0.0] * (D * h_out) for _ in range(T)]
        for d in range(D):
            p = params(spec, weights, layer, d)
            k = layer * D + d
            h = list(h0[k]) if h0 is not None else [0.0] * h_out
            c = (list(c0[k]) if c0 is not None else [0.0] * H) if cell == "lstm" else None
            for t in (range(T - 1, -1, -1) if d else range(T)):
                h, c = step(cell, p, layer_in[t], h, c, H)
                out[t][d * h_out : (d + 1) * h_out] = h
            hn.append(h)
            cn.append(c)
        layer_in = out
    return layer_in, hn, cn


def apply_head(head, weights, v):
    for s in head:
        if s["kind"] == "linear":
            w = weights[s["name"] + ".weight"]
            w = w.reshape(w.shape[0], w.shape[1]).tolist()
            b = weights[s["name"] + ".bias"].tolist() if s.get("bias") else None
            v = matvec(w, v, b)
        elif s["name"] == "sigmoid":
            v = [sigmoid(a) for a in v]
        elif s["name"] == "tanh":
            v = [math.tanh(a) for a in v]
        elif s["name"] == "relu":
            v = [max(a, 0.0) for a in v]
        elif s["name"] in ("softmax", "log_softmax"):
            m = max(v)
            lse = m + math.log(sum(math.exp(a - m) for a in v))
            v = [math.exp(a - lse) if s["name"] == "softmax" else a - lse for a in v]
    return v


def predict(config, weights, seqs, output, h0=None, c0=None):
    """Scores per sequence: a vector for "last"/"final", a list of vectors for "all".

    ``h0``/``c0`` are PyTorch-shaped arrays (L*D, B, H) or None.
    """
    if "chain" in config:  # format_version 2: one recurrent module, then the head
        spec, head = config["chain"][0]["rnn"], config["chain"][1:]
    else:
        spec, head = config["rnn"], config["head"]
    D = 2 if spec["bidirectional"] else 1
    L = spec["num_layers"]
    scores = []
    for b, seq in enumerate(seqs):
        hb = None if h0 is None else [h0[k, b].tolist() for k in range(L * D)]
        cb = None if c0 is None else [c0[k, b].tolist() for k in range(L * D)]
        outs, hn, _ = run_sequence(spec, weights, seq, hb, cb)
        if output == "all":
            scores.append([apply_head(head, weights, v) for v in outs])
        elif output == "last":
            scores.append(apply_head(head, weights, outs[-1]))
        else:
            scores.append(apply_head(head, weights, sum((hn[(L - 1) * D + d] for d in range(D)), [])))
    return scores
