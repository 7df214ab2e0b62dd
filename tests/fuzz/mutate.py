"""Mutations of real weight files: blind byte edits and edits that know the structure.

Blind edits of a zip archive mostly hit its CRC check, so half the cases
mutate one member (a pickle, a ``.npy`` header, the bundle's JSON) and write
the archive again with correct checksums: those reach the readers' own logic.
Every case is a pure function of ``(seed bytes, case number)``, so a failure is
reproduced from its number alone.
"""

from __future__ import annotations

import ast
import io
import json
import pickletools
import random
import zipfile

import numpy as np

from tests.fuzz import attacks

INTERESTING_INTS = [0, 1, -1, 2, 7, 255, 256, 65535, 2**31 - 1, 2**31, 2**32, 10**12, 2**62, 2**63 - 1, -(2**31)]
GLOBALS = [
    b"os\nsystem", b"builtins\neval", b"builtins\nexec", b"subprocess\nPopen", b"collections\nOrderedDict",
    b"argparse\nNamespace", b"torch\nFloatStorage", b"torch\nDoubleStorage", b"torch\nHalfStorage",
    b"torch\nBFloat16Storage", b"torch\nfloat32", b"torch._utils\n_rebuild_tensor_v2",
    b"torch._utils\n_rebuild_tensor_v3", b"torch._utils\n_rebuild_parameter", b"torch\nSize",
    b"builtins\nset", b"builtins\ncomplex", b"_codecs\nencode", b"numpy.core.multiarray\n_reconstruct",
    b"copyreg\n_reconstructor", b"torch.nn.modules.rnn\nLSTM", b"user.module\nThing",
]  # fmt: skip
JSON_VALUES = [0, -1, 1, 2, 10**12, 2**63, 1e308, -0.5, float("nan"), "", "x", "lstm", "gru", "rnn_relu", None, True,
               [], {}, [10**12], [-1, 2], [1, 10**12], {"kind": "linear"}, "float64", "float16", "all", "final"]  # fmt: skip
NPY_DESCRS = ["<f4", "<f8", ">f4", "<f2", "|u1", "<i8", "|b1", "|O", "<U8", "|V4", "[('a', '<f4')]", "('<f4', (2,))"]


def _int_bytes(rng: random.Random) -> bytes:
    v = rng.choice(INTERESTING_INTS)
    size = rng.choice([1, 2, 4, 8])
    return (v % (1 << (8 * size))).to_bytes(size, rng.choice(["little", "big"]))


