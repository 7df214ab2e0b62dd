"""Every runnable README example is run, and its shown output compared (so the README cannot drift).

Marking: an HTML comment on the line before a fenced block, invisible on GitHub.

- ``<!-- example -->`` runs the next block: ``bash`` as a script (exit 0
  expected), ``python`` as a program, ``text`` as a terminal session (each
  ``$ command`` is run, and the lines after it, up to the next ``$``, are its
  expected stdout and stderr).
- ``<!-- example: output in the next block -->`` runs a ``python`` block and
  compares its stdout with the ``text`` block that follows.
- ``needs MODULE`` in the comment (``<!-- example: needs pyspark -->``) skips
  the example where that module is not installed.

Blocks without a marker (installs, cluster recipes, S3 paths, fragments of a
model class) are not run. Each example runs in a fresh directory holding a
copy of ``data/``, small torch-made models with the names the README uses, and
a ``bin/rnnjit`` that runs this checkout. Compared output is normalized where
a machine legitimately differs: durations, rates, error magnitudes, versions,
and ``...`` in the README matches any text.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MARK = re.compile(r"^<!--\s*example(?::\s*(?P<opts>.*?))?\s*-->\s*$")


@dataclass
class Example:
    line: int  # 1-based line of the block's opening fence
    lang: str
    body: str
    opts: str
    expected: str | None = None  # a python block's shown output

    @property
    def id(self) -> str:
        return f"README.md:{self.line}-{self.lang}"


def _fence(lines, i):
    """(lang, body, index after the closing fence) of the fenced block opening at ``lines[i]``."""
    lang = lines[i].strip()[3:].strip()
    j = i + 1
    while not lines[j].startswith("```"):
        j += 1
    return lang, "\n".join(lines[i + 1 : j]), j + 1


def examples(text: str) -> list[Example]:
    lines = text.splitlines()
    found, i = [], 0
    while i < len(lines):
        m = MARK.match(lines[i].strip())
        if not m:
            i += 1
            continue
        opts = m.group("opts") or ""
        if not lines[i + 1].startswith("```"):
            raise AssertionError(f"README.md:{i + 1}: an example marker must be followed by a fenced block")
        start = i + 1
        lang, body, i = _fence(lines, start)
        ex = Example(line=start + 1, lang=lang, body=body, opts=opts)
        if "output in the next block" in opts:
            if not lines[i].startswith("```text"):
                raise AssertionError(f"{ex.id}: 'output in the next block' but no text block follows")
            _, ex.expected, i = _fence(lines, i)
        found.append(ex)
    return found


EXAMPLES = examples(README.read_text())

# --- normalizing what legitimately differs between machines and runs
_NORMALIZE = [
    (re.compile(r"\bin \d+(\.\d+)? s\b"), "in <T> s"),
    (re.compile(r"[\d,]+ rows/s"), "<R> rows/s"),
    (re.compile(r"max abs error \d\.\d\de[+-]\d\d"), "max abs error <E>"),
    (re.compile(r"\btorch \d+\.\d+\.\d+(\+\w+)?"), "torch <V>"),
    (re.compile(r"\((\d+) threads?\)"), "(<N> threads)"),
]


def normalize(text: str) -> list[str]:
    out = []
    for line in text.strip().splitlines():
        line = " ".join(line.split())
        for pat, rep in _NORMALIZE:
            line = pat.sub(rep, line)
        out.append(line)
    return out


def _line_matches(expected: str, got: str) -> bool:
    if "..." not in expected:
        return expected == got
    pattern = ".*".join(re.escape(p) for p in expected.split("..."))
    return re.fullmatch(pattern, got) is not None


def assert_output(expected: str, got: str, where: str) -> None:
    exp, out = normalize(expected), normalize(got)
    ok = len(exp) == len(out) and all(_line_matches(e, g) for e, g in zip(exp, out))
    assert ok, f"{where}: the README shows\n" + "\n".join(exp) + "\nbut the command printed\n" + "\n".join(out)


# --- the workspace the examples run in
def _build_fixtures(d: Path) -> None:
    """The model and data files the README's examples name, made with torch (tests only)."""
    torch = pytest.importorskip("torch")
    import pyarrow as pa
    import pyarrow.parquet as pq
    from torch import nn

    torch.manual_seed(0)

    def save(path, **modules):
        sd = {}
        for name, m in modules.items():
            sd.update({f"{name}.{k}": v for k, v in m.state_dict().items()})
        torch.save(sd, d / path)

    save("model.pth", lstm=nn.LSTM(4, 8, batch_first=True), fc=nn.Linear(8, 1))
    save("rnn_relu.pth", rnn=nn.RNN(3, 5, nonlinearity="relu", batch_first=True), fc=nn.Linear(5, 1))
    save("m.pth", lstm=nn.LSTM(4, 8, batch_first=True), ln=nn.LayerNorm(8), fc=nn.Linear(8, 1))
    save("attn.pth", lstm=nn.LSTM(4, 8, batch_first=True), attn=nn.MultiheadAttention(8, 2), fc=nn.Linear(8, 1))
    # the three tutorial models of "Whole models: the chain"
    vocab = 50
    save("tut1-model.pt", embedding=nn.Embedding(vocab, 6, padding_idx=1),
         rnn=nn.LSTM(6, 8, num_layers=2, bidirectional=True), fc=nn.Linear(16, 1))
    save("tagger.pth", word_embeddings=nn.Embedding(vocab, 6), lstm=nn.LSTM(6, 8), hidden2tag=nn.Linear(8, 3))
    save("stacked.pth", lstm1=nn.LSTM(4, 16, batch_first=True), lstm2=nn.LSTM(16, 8, batch_first=True),
         fc=nn.Linear(8, 1))
    rng = np.random.default_rng(0)
    tokens = [rng.integers(2, vocab, size=int(n)).tolist() for n in rng.integers(1, 20, size=30)]
    pq.write_table(pa.table({"id": np.arange(30), "tokens": pa.array(tokens, pa.list_(pa.int64()))}),
                   d / "reviews.parquet")
    # the Spark quick-start's day of input: the demo file in a dated folder
    (d / "days" / "2026-11-23").mkdir(parents=True)
    shutil.copy(ROOT / "data" / "demo_sequences.parquet", d / "days" / "2026-11-23" / "part-0.parquet")


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("readme-fixtures")
    _build_fixtures(d)
    shutil.copytree(ROOT / "data", d / "data", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return d


@pytest.fixture
def workspace(fixtures, tmp_path) -> tuple[Path, dict]:
    work = tmp_path / "work"
    shutil.copytree(fixtures, work)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "rnnjit").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m rnnjit "$@"\n')
    (bin_dir / "rnnjit").chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["COLUMNS"] = "200"
    return work, env


