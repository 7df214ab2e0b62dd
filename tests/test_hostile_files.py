"""The hostile-file catalogue (issue #20): files crafted to attack rnnjit, each harmless or one line and exit 2.

Every file is built here, byte by byte where it has to be (no torch needed):
pickles that BUILD onto allow-listed globals, nest a million tuples, repeat a
long key at every level; archives whose members inflate; Parquet with one
long sequence among short ones; bundles whose JSON lies; devices and FIFOs.
Memory-heavy shapes are kept small by lowering the memory limit in the test
(the mechanism is the same at 1 MiB as at 1 GiB).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import zipfile

import numpy as np
import pyarrow as pa
import pytest
from cli_helpers import FEATURES_TYPE, make_bundle, make_weights, run, write

import rnnjit
from rnnjit.errors import BundleError, InputError, WeightFileError
from rnnjit.formats import read_state_dict
from rnnjit.formats.torch_pickle import ALLOWED_GLOBALS, NUMPY_GLOBALS
from rnnjit.memory import MemoryLimitError
from rnnjit.scoring import ScoreOptions, score_batch
from rnnjit.spec import RNNSpec


# ------------------------------------------------------------------ pickle bytes, by hand
def _str(s: str) -> bytes:
    b = s.encode()
    return b"X" + len(b).to_bytes(4, "little") + b


def _int(n: int) -> bytes:
    return b"J" + n.to_bytes(4, "little", signed=True)


def _global(dotted: str) -> bytes:
    module, name = dotted.rsplit(".", 1)
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _storage(key: str, numel: int) -> bytes:
    return b"(" + _str("storage") + _global("torch.FloatStorage") + _str(key) + _str("cpu") + _int(numel) + b"tQ"


def _tensor(key: str, numel: int, size: int | None = None) -> bytes:
    """``_rebuild_tensor_v2(storage, 0, (size,), (1,), False, OrderedDict())``, as torch.save writes it."""
    size = numel if size is None else size
    return (_global("torch._utils._rebuild_tensor_v2") + b"(" + _storage(key, numel) + _int(0)
            + _int(size) + b"\x85" + _int(1) + b"\x85" + b"\x89" + _global("collections.OrderedDict") + b")R" + b"tR")


def _zip(path, pkl: bytes, storages: dict[str, bytes], compress: int = zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/byteorder", "little")
        for key, raw in storages.items():
            zf.writestr(zipfile.ZipInfo(f"archive/data/{key}"), raw, compress_type=compress)
    return path


HONEST = np.arange(4, dtype=np.float32) + 1


def _honest(path):
    return _zip(path, b"\x80\x02}" + _str("w") + _tensor("0", 4) + b"s.", {"0": HONEST.tobytes()})


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and len(msg) < 1000, msg[:300]
    return msg


# ------------------------------------------------------------------ 1. no poisoning
@pytest.mark.parametrize("name", sorted({**ALLOWED_GLOBALS, **NUMPY_GLOBALS}))
def test_build_on_an_allowed_global_is_refused_and_later_loads_are_honest(tmp_path, name):
    """BUILD (state and slot state) onto a global: refused; the next honest file in the process reads honestly."""
    before, _ = read_state_dict(_honest(tmp_path / "before.pth"))
    np.testing.assert_array_equal(before["w"], HONEST)
    poison = (_global(name) + b"N}" + _str("__defaults__") + b"(" + b"\x89N}" + _str("neg") + b"\x88st" + b"s"
              + b"\x86b0")  # BUILD (None, {"__defaults__": (False, None, {"neg": True})}), then POP
    pkl = b"\x80\x02" + poison + b"}" + _str("w") + _tensor("0", 4) + b"s."
    with pytest.raises(WeightFileError) as exc:
        read_state_dict(_zip(tmp_path / "poison.pth", pkl, {"0": HONEST.tobytes()}), memory_limit="64M")
    _one_line(exc)
    after, _ = read_state_dict(_honest(tmp_path / "after.pth"))
    np.testing.assert_array_equal(after["w"], HONEST)


def test_build_with_a_plain_state_dict_on_a_global_is_refused(tmp_path):
    pkl = (b"\x80\x02" + _global("torch._utils._rebuild_tensor_v2") + b"}" + _str("__kwdefaults__") + _int(1) + b"sb0"
           + b"}" + _str("w") + _tensor("0", 4) + b"s.")
    with pytest.raises(WeightFileError, match="tries to set the state of the global torch._utils._rebuild_tensor_v2"):
        read_state_dict(_zip(tmp_path / "p.pth", pkl, {"0": HONEST.tobytes()}))
    np.testing.assert_array_equal(read_state_dict(_honest(tmp_path / "h.pth"))[0]["w"], HONEST)


def test_every_allowed_global_is_inert():
    """What find_class hands out is a stand-in nothing can be set on, or an immutable builtin type."""
    for name, obj in {**ALLOWED_GLOBALS, **NUMPY_GLOBALS}.items():
        with pytest.raises((TypeError, AttributeError, WeightFileError)):
            setattr(obj, "__defaults__", (1,))
        with pytest.raises((TypeError, AttributeError, WeightFileError)):
            obj.__setstate__({"x": 1})
        assert not hasattr(obj, "__dict__") or isinstance(obj, type), name


# ------------------------------------------------------------------ 2. nesting and keys
def test_million_deep_tuple_as_a_dict_key_is_refused_not_a_crash(tmp_path):
    pkl = b"\x80\x02}" + b"K\x00" + b"\x85" * 1_000_000 + b"K\x01s."
    with pytest.raises(WeightFileError, match=r"nests containers 101 deep; .* at most 100") as exc:
        read_state_dict(_zip(tmp_path / "deep.pth", pkl, {}))
    _one_line(exc)
    r = run("convert", tmp_path / "deep.pth", "-o", tmp_path / "b.npz")
    assert r.exit_code == 2 and "nests containers" in r.stderr and "Traceback" not in r.stderr


def test_deep_tuple_hashed_by_an_allowed_constructor_is_refused(tmp_path):
    """OrderedDict([(deep, 1)]) hashes its keys inside REDUCE: the depth bound still holds there."""
    deep = b"K\x00" + b"\x85" * 5000
    pkl = b"\x80\x02" + _global("collections.OrderedDict") + b"]" + deep + b"K\x01\x86aR" + b"\x85."
    with pytest.raises(WeightFileError, match="nests containers"):
        read_state_dict(_zip(tmp_path / "od.pth", pkl, {}))


@pytest.mark.parametrize("key", [b"K\x01K\x02\x86", b"N", b"G?\xf0\x00\x00\x00\x00\x00\x00"], ids=["tuple", "None", "float"])
def test_dict_keys_other_than_str_or_int_are_refused(tmp_path, key):
    pkl = b"\x80\x02}" + key + _str("v") + b"s."
    with pytest.raises(WeightFileError, match="as a dict key; a checkpoint's keys are strings or integers"):
        read_state_dict(_zip(tmp_path / "k.pth", pkl, {}))


def test_int_keys_of_an_optimizer_state_still_load(tmp_path):
    pkl = (b"\x80\x02}(" + _str("model") + b"}" + _str("w") + _tensor("0", 4) + b"s"
           + _str("optimizer") + b"}" + _int(0) + _str("x") + b"su.")
    sd, info = read_state_dict(_zip(tmp_path / "o.pth", pkl, {"0": HONEST.tobytes()}))
    np.testing.assert_array_equal(sd["w"], HONEST)


# ------------------------------------------------------------------ 3. one memory budget
def _inflating_npz(path, members: int, nbytes: int, extra: dict | None = None):
    arrays = {f"junk{i}": np.zeros(nbytes // 4, np.float32) for i in range(members)}
    np.savez_compressed(path, **(extra or {}), **arrays)
    return path


def test_npz_members_inflating_past_the_budget_together_are_refused(tmp_path):
    """Each member alone is allowed; all of them together pass the limit (issue: 8 x 256 MiB, here 8 x 256 KiB)."""
    path = _inflating_npz(tmp_path / "w.npz", 8, 256 << 10)
    assert path.stat().st_size < 64 << 10
    with pytest.raises(MemoryLimitError, match=r"past the memory limit of (1 MiB|1048576 bytes); refusing to allocate") as exc:
        read_state_dict(path, memory_limit="1M")
    assert isinstance(exc.value, WeightFileError) and "raise the limit with memory_limit='" in _one_line(exc)
    sd, _ = read_state_dict(path, memory_limit="4M")  # raised: read
    assert len(sd) == 8
    r = run("convert", path, "-o", tmp_path / "b.npz", "--memory-limit", "1M")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "past the memory limit" in r.stderr
    assert re.search(r"raise the limit with --memory-limit \d+[MG] \(or RNNJIT_MEMORY_LIMIT=", r.stderr), r.stderr


def test_bundle_whose_members_inflate_is_refused_by_inspect_verify_score(tmp_path):
    good = make_bundle(tmp_path)
    with np.load(good) as z:
        members = {k: z[k] for k in z.files}
    bomb = _inflating_npz(tmp_path / "bomb.npz", 8, 256 << 10, extra=members)
    with pytest.raises(MemoryLimitError) as exc:
        rnnjit.load(bomb, memory_limit="1M")
    assert isinstance(exc.value, BundleError)
    data = write(pa.table({"features": pa.array([[[0.0, 0.0, 0.0]]], FEATURES_TYPE)}), tmp_path / "in.parquet")
    for args in (["inspect", bomb], ["verify", bomb], ["score", "-m", bomb, "-i", data, "-o", tmp_path / "o.parquet"]):
        r = run(*args, "--memory-limit", "1M")
        assert r.exit_code == 2, (args, r.stderr)
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "past the memory limit" in r.stderr
    assert not (tmp_path / "o.parquet").exists()


def test_deflated_storages_behind_one_element_tensors_are_charged_whole(tmp_path):
    """The budget counts storages, not the views: 512 KiB storages each read by a 1-element tensor.

    A storage is held until its last tensor is built, then dropped and given back: the peak is one
    storage, not all of them (the attack in the issue held 3.46 GB of them at once).
    """
    pkl = b"\x80\x02}(" + b"".join(_str(f"w{i}") + _tensor(str(i), 1 << 17, size=1) for i in range(8)) + b"u."
    storages = {str(i): bytes(512 << 10) for i in range(8)}
    path = _zip(tmp_path / "views.pth", pkl, storages, compress=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 64 << 10
    with pytest.raises(MemoryLimitError, match=r"the storage of tensor 'w0' \(archive/data/0\)"):
        read_state_dict(path, memory_limit="256K")  # one storage alone is past the limit, whatever its views
    with pytest.raises(MemoryLimitError, match=r"allocated over the whole read \(freed or not\), past twice"):
        read_state_dict(path, memory_limit="1M")  # one at a time fits, but 4 MiB inflated in all is past 2 x 1 MiB
    sd, _ = read_state_dict(path, memory_limit="3M")  # 8 x 512 KiB, one at a time
    assert [v.shape for v in sd.values()] == [(1,)] * 8


def _long_key_chain(depth: int, key_len: int) -> bytes:
    """``{K: {K: ... {"w": tensor} ...}}``: one memoized key of ``key_len`` characters repeats at every level,
    so the dotted name of the one tensor is ``depth * key_len`` characters and the names of the levels
    above it add up to ``depth**2 * key_len / 2``."""
    key = _str("k" * key_len) + b"q\x00" + b"0"  # memoize, pop
    leaf = _str("w") + _tensor("0", 4) + b"s"
    return b"\x80\x02" + key + b"}" + b"h\x00}" * depth + leaf + b"s" * depth + b"."


def test_long_key_repeated_at_every_level_is_charged_and_the_error_stays_one_short_line(tmp_path):
    path = _zip(tmp_path / "keys.pth", _long_key_chain(90, 10_000), {"0": HONEST.tobytes()})
    assert path.stat().st_size < 16 << 10
    with pytest.raises(MemoryLimitError, match="the checkpoint's key names") as exc:
        read_state_dict(path, memory_limit="1M")
    _one_line(exc)
    r = run("convert", path, "-o", tmp_path / "b.npz")  # within the default budget: a short error line
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and len(r.stderr) < 2000, r.stderr[:300]


def test_batch_with_one_long_sequence_is_scored_without_padding_the_others(tmp_path, monkeypatch):
    model = rnnjit.load(make_bundle(tmp_path))
    rng = np.random.default_rng(3)
    seqs = [rng.normal(size=(int(n), 3)).astype(np.float32) for n in rng.integers(1, 4, size=600)]
    seqs[17] = rng.normal(size=(3000, 3)).astype(np.float32)
    seqs[40] = np.zeros((0, 3), np.float32)
    table = pa.table({"id": pa.array(range(len(seqs))), "features": pa.array([s.tolist() for s in seqs], FEATURES_TYPE)})
    padded = []
    real_predict = type(model).predict

    def spy(self, x, **kw):
        padded.append(x.shape[0] * x.shape[1])
        return real_predict(self, x, **kw)

    monkeypatch.setattr(type(model), "predict", spy)
    out = score_batch(model, table, ScoreOptions(engine="numba"))
    real = sum(len(s) for s in seqs)
    assert sum(padded) <= 2 * real, (sum(padded), real)  # unsplit: 600 x 3000 = 1.8 M cells
    assert out.column("id").to_pylist() == list(range(len(seqs)))
    got = out.column("score").to_pylist()
    assert got[40] is None
    for i in (0, 17, 599):  # each row's bits are those of the row scored alone
        alone = real_predict(model, seqs[i][None], lengths=np.array([len(seqs[i])]), engine="numba")
        assert np.float32(got[i]) == alone.reshape(-1)[0]


def test_row_too_long_for_the_memory_limit_is_one_line(tmp_path):
    bundle = make_bundle(tmp_path)
    seqs = [np.ones((1, 3), np.float32)] * 3 + [np.ones((20_000, 3), np.float32)]
    data = write(pa.table({"id": pa.array(range(4)), "features": pa.array([s.tolist() for s in seqs], FEATURES_TYPE)}),
                 tmp_path / "in.parquet")
    r = run("score", "-m", bundle, "-i", data, "-o", tmp_path / "o.parquet", "--memory-limit", "256K")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1
    assert "row 3 (id=3): its 20000 steps would need" in r.stderr and "--memory-limit" in r.stderr
    assert not (tmp_path / "o.parquet").exists()


def test_long_layout_sequence_past_the_memory_limit_is_one_line(tmp_path):
    bundle = make_bundle(tmp_path, feature_names=["a", "b", "c"])
    n = 50_000
    t = pa.table({"id": np.zeros(n, np.int64), "t": np.arange(n), "a": np.ones(n, np.float32),
                  "b": np.ones(n, np.float32), "c": np.ones(n, np.float32)})
    data = write(t, tmp_path / "long.parquet", row_group_size=4096)
    r = run("score", "-m", bundle, "-i", data, "-o", tmp_path / "o.parquet", "--layout", "long", "--key-column", "id",
            "--order-column", "t", "--memory-limit", "256K", "--batch-rows", "4096")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "one sequence of more than" in r.stderr and "(id=0)" in r.stderr


# ------------------------------------------------------------------ 8. bundle documents that lie
def _rewrite(src, dst, edit):
    with np.load(src) as z:
        members = {k: z[k] for k in z.files}
    doc = json.loads(str(members["__rnnjit__"][()]))
    edit(doc, members)
    members["__rnnjit__"] = np.array(json.dumps(doc))
    np.savez(dst, **members)
    return dst


def _set(path, value):
    def edit(doc, members):
        node = doc
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value

    return edit


DOCUMENTS = [
    ("input_size-Infinity", _set(["chain", 0, "rnn", "input_size"], float("inf")), "'chain[0].rnn.input_size' is inf"),
    ("hidden_size-string", _set(["chain", 0, "rnn", "hidden_size"], "5"), "'chain[0].rnn.hidden_size' is '5'"),
    ("feature_names-string", _set(["feature_names"], "a,b,c"), "'feature_names' is 'a,b,c'; expected a list of strings"),
    ("feature_names-ints", _set(["feature_names"], [1, 2, 3]), "'feature_names' is [1, 2, 3]"),
    ("ignored-string", _set(["ignored"], "fc"), "'ignored' is 'fc'"),
    ("dropped_keys-int", _set(["provenance", "dropped_keys"], 3), "'provenance.dropped_keys' is 3"),
    ("provenance-string", _set(["provenance"], "me"), "'provenance' is 'me'; expected a JSON object"),
    ("reference-list", _set(["reference"], [1, 2]), "'reference' is [1, 2]; expected a JSON object"),
    ("reference-ragged-x", _set(["reference", "x"], [[[1.0, 2.0, 3.0]], [[1.0]]]), "'reference.x'"),
    ("reference-lengths", _set(["reference", "lengths"], [1]), "'reference' is 'x (3, 7, 3), lengths 1"),
    ("reference-NaN", _set(["reference", "y"], [[float("nan")]] * 3), "array of finite numbers"),
    ("chain-not-a-list", _set(["chain"], {"kind": "rnn"}), "'chain' is {'kind': 'rnn'}"),
    ("linear-bias-string", _set(["chain", 1, "bias"], "yes"), "'chain[1].bias' is 'yes'; expected true or false"),
]


@pytest.mark.parametrize("name,edit,fragment", DOCUMENTS, ids=[d[0] for d in DOCUMENTS])
def test_bundle_document_that_lies_is_one_line_naming_the_key(tmp_path, name, edit, fragment):
    bad = _rewrite(make_bundle(tmp_path), tmp_path / "bad.npz", edit)
    with pytest.raises(BundleError) as exc:
        rnnjit.load(bad)
    assert fragment in _one_line(exc)
    for args in (["inspect", bad], ["verify", bad]):
        r = run(*args)
        assert r.exit_code == 2 and r.stderr.count("\n") == 1 and fragment in r.stderr, (args, r.stderr)


def _norm_bundle(tmp_path, kind):
    spec = RNNSpec("gru", 3, 4, prefix="rnn.")
    w = {k: v for k, v in make_weights(spec, 1).items()}
    w.update({"bn.weight": np.ones(4, np.float32), "bn.bias": np.zeros(4, np.float32),
              "bn.running_mean": np.zeros(4, np.float32), "bn.running_var": np.ones(4, np.float32),
              "bn.num_batches_tracked": np.array(3, np.int64)})
    np.savez(tmp_path / "src.npz", **w)
    return rnnjit.convert(tmp_path / "src.npz", tmp_path / "bn.npz", chain=f"rnn,{kind},fc") and tmp_path / "bn.npz"


@pytest.mark.parametrize("what,edit,fragment", [
    ("negative-running_var", lambda d, m: m.__setitem__("bn.running_var", -np.ones(4, np.float32)),
     "key 'bn.running_var' holds a negative variance"),
    ("NaN-eps", _set(["chain", 1, "eps"], float("nan")), "'chain[1].eps' is nan; expected a positive finite number"),
    ("negative-eps", _set(["chain", 1, "eps"], -1e-5), "'chain[1].eps' is -1e-05"),
], ids=lambda v: v if isinstance(v, str) and " " not in v else "")
def test_norm_that_would_score_nan_is_refused_at_load(tmp_path, what, edit, fragment):
    bad = _rewrite(_norm_bundle(tmp_path, "bn"), tmp_path / "bad.npz", edit)
    with pytest.raises(BundleError) as exc:
        rnnjit.load(bad)
    assert fragment in _one_line(exc)


# ------------------------------------------------------------------ 9. devices and FIFOs
@pytest.fixture()
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def test_devices_and_fifos_are_refused_before_opening(tmp_path, fifo):
    bundle = make_bundle(tmp_path)
    data = write(pa.table({"features": pa.array([[[0.0, 0.0, 0.0]]], FEATURES_TYPE)}), tmp_path / "in.parquet")
    cases = [
        (["convert", "/dev/zero", "-o", tmp_path / "b.npz"], "/dev/zero is a character device, not a regular file"),
        (["convert", fifo, "-o", tmp_path / "b.npz"], "is a FIFO (named pipe), not a regular file"),
        (["convert", tmp_path / "src-bundle.npz", "-o", tmp_path / "c.npz", "--config", "/dev/zero"],
         "/dev/zero is a character device"),
        (["verify", bundle, "--against", "/dev/zero"], "/dev/zero is a character device"),
        (["score", "-m", bundle, "-i", fifo, "-o", tmp_path / "o.parquet"], "FIFO (named pipe), not a regular file or a directory"),
        (["score", "-m", fifo, "-i", data, "-o", tmp_path / "o.parquet"], "FIFO (named pipe), not a regular file"),
        (["inspect", fifo], "FIFO (named pipe)"),
    ]
    for args, fragment in cases:
        r = run(*args)
        assert r.exit_code == 2, (args, r.stderr)
        assert fragment in r.stderr and r.stderr.strip().count("\n") == 0 and not r.stdout, (args, r.stderr)


# ------------------------------------------------------------------ 10. terminal and test hooks
def test_escape_codes_in_weight_names_do_not_reach_the_terminal(tmp_path):
    spec = RNNSpec("gru", 3, 4, prefix="\x1b[2J\x1b[31mrnn.")
    np.savez(tmp_path / "w.npz", **make_weights(spec, 1))
    r = run("convert", tmp_path / "w.npz", "-o", tmp_path / "b.npz", "--head", "fc")
    assert r.exit_code == 0 and "\x1b" not in r.stdout + r.stderr and "\\x1b[31mrnn" in r.stderr, r.stderr
    r = run("inspect", tmp_path / "b.npz")
    assert r.exit_code == 0 and "\x1b" not in r.stdout and "\\x1b[31mrnn" in r.stdout


def test_kill_hook_with_an_unknown_signal_is_one_line(tmp_path, monkeypatch):
    from rnnjit.io import killpoints

    monkeypatch.setenv("RNNJIT_KILL_AT", "read:1:FOO")
    monkeypatch.setattr(killpoints, "_parsed", False)
    bundle = make_bundle(tmp_path)
    data = write(pa.table({"features": pa.array([[[0.0, 0.0, 0.0]]], FEATURES_TYPE)}), tmp_path / "in.parquet")
    r = run("score", "-m", bundle, "-i", data, "-o", tmp_path / "out/")
    monkeypatch.setattr(killpoints, "_parsed", False)
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "is not stage:n or stage:n:SIGNAL" in r.stderr


# ------------------------------------------------------------------ #21 item 9: plain pickles of numpy arrays
@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("spelling", ["numpy._core", "numpy.core"])
def test_plain_pickle_of_numpy_arrays_is_read(tmp_path, protocol, spelling):
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "f": np.asfortranarray(np.ones((2, 3))),
              "big": np.arange(4, dtype=">f4"), "epoch": np.int64(7)}
    raw = pickle.dumps(arrays, protocol=protocol)
    raw = raw.replace(b"numpy._core", spelling.encode()) if protocol == 2 else raw  # 4/5 count their string lengths
    (tmp_path / "np_ckpt.pkl").write_bytes(raw)
    sd, info = read_state_dict(tmp_path / "np_ckpt.pkl")
    assert info["format"] == "pickle" and info["skipped"] == ["epoch"]
    for k in ("w", "f", "big"):
        np.testing.assert_array_equal(sd[k], arrays[k])
        assert sd[k].flags.c_contiguous and sd[k].dtype.isnative


@pytest.mark.parametrize("what,payload,fragment", [
    ("object-array", lambda: pickle.dumps({"w": np.array([1, "a"], dtype=object)}, protocol=2), "dtype is 'O8'"),
    ("structured", lambda: pickle.dumps({"w": np.zeros(2, dtype=[("a", "f4")])}, protocol=2), "dtype is 'V4'"),
    ("short-data", lambda: pickle.dumps({"w": np.zeros(4, np.float32)}, protocol=2).replace(
        b"X\x10\x00\x00\x00" + bytes(16), b"X\x08\x00\x00\x00" + bytes(8)), "with 8 bytes of data; expected 16"),
    ("os-system", lambda: b"\x80\x02" + _global("os.system") + _str("id") + b"\x85R.", "refused pickle global 'os.system'"),
], ids=lambda v: v if isinstance(v, str) and " " not in v and "'" not in v else "")
def test_plain_pickle_of_anything_but_numbers_is_refused(tmp_path, what, payload, fragment):
    (tmp_path / "p.pkl").write_bytes(payload())
    with pytest.raises(WeightFileError) as exc:
        read_state_dict(tmp_path / "p.pkl")
    assert fragment in _one_line(exc)


def test_numpy_pickle_converts_and_scores_like_its_arrays(tmp_path):
    spec = RNNSpec("lstm", 3, 5, prefix="rnn.")
    w = make_weights(spec, 1)
    (tmp_path / "np_ckpt.pkl").write_bytes(pickle.dumps(w))
    np.savez(tmp_path / "same.npz", **w)
    a = rnnjit.convert(tmp_path / "np_ckpt.pkl", tmp_path / "a.npz", head="fc")
    b = rnnjit.convert(tmp_path / "same.npz", tmp_path / "b.npz", head="fc")
    x = np.random.default_rng(0).normal(size=(2, 4, 3)).astype(np.float32)
    np.testing.assert_array_equal(a.predict(x, engine="numpy"), b.predict(x, engine="numpy"))
    assert json.loads(str(np.load(tmp_path / "a.npz")["__rnnjit__"][()]))["provenance"]["source_format"] == "pickle"


def test_pickled_arrays_inside_a_torch_file_stay_set_aside(tmp_path):
    """In a torch.save file numpy arrays are side data (feature means, ...), not weights: still placeholders."""
    buf = io.BytesIO()
    pickle.dump({"w": np.zeros(2, np.float32)}, buf, protocol=2)
    pkl = b"\x80\x02}(" + _str("model") + b"}" + _str("w") + _tensor("0", 4) + b"s" + _str("mean") + _global(
        "numpy.core.multiarray._reconstruct") + _global("numpy.ndarray") + b"K\x00\x85" + _str("b") + b"\x87Ru."
    sd, info = read_state_dict(_zip(tmp_path / "m.pth", pkl, {"0": HONEST.tobytes()}))
    assert list(sd) == ["w"] and info["placeholders"] == ["numpy.core.multiarray._reconstruct (at 'mean')"]