def blind(data: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    """1-4 byte-level edits anywhere in the file."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        n = len(buf)
        op = rng.randrange(8)
        pos = rng.randrange(n) if n else 0
        if op == 0 and n:
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            buf[pos] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        elif op == 2:
            del buf[rng.randrange(n + 1) :]
        elif op == 3 and n:
            del buf[pos : pos + rng.randint(1, 64)]
        elif op == 4 and n:
            chunk = buf[pos : pos + rng.randint(1, 64)]
            at = rng.randrange(n + 1)
            buf[at:at] = chunk
        elif op == 5:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 6 and n:
            b = _int_bytes(rng)
            buf[pos : pos + len(b)] = b
        elif op == 7 and seeds:
            other = rng.choice(seeds)
            cut = rng.randrange(len(other) + 1)
            buf = buf[:pos] + bytearray(other[cut:])
    return bytes(buf)


def _encode_int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + v.to_bytes(2, "little")
    if -(2**31) <= v < 2**31:
        return b"J" + v.to_bytes(4, "little", signed=True)
    raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def pickle_edit(pkl: bytes, rng: random.Random) -> bytes:
    """Edit one pickle: an integer argument (sizes, strides, offsets, numel), a global, or an opcode."""
    try:
        ops = [(op, arg, pos) for op, arg, pos in pickletools.genops(pkl)]
    except Exception:  # noqa: BLE001 - already broken: edit it blindly
        return blind(pkl, rng, [])
    ends = [pos for _, _, pos in ops[1:]] + [len(pkl)]
    choice = rng.randrange(4)
    ints = [i for i, (op, _, _) in enumerate(ops) if op.name in ("BININT", "BININT1", "BININT2", "LONG1")]
    globs = [i for i, (op, _, _) in enumerate(ops) if op.name == "GLOBAL"]
    if choice == 0 and ints:
        i = rng.choice(ints)
        return pkl[: ops[i][2]] + _encode_int(rng.choice(INTERESTING_INTS)) + pkl[ends[i] :]
    if choice == 1 and globs:
        i = rng.choice(globs)
        return pkl[: ops[i][2]] + b"c" + rng.choice(GLOBALS) + b"\n" + pkl[ends[i] :]
    if choice == 2:
        i = rng.randrange(len(ops))  # drop or duplicate one opcode
        seg = pkl[ops[i][2] : ends[i]]
        return pkl[: ops[i][2]] + (seg * 2 if rng.random() < 0.5 else b"") + pkl[ends[i] :]
    return blind(pkl, rng, [])


def _npy_header_edit(member: bytes, rng: random.Random) -> bytes:
    """Rewrite a ``.npy`` header with another shape, dtype or order (data left as is)."""
    if not member.startswith(b"\x93NUMPY") or len(member) < 10:
        return blind(member, rng, [])
    hlen = int.from_bytes(member[8:10], "little")
    header, data = member[10 : 10 + hlen], member[10 + hlen :]
    try:
        d = ast.literal_eval(header.decode("latin1"))
    except Exception:  # noqa: BLE001
        return blind(member, rng, [])
    op = rng.randrange(3)
    if op == 0:
        shape = list(d["shape"])
        if shape and rng.random() < 0.7:
            shape[rng.randrange(len(shape))] = rng.choice([0, 1, 10**12, 2**31, 2**40, 3])
        else:
            shape = shape + [rng.choice([1, 2, 10**12])] if rng.random() < 0.5 else shape[:-1]
        d["shape"] = tuple(shape)
    elif op == 1:
        d["descr"] = rng.choice(NPY_DESCRS)
    else:
        d["fortran_order"] = not d["fortran_order"]
    text = repr(d).encode("latin1")
    text += b" " * ((-(len(text) + 11)) % 64) + b"\n"
    return member[:8] + len(text).to_bytes(2, "little") + text + data


def _json_edit(doc, rng: random.Random):
    """Replace, delete or add one value somewhere in a JSON document."""
    parent, key = None, None
    node = doc
    for _ in range(rng.randint(1, 6)):
        if isinstance(node, dict) and node:
            parent, key = node, rng.choice(list(node))
        elif isinstance(node, list) and node:
            parent, key = node, rng.randrange(len(node))
        else:
            break
        node = parent[key]
    if parent is None:
        return rng.choice(JSON_VALUES)
    r = rng.random()
    if r < 0.15 and isinstance(parent, dict):
        del parent[key]
    elif r < 0.25 and isinstance(parent, dict):
        parent[rng.choice(["extra", "feature_names", "reference", "output"])] = rng.choice(JSON_VALUES)
    elif isinstance(node, int) and not isinstance(node, bool) and r < 0.7:
        parent[key] = rng.choice([0, -1, node + 1, node * 2, 10**12, 2**63])
    else:
        parent[key] = rng.choice(JSON_VALUES)
    return doc


def _config_edit(member: bytes, rng: random.Random) -> bytes:
    """The bundle's ``__rnnjit__`` JSON, edited as JSON and saved again as a string array."""
    arr = np.load(io.BytesIO(member), allow_pickle=False)
    doc = _json_edit(json.loads(str(arr[()])), rng)
    out = io.BytesIO()
    np.save(out, np.array(json.dumps(doc)))
    return out.getvalue()


def _safetensors_edit(data: bytes, rng: random.Random) -> bytes:
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    header = _json_edit(header, rng)
    raw = json.dumps(header).encode()
    length = len(raw) if rng.random() < 0.9 else rng.choice(INTERESTING_INTS) % 2**64
    return length.to_bytes(8, "little") + raw + data[8 + n :]


def _zip_members(data: bytes) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(info, zf.read(info)) for info in zf.infolist()]


