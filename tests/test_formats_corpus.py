"""The fuzzer's interesting cases, kept: one line each, built by hand so they read as what they test.

Each case is a hostile or damaged file and the one-line error it must give
(``python -m tests.fuzz`` finds new ones; add them here). Bundles that load are
scored with both engines: a bad shape must be refused before any kernel runs.
"""

from __future__ import annotations

import ast
import io
import json
import zipfile

import numpy as np
import pytest
import torch
from formats_craft import Storage, Tensor, dumps, write_legacy

import rnnjit
from rnnjit.errors import RnnjitError, WeightFileError
from rnnjit.formats import limits, read_state_dict

F4 = np.arange(4, dtype="<f4").tobytes()


def _safetensors(header: bytes, body: bytes = b"") -> bytes:
    return len(header).to_bytes(8, "little") + header + body


def _npy(arr: np.ndarray, *, shape=None, descr=None) -> bytes:
    """``np.save`` bytes, with the header's shape or dtype replaced by a lie."""
    buf = io.BytesIO()
    np.save(buf, arr)
    raw = buf.getvalue()
    n = int.from_bytes(raw[8:10], "little")
    header = ast.literal_eval(raw[10 : 10 + n].decode("latin1"))
    header.update({k: v for k, v in (("shape", shape), ("descr", descr)) if v is not None})
    text = repr(header)
    text += " " * ((-(len(text) + 11)) % 64) + "\n"
    return raw[:8] + len(text).to_bytes(2, "little") + text.encode("latin1") + raw[10 + n :]


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)
    return out.getvalue()


def _pickle_zip(pkl: bytes, storages=None) -> bytes:
    members = {"archive/data.pkl": pkl, "archive/byteorder": b"little"}
    members.update({f"archive/data/{k}": v for k, v in (storages or {}).items()})
    return _zip(members)


def _shared_dicts(depth: int) -> bytes:
    """``d[k] = {"a": d[k-1], "b": d[k-1]}``: 2**depth paths through a few hundred bytes of pickle."""
    node = {"w": Tensor(Storage("0", 1), 0, (1,), (1,))}
    for _ in range(depth):
        node = {"a": node, "b": node}
    return _pickle_zip(dumps(node), {"0": F4[:4]})