def _run(args, work, env, where, timeout=600):
    proc = subprocess.run(args, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout


def _session(body: str):
    """(command, expected output) pairs of a ``$ ...`` terminal session."""
    pairs: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            pairs.append((line[2:], []))
        elif pairs:
            pairs[-1][1].append(line)
        elif line.strip():
            raise AssertionError(f"a terminal session must start with '$ command', got {line!r}")
    return pairs


@pytest.mark.parametrize("ex", EXAMPLES, ids=lambda e: e.id)
def test_readme_example(ex: Example, workspace):
    for need in re.findall(r"needs (\w+)", ex.opts):
        if importlib.util.find_spec(need) is None:
            pytest.skip(f"{need} is not installed")
    work, env = workspace
    if ex.lang == "bash":
        rc, out = _run(["bash", "-euo", "pipefail", "-c", ex.body], work, env, ex.id)
        assert rc == 0, f"{ex.id}: exit {rc}\n{out}"
    elif ex.lang == "python":
        rc, out = _run([sys.executable, "-c", ex.body], work, env, ex.id)
        assert rc == 0, f"{ex.id}: exit {rc}\n{out}"
        if ex.expected is not None:
            assert_output(ex.expected, out, ex.id)
    elif ex.lang == "text":
        for cmd, expected in _session(ex.body):
            rc, out = _run(["bash", "-c", cmd], work, env, ex.id)
            assert_output("\n".join(expected), out, f"{ex.id}: $ {cmd}")
            shown_error = any(line.startswith("error:") for line in expected)
            assert (rc != 0) == shown_error, f"{ex.id}: $ {cmd} exited {rc}\n{out}"
    else:
        raise AssertionError(f"{ex.id}: a marked example must be bash, python or text, not {ex.lang!r}")


def test_readme_marks_the_examples_it_should():
    """The parser sees every marker (a marker before a non-block would otherwise hide an example)."""
    text = README.read_text()
    markers = sum(1 for line in text.splitlines() if MARK.match(line.strip()))
    assert markers == len(EXAMPLES)
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize(
    "expected, got, same",
    [
        ("scored 2,000 rows in 0.48 s, 4,151 rows/s", "scored 2,000 rows in 12.1 s, 98 rows/s", True),
        ("scored 2,000 rows", "scored 2,001 rows", False),
        ("note: chain inferred as ...: logits", "note: chain inferred as 'a,b': head ...: logits", True),
        ("note: chain inferred as ...: logits", "note: chain inferred as 'a,b': probabilities", False),
        ("one line", "one line\nand another", False),
    ],
)
def test_output_comparison_normalizes_only_what_machines_change(expected, got, same):
    if same:
        assert_output(expected, got, "case")
    else:
        with pytest.raises(AssertionError):
            assert_output(expected, got, "case")


def _synopsis() -> dict[str, set[str]]:
    """Options per command in the README's "## CLI" synopsis block."""
    section = README.read_text().split("\n## CLI\n", 1)[1]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
    found: dict[str, set[str]] = {}
    cmd = None
    for line in block.splitlines():
        line = line.strip()
        m = re.match(r"rnnjit (\w[\w-]*)", line)
        if m:
            cmd = m.group(1)
            found.setdefault(cmd, set())
        if cmd is None or not line.startswith(("rnnjit ", "[", "(")):
            continue  # a description line
        usage = re.split(r"(?<=\S)\s{3,}", line)[0]  # what follows 3+ spaces describes the command
        found[cmd] |= set(re.findall(r"(?<![\w-])(?:--[a-z][a-z0-9-]*|-[a-zA-Z]\b)", usage))
    return found


def test_cli_synopsis_lists_every_option_of_every_command():
    """The README's synopsis names each command's options and nothing that is not one (item: synopsis drift)."""
    import typer.main

    from rnnjit.cli.app import app

    group = typer.main.get_command(app)
    shown = _synopsis()
    assert set(shown) == set(group.commands), "commands in the synopsis and in the CLI differ"
    for name, cmd in group.commands.items():
        real: set[str] = set()
        for p in cmd.params:
            if getattr(p, "hidden", False) or p.param_type_name != "option":
                continue
            names = [o for o in [*p.opts, *getattr(p, "secondary_opts", [])] if o not in ("--help", "-h")]
            if names and not any(n in shown[name] for n in names):
                raise AssertionError(f"README synopsis of 'rnnjit {name}' lacks {' / '.join(names)}")
            real.update(names)
        extra = sorted(shown[name] - real)
        assert not extra, f"README synopsis of 'rnnjit {name}' names options the command does not have: {extra}"
