"""The shapes real attacks took (issue #20), as mutations the fuzzer mixes in with the random ones.

- ``build_on_global``: a pickle that BUILDs a state onto an allow-listed global
  (``_rebuild_tensor_v2.__defaults__``), placed before the real object;
- ``deep_nesting``: a tuple nested up to a million deep, popped or used as a dict key;
- ``long_keys``: one long key repeated at every level of a dict chain ending in a tensor;
- ``inflating_members``: extra archive members that each deflate from a few kB
  to megabytes (npz and bundles);
- ``shared_storages``: compressed storages read through one-element views (``.pth`` zip);
- ``skewed_lengths``: one long sequence among many one-step rows (Parquet).

The worker runs every case under a memory limit (`MEMORY_LIMIT`) far below
what these shapes would allocate unchecked, so a missing charge shows up as
resident growth, and it re-reads an honest file after every case, so a case
that changes a later load fails (`tests.fuzz.worker`).
"""

from __future__ import annotations

import functools
import io
import random
import zipfile

import numpy as np

MEMORY_LIMIT = "32M"  # RNNJIT_MEMORY_LIMIT in the worker
ALLOWED = ["torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor", "torch._utils._rebuild_parameter",
           "torch.Size", "_codecs.encode", "collections.OrderedDict", "builtins.set"]  # fmt: skip
ZIP_ATTACKS = ("inflating_members",)
PICKLE_ATTACKS = ("build_on_global", "deep_nesting", "long_keys")


def _s(text: str) -> bytes:
    b = text.encode()
    return b"X" + len(b).to_bytes(4, "little") + b


def _g(dotted: str) -> bytes:
    module, name = dotted.rsplit(".", 1)
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _tensor(key: str, numel: int, size: int) -> bytes:
    storage = b"(" + _s("storage") + _g("torch.FloatStorage") + _s(key) + _s("cpu") + b"J" + numel.to_bytes(4, "little") + b"tQ"
    return (_g("torch._utils._rebuild_tensor_v2") + b"(" + storage + b"K\x00" + b"J" + size.to_bytes(4, "little")
            + b"\x85K\x01\x85\x89" + _g("collections.OrderedDict") + b")RtR")


def build_on_global(pkl: bytes, rng: random.Random) -> bytes:
    state = rng.choice([
        b"N}" + _s("__defaults__") + b"(\x89N}" + _s("neg") + b"\x88stu\x86",  # (None, {"__defaults__": (...)})
        b"}" + _s("__kwdefaults__") + b"}s",  # an instance-dict state
        b"N}" + _s("__code__") + b"Ns\x86",
    ])
    return pkl[:2] + _g(rng.choice(ALLOWED)) + state + b"b0" + pkl[2:]


def deep_nesting(pkl: bytes, rng: random.Random) -> bytes:
    depth = rng.choice([50, 99, 100, 101, 5000, 1_000_000])
    deep = rng.choice([
        b"K\x00" + b"\x85" * depth,  # ((((0,),),),)
        b"(" * depth + b"K\x00" + b"l" * depth,  # [[[[0]]]]
        b"(K\x00" * depth + b"N" + b"d" * depth,  # {0: {0: ... None}}
    ])
    if rng.random() < 0.5:
        return pkl[:2] + deep + b"0" + pkl[2:]  # built and popped
    return pkl[:2] + b"}" + deep + b"K\x01s0" + pkl[2:]  # used as a dict key, then popped


def long_keys(pkl: bytes, rng: random.Random) -> bytes:
    depth, key_len = rng.choice([(90, 10_000), (99, 2_000), (20, 100_000)])
    head = b"\x80\x02" + _s("k" * key_len) + b"q\x00" + b"0" + b"}" + b"h\x00}" * depth
    return head + _s("w") + _tensor("0", 4, 4) + b"s" + b"s" * depth + b"."


@functools.lru_cache(maxsize=4)
def _bomb_archive(members: int, nbytes: int, prefix: str) -> bytes:
    """A zip of ``members`` deflated all-zero .npy members (compressed once, then reused)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(members):
            buf = io.BytesIO()
            np.save(buf, np.zeros(nbytes // 4, np.float32))
            zf.writestr(f"{prefix}{i}.npy", buf.getvalue())
    return out.getvalue()


def inflating_members(data: bytes, rng: random.Random) -> bytes:
    """The seed archive's members appended to a zip of members that inflate (total past `MEMORY_LIMIT`)."""
    members, nbytes = rng.choice([(8, 8 << 20), (2, 24 << 20), (40, 1 << 20)])
    out = io.BytesIO(_bomb_archive(members, nbytes, "junk"))
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "a") as zf:
        for info in src.infolist():
            zf.writestr(info, src.read(info))
    return out.getvalue()


@functools.lru_cache(maxsize=2)
def shared_storages(count: int = 12, nbytes: int = 4 << 20) -> bytes:
    """A ``.pth`` zip whose compressed storages are each read through a one-element tensor."""
    numel = nbytes // 4
    pkl = b"\x80\x02}(" + b"".join(_s(f"w{i}") + _tensor(str(i), numel, 1) for i in range(count)) + b"u."
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/byteorder", "little")
        for i in range(count):
            zf.writestr(zipfile.ZipInfo(f"archive/data/{i}"), bytes(nbytes), compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def skewed_lengths(rng: random.Random, input_size: int) -> list[np.ndarray]:
    """Many one-step rows and one (or two) long ones, in a random position."""
    n = rng.choice([500, 2000, 4095])
    seqs = [np.full((1, input_size), 0.5, np.float32) for _ in range(n)]
    for _ in range(rng.choice([1, 2])):
        long = rng.choice([1_000, 5_000, 30_000])
        seqs.insert(rng.randrange(n), np.full((long, input_size), 0.25, np.float32))
    if rng.random() < 0.3:
        seqs[rng.randrange(len(seqs))] = np.zeros((0, input_size), np.float32)
    return seqs


def attack(fmt: str, data: bytes, rng: random.Random) -> bytes:
    """One attack shape that fits ``fmt``, applied to a seed's bytes (or replacing them)."""
    if fmt in ("npz", "bundle"):
        return inflating_members(data, rng)
    if fmt == "pth-zip":
        choice = rng.randrange(4)
        if choice == 3:
            return shared_storages()
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = [(info, zf.read(info)) for info in zf.infolist()]
        for k, (info, raw) in enumerate(members):
            if info.filename.endswith("/data.pkl"):
                edit = (build_on_global, deep_nesting, long_keys)[choice]
                members[k] = (info, edit(raw, rng))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zf:
            for info, raw in members:
                zf.writestr(info, raw)
        return out.getvalue()
    if fmt == "pth-legacy":  # the object pickle is the fourth; a plain pickle (no magic) is read as numpy arrays
        return rng.choice((build_on_global, deep_nesting))(data, rng)
    return data