W = {"w": Tensor(Storage("0", 4), 0, (4,), (1,))}
# (file bytes, expected error); "loads" means it must load (and, for a bundle, score).
WEIGHT_FILES = {
    "safetensors dtype is a JSON list (fuzz: TypeError unhashable)": (
        _safetensors(b'{"w": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}', F4[:4]),
        r"dtype \['F32'\]",
    ),
    "safetensors dtype is a JSON object": (
        _safetensors(b'{"w": {"dtype": {"a": 1}, "shape": [1], "data_offsets": [0, 4]}}', F4[:4]),
        "safetensors dtype",
    ),
    "safetensors header nested 100,000 deep (RecursionError)": (
        _safetensors(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        "nests JSON deeper",
    ),
    "safetensors shape claims 10**12 elements": (
        _safetensors(b'{"w": {"dtype": "F32", "shape": [1000000000000], "data_offsets": [0, 4]}}', F4[:4]),
        "needs 4000000000000 bytes, has 4",
    ),
    "safetensors shape with 100 dimensions (numpy allows 64)": (
        _safetensors(b'{"w": {"dtype": "F32", "shape": [' + b"1, " * 99 + b'1], "data_offsets": [0, 4]}}', F4[:4]),
        "has shape",
    ),
    ".npy header claims 10**12 elements": (
        _zip({"w.npy": _npy(np.zeros(3, np.float32), shape=(10**12,))}),
        r"holds \d+ bytes but 4000000000\d+ are needed",
    ),
    ".npy header claims an object array": (
        _zip({"w.npy": _npy(np.zeros(3, np.float64), descr="|O")}),
        "object array",
    ),
    ".npy header with a structured dtype": (_zip({"w.npy": _npy(np.zeros(3, np.float32), descr="|V4")}), "holds no tensors"),
    "pickle memo index 2**31 (the unpickler would zero-fill 16 GiB)": (
        _pickle_zip(b"\x80\x02}r\x00\x00\x00\x80."),
        r"memo entry 2147483648 after 2 opcodes",
    ),
    "pickle BINBYTES8 claims 10**12 bytes": (
        _pickle_zip(b"\x80\x02\x8e" + (10**12).to_bytes(8, "little") + b"abc."),
        "cannot read the pickled state_dict",
    ),
    "storage numel claims 10**12 elements": (
        _pickle_zip(dumps({"w": Tensor(Storage("0", 10**12), 0, (4,), (1,))}), {"0": F4}),
        "holds 16 bytes but 4000000000000 are needed",
    ),
    "expanded tensor of 10**12 elements": (
        _pickle_zip(dumps({"w": Tensor(Storage("0", 4), 0, (10**6, 10**6), (0, 0))}), {"0": F4}),
        "refusing to allocate",
    ),
    "100 tensors each expanding one storage to 32 MiB": (
        _pickle_zip(dumps({f"w{i}": Tensor(Storage("0", 4), 0, (1 << 23,), (0,)) for i in range(100)}), {"0": F4}),
        "past the memory limit",
    ),
    "dicts shared 2**40 ways (exponential flattening)": (_shared_dicts(40), "loads"),
    "zip member names with newlines (fuzz: two-line message)": (
        _zip({"a\nb.npy": _npy(np.zeros(1)), "c.txt\n": b""}),
        r"zip archive holding a\\nb\.npy, c\.txt\\n;",
    ),
    "STACK_GLOBAL naming a class with a newline (placeholder name)": (
        _pickle_zip(b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00" + b"\x8c\x03m\nx\x8c\x01C\x93)\x81."),
        r"holds a pickled m\\nx\.C object",
    ),
    "a plain state_dict pickle (control: must load)": (_pickle_zip(dumps(W), {"0": F4}), "loads"),
}


@pytest.mark.parametrize("case", list(WEIGHT_FILES), ids=lambda c: c.split(" (")[0].replace(" ", "-"))
def test_weight_file_corpus(tmp_path, case):
    data, expected = WEIGHT_FILES[case]
    path = tmp_path / "case.bin"
    path.write_bytes(data)
    if expected == "loads":
        sd, info = read_state_dict(path)
        assert all(isinstance(v, np.ndarray) for v in sd.values()) and isinstance(info["placeholders"], list)
        assert len(sd) < 100
        return
    with pytest.raises(WeightFileError, match=expected) as exc:
        read_state_dict(path)
    assert "\n" not in str(exc.value)


def test_legacy_storage_count_claims_10_12_elements(tmp_path):
    path = write_legacy(tmp_path / "l.pth", W, {"0": (10**12, F4)})
    with pytest.raises(WeightFileError, match=r"claims 1000000000000 elements \(4000000000000 bytes\)"):
        read_state_dict(path)


def test_deflate_bomb_is_refused(tmp_path, monkeypatch):
    """A compressed member inflating far past its stored size (limits scaled down to keep the test small)."""
    monkeypatch.setattr(limits, "SLACK_BYTES", 1 << 16)
    buf = io.BytesIO()
    np.savez_compressed(buf, w=np.zeros(1 << 20, np.float32))  # 4 MiB of zeros in about 4 kB
    (tmp_path / "bomb.npz").write_bytes(buf.getvalue())
    with pytest.raises(WeightFileError, match="refusing a decompression bomb"):
        read_state_dict(tmp_path / "bomb.npz")


# ------------------------------------------------------------------ bundles


@pytest.fixture(scope="module")
def bundle_members(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    torch.manual_seed(0)
    net = torch.nn.Module()
    net.rnn = torch.nn.GRU(2, 3, batch_first=True)
    net.fc = torch.nn.Linear(3, 1)
    torch.save(net.state_dict(), d / "m.pth")
    rnnjit.convert(d / "m.pth", d / "b.npz", head="fc")
    with zipfile.ZipFile(d / "b.npz") as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _config_npy(members, edit) -> bytes:
    doc = json.loads(str(np.load(io.BytesIO(members["__rnnjit__.npy"]))[()]))
    edit(doc)
    buf = io.BytesIO()
    np.save(buf, np.array(json.dumps(doc)))
    return buf.getvalue()


def _set(path, value):
    def edit(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


BUNDLES = {
    "config hidden_size 10**12": (lambda m: {"__rnnjit__.npy": _config_npy(m, _set(("chain", 0, "rnn", "hidden_size"), 10**12))}, "hidden"),
    "config num_layers 1e308 (fuzz: endless loop over layers)": (
        lambda m: {"__rnnjit__.npy": _config_npy(m, _set(("chain", 0, "rnn", "num_layers"), 1e308))},
        "'chain\\[0\\]\\.rnn\\.num_layers' is 1e\\+308; expected an integer >= 1",
    ),
    "config num_layers 2**63 (fuzz: endless loop over layers)": (
        lambda m: {"__rnnjit__.npy": _config_npy(m, _set(("chain", 0, "rnn", "num_layers"), 2**63))},
        "num_layers is 9.22337e.18",
    ),
    "config input_size 0": (lambda m: {"__rnnjit__.npy": _config_npy(m, _set(("chain", 0, "rnn", "input_size"), 0))}, "input_size"),
    "config is a JSON list": (lambda m: {"__rnnjit__.npy": _config_npy(m, lambda d: d.clear())}, "format"),
    "config head names a missing layer": (
        lambda m: {"__rnnjit__.npy": _config_npy(m, lambda d: d["chain"].append(d["chain"][1]))},
        "fc",
    ),
    "config is a 2-d array": (lambda m: {"__rnnjit__.npy": _npy(np.array([["{}"]]))}, "not a JSON document"),
    "config is a number": (lambda m: {"__rnnjit__.npy": _npy(np.array(3.0))}, "not a JSON document"),
    "weight header claims 10**12 elements": (
        lambda m: {"rnn.weight_ih_l0.npy": _npy(np.zeros((9, 2), np.float32), shape=(10**12, 2))},
        "are needed",
    ),
    "weight header transposed": (
        lambda m: {"rnn.weight_ih_l0.npy": _npy(np.zeros((9, 2), np.float32), shape=(2, 9))},
        r"rnn\.weight_ih_l0",
    ),
    "weight header says float16": (
        lambda m: {"fc.weight.npy": _npy(np.zeros((1, 3), np.float32), descr="<f2")},
        "loads",
    ),
    "member that is not .npy": (lambda m: {"README": b"hello"}, "not a .npy array"),
}


@pytest.mark.parametrize("case", list(BUNDLES), ids=lambda c: c.replace(" ", "-"))
def test_bundle_corpus(tmp_path, bundle_members, case):
    edit, expected = BUNDLES[case]
    members = {**bundle_members, **edit(bundle_members)}
    path = tmp_path / "case.npz"
    path.write_bytes(_zip(members))
    if expected == "loads":
        model = rnnjit.load(path)
        x = np.random.default_rng(0).standard_normal((2, 3, model.spec.input_size)).astype(np.float32)
        for engine in ("numpy", "numba"):
            try:
                y = model.predict(x, lengths=np.array([3, 1]), engine=engine)
            except RnnjitError as exc:
                assert "\n" not in str(exc)
            else:
                assert y.shape[0] == 2
        return
    with pytest.raises(RnnjitError, match=expected) as exc:
        rnnjit.load(path)
    assert "\n" not in str(exc.value)
