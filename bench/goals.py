"""The goals of the benchmark report (issue 12) and the batch-curve table, from one run's ratios."""

from __future__ import annotations

GOALS = [  # (case, versus engine, minimum ratio rnnjit/versus, label); versus "us": rnnjit time per call <= need
    ("lstm_h32", "torch", 2.5, "LSTM H=32 >= 2.5x torch"),
    ("lstm_h128", "torch", 1.5, "LSTM H=128 >= 1.5x torch"),
    ("lstm_h192", "torch", 1.5, "LSTM H=192 >= 1.5x torch"),
    ("lstm_h256", "torch", 1.5, "LSTM H=256 >= 1.5x torch"),
    ("lstm_h384", "torch", 1.5, "LSTM H=384 >= 1.5x torch"),
    ("lstm_h512", "torch", 1.5, "LSTM H=512 >= 1.5x torch"),
    ("lstm_h512", "onnxruntime", 1.3, "LSTM H=512 >= 1.3x onnxruntime"),
    ("lstm_h1024", "torch", 1.3, "LSTM H=1024 >= 1.3x torch"),
    ("gru_h128", "torch", 2.0, "GRU >= 2x torch"),
    ("rnn_tanh_h128", "torch", 2.0, "RNN >= 2x torch"),
    ("lstm_bidir", "torch", 1.5, "bidirectional >= 1.5x torch"),
    ("lstm_varlen", "torch", 3.0, "variable lengths >= 3x torch padded"),
    ("lstm_varlen", "torch_packed", 1.5, "variable lengths >= 1.5x torch packed"),
    ("lstm_b1", "us", 225.0, "batch of 1 (T=100, H=128) <= 225 us"),
    ("lstm_b1", "onnxruntime", 1.5, "batch of 1 >= 1.5x onnxruntime"),
    ("lstm_h64_f64", "torch", 2.0, "float64 LSTM H=64 >= 2x torch float64"),
    ("gru_h128_f64", "torch", 2.0, "float64 GRU H=128 >= 2x torch float64"),
    ("text_classifier", "torch_packed", 1.0, ("text classifier (embedding, bidirectional LSTM, mean pool, linear, "
                                               "sigmoid; padded token batches) faster than torch (its packed forward)")),
    ("text_classifier", "onnxruntime", 1.0, "text classifier faster than onnxruntime"),
    ("lstm_b1", "onnxruntime", 1.2, "batch of 1 through Model.predict >= 1.2x onnxruntime"),
    *((f"{name}{sfx}", vs, need, f"{label}{' batch of 1' if sfx else ''} {what}")
      for name, label in (("speaker_encoder", "speaker encoder"), ("beat_tracker", "beat tracker"),
                          ("ocr_head", "OCR head"), ("polyphone_tagger", "polyphone tagger"),
                          ("onset_detector", "onset detector"))
      for sfx in ("", "_b1")
      for vs, need, what in (("torch", 1.5 if not sfx else 1.3, f">= {1.5 if not sfx else 1.3}x its torch forward"),
                             ("onnxruntime", 1.0, "not slower than onnxruntime"),
                             ("openvino", 1.0, "not slower than OpenVINO f32"))),
]  # fmt: skip


def goal_cell(ratios, res, case, vs, need) -> str:
    """One goal's cell: the measured value and met / NOT met (n/a where the case did not run)."""
    if vs == "us":
        if "rnnjit" not in res.get(case, {}):
            return "n/a"
        us = res[case]["rnnjit"][0] * 1e6
        return f"{us:.0f} us {'met' if us <= need else 'NOT met'}"
    r = ratios.get((case, vs))
    return "n/a" if r is None else f"{r:.2f}x {'met' if r >= need else 'NOT met'}"


def batch_curve(ratios, res) -> list[str]:
    """The B = 1..256 table (LSTM H=128, T=100): time per call and ratios; the worst ratio vs torch."""
    names = sorted((n for n in res if n.startswith("lstm_b") and n[6:].isdigit()), key=lambda n: int(n[6:]))
    if not names:
        return []
    lines = ["| B | rnnjit us/call | torch us/call | onnxruntime us/call | rnnjit/torch | rnnjit/ort |",
             "|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for n in names:
        e = res[n]
        us = {k: f"{e[k][0] * 1e6:,.0f}" if k in e else "n/a" for k in ("rnnjit", "torch", "onnxruntime")}
        rt = ratios.get((n, "torch"))
        ro = ratios.get((n, "onnxruntime"))
        lines.append(f"| {n[6:]} | {us['rnnjit']} | {us['torch']} | {us['onnxruntime']} | "
                     f"{'n/a' if rt is None else f'{rt:.2f}x'} | {'n/a' if ro is None else f'{ro:.2f}x'} |")  # fmt: skip
    worst = [(ratios[n, "torch"], n) for n in names if (n, "torch") in ratios]
    if worst:
        r, n = min(worst)
        lines += ["", f"Slowest point against torch: B={n[6:]} at {r:.2f}x "
                  f"({'no B slower than torch' if r >= 1.0 else 'SLOWER than torch there'})."]  # fmt: skip
    return lines + [""]