def _rezip(members: list[tuple[zipfile.ZipInfo, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for info, raw in members:
            zf.writestr(info, raw)
    return out.getvalue()


def _member_edit(name: str, raw: bytes, rng: random.Random) -> bytes:
    if name.endswith("data.pkl"):
        return pickle_edit(raw, rng)
    if name.endswith("__rnnjit__.npy") and rng.random() < 0.8:
        try:
            return _config_edit(raw, rng)
        except Exception:  # noqa: BLE001
            return blind(raw, rng, [])
    if name.endswith(".npy") and rng.random() < 0.7:
        return _npy_header_edit(raw, rng)
    return blind(raw, rng, [])


def _legacy_edit(data: bytes, rng: random.Random) -> bytes:
    """Edit one of the five pickles of a legacy stream, or the storage records after them."""
    f = io.BytesIO(data)
    spans = []
    try:
        for _ in range(5):
            start = f.tell()
            for _op in pickletools.genops(f):
                pass
            spans.append((start, f.tell()))
    except Exception:  # noqa: BLE001
        return blind(data, rng, [])
    if rng.random() < 0.75:
        start, end = spans[3] if rng.random() < 0.8 else rng.choice(spans)
        return data[:start] + pickle_edit(data[start:end], rng) + data[end:]
    tail = spans[-1][1]
    return data[:tail] + blind(data[tail:], rng, [])


def mutate(fmt: str, data: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    """One case: a structure-aware edit (about half the time) or blind byte edits."""
    try:
        if rng.random() < 0.55:
            if fmt in ("pth-zip", "npz", "bundle"):
                members = _zip_members(data)
                i = rng.randrange(len(members))
                if fmt == "pth-zip":  # the pickle is where the logic is
                    pkl = [j for j, (m, _) in enumerate(members) if m.filename.endswith("data.pkl")]
                    i = pkl[0] if pkl and rng.random() < 0.6 else i
                if fmt == "bundle" and rng.random() < 0.4:
                    i = next(j for j, (m, _) in enumerate(members) if m.filename.startswith("__rnnjit__"))
                info, raw = members[i]
                members[i] = (info, _member_edit(info.filename, raw, rng))
                if rng.random() < 0.1:
                    del members[rng.randrange(len(members))]
                return _rezip(members)
            if fmt == "pth-legacy":
                return _legacy_edit(data, rng)
            if fmt == "safetensors":
                return _safetensors_edit(data, rng)
    except Exception:  # noqa: BLE001 - an earlier edit broke the structure (bad CRC, zlib error): go blind
        pass
    return blind(data, rng, seeds)


ATTACK_SHARE = 0.12  # cases that take one of the attack shapes of tests/fuzz/attacks.py


def _parquet_case(rng: random.Random) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    seqs = attacks.skewed_lengths(rng, input_size=2)
    lengths = np.array([len(s) for s in seqs], np.int64)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    steps = pa.FixedSizeListArray.from_arrays(pa.array(np.concatenate(seqs).reshape(-1)), 2)
    table = pa.table({"id": pa.array(np.arange(len(seqs))), "features": pa.ListArray.from_arrays(offsets, steps)})
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


def case(fmt: str, seeds: list[bytes], index: int, base_seed: int) -> bytes:
    """The bytes of case ``index`` of ``fmt``: deterministic."""
    rng = random.Random(f"{base_seed}-{fmt}-{index}")
    if fmt == "parquet":  # scoring, not reading: the skewed-length shape, every case
        return _parquet_case(rng)
    data = rng.choice(seeds)
    if rng.random() < ATTACK_SHARE:
        try:
            return attacks.attack(fmt, data, rng)
        except Exception:  # noqa: BLE001 - a seed that does not fit the shape: mutate it as usual
            pass
    for _ in range(1 if rng.random() < 0.8 else rng.randint(2, 3)):
        data = mutate(fmt, data, rng, seeds)
    return data
