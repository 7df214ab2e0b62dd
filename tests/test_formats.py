"""rnnjit.formats: weights written by torch (and by hand, for hostile files) read without torch."""

from __future__ import annotations

import builtins
import collections
import os
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest
import torch
from formats_craft import Call, Storage, Tensor, deep_dict_pickle, write_legacy, write_zip
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnjit.errors import RnnjitError, UnsafePickleError, WeightFileError
from rnnjit.formats import read_state_dict


def _save(obj, path, fmt):
    if fmt == "zip":
        torch.save(obj, path)
    elif fmt == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    elif fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in obj.items()}, str(path))
    else:
        raise AssertionError(fmt)
    return path


def _expected(t: torch.Tensor) -> np.ndarray:
    t = t.detach()
    if t.dtype == torch.bfloat16:
        t = t.float()  # numpy has no bfloat16: rnnjit widens it, exactly
    return t.resolve_conj().resolve_neg().numpy()


def _assert_same(sd, ref: dict[str, torch.Tensor], *, ordered: bool = True):
    assert (list(sd) if ordered else sorted(sd)) == (list(ref) if ordered else sorted(ref))
    for key, t in ref.items():
        want = _expected(t)
        got = sd[key]
        assert isinstance(got, np.ndarray), key
        assert got.dtype == want.dtype, key
        assert got.shape == want.shape, key
        assert got.flags.c_contiguous, key
        np.testing.assert_array_equal(got, want, err_msg=key)


RNNS = {
    "lstm": lambda: torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True),
    "lstmp": lambda: torch.nn.LSTM(3, 6, proj_size=2),
    "gru": lambda: torch.nn.GRU(4, 3, bias=False),
    "rnn": lambda: torch.nn.RNN(2, 3, nonlinearity="relu"),
    "gru64": lambda: torch.nn.GRU(2, 3, num_layers=2).double(),
}
FMTS = ["zip", "legacy", "safetensors"]


class Net(torch.nn.Module):
    def __init__(self, cell: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = RNNS[cell]()
        self.fc = torch.nn.Linear(self.rnn.hidden_size * 2, 1)


# ----------------------------------------------------------------- torch writes


@pytest.mark.parametrize("fmt", FMTS, ids=lambda f: f"fmt={f}")
@pytest.mark.parametrize("cell", list(RNNS), ids=lambda c: f"cell={c}")
def test_rnn_state_dict_is_read_exactly(tmp_path, cell, fmt):
    ref = Net(cell).state_dict()
    sd, info = read_state_dict(_save(ref, tmp_path / "m.pth", fmt))
    _assert_same(sd, ref, ordered=fmt != "safetensors")  # safetensors sorts its header by name
    expected_format = {"zip": "pth-zip", "legacy": "pth-legacy", "safetensors": "safetensors"}[fmt]
    assert info["format"] == expected_format
    assert info["unwrapped"] is None and info["stripped_prefix"] is None and info["skipped"] == []
    assert info["source"] == "m.pth"
    assert len(info["sha256"]) == 64


@pytest.mark.parametrize("fmt", FMTS, ids=lambda f: f"fmt={f}")
@pytest.mark.parametrize(
    "dtype",
    [torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int8, torch.uint8, torch.bool],
    ids=lambda d: f"dtype={str(d)[6:]}",
)
def test_dtypes_are_kept_and_bfloat16_widens_exactly_and_is_named(tmp_path, fmt, dtype):
    torch.manual_seed(1)
    values = torch.randn(3, 4) * 50
    ref = {"w": values.to(dtype), "v": values[0].to(dtype)}
    sd, info = read_state_dict(_save(ref, tmp_path / "m.pt", fmt))
    _assert_same(sd, ref, ordered=fmt != "safetensors")
    if dtype == torch.bfloat16:
        assert sd["w"].dtype == np.float32
    assert sorted(info["widened"]) == (["v", "w"] if dtype == torch.bfloat16 else [])


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_views_strides_and_offsets_share_one_storage(tmp_path, fmt):
    t = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    ref = {
        "offset": t[1:],
        "transposed": t.t(),
        "strided": t[::2, 1::3],
        "column": t[:, 2],
        "expanded": torch.ones(1, 3).expand(4, 3),
        "scalar": t[2, 3],
        "empty": t[:0],
        "uint16_v3": torch.arange(7).to(torch.uint16)[2:],  # written by _rebuild_tensor_v3
        "conj": torch.tensor([1 + 2j, 3 - 1j], dtype=torch.complex64).conj(),
    }
    sd, _ = read_state_dict(_save(ref, tmp_path / "m.pth", fmt))
    ref["uint16_v3"] = ref["uint16_v3"].int()  # numpy's uint16 compares equal to torch's values
    sd["uint16_v3"] = sd["uint16_v3"].astype(np.int32)
    _assert_same(sd, ref)


def test_big_endian_archive_and_missing_byteorder_record(tmp_path):
    values = np.arange(6, dtype=np.float32) / 7
    storage = Storage("0", 6)
    obj = {"w": Tensor(storage, 1, (2, 2), (1, 2))}
    expected = np.lib.stride_tricks.as_strided(values[1:], (2, 2), (4, 8)).copy()

    sd, _ = read_state_dict(write_zip(tmp_path / "be.pth", obj, {"0": values.astype(">f4").tobytes()}, byteorder="big"))
    np.testing.assert_array_equal(sd["w"], expected)
    assert sd["w"].dtype == np.float32 and sd["w"].dtype.isnative

    # Archives from before the byteorder record existed are little-endian.
    sd, _ = read_state_dict(write_zip(tmp_path / "old.pth", obj, {"0": values.tobytes()}, byteorder=None))
    np.testing.assert_array_equal(sd["w"], expected)


def test_legacy_storage_views(tmp_path):
    values = np.arange(10, dtype=np.float64)
    whole = Storage("7", 10, torch.DoubleStorage)
    view = Storage("7", 10, torch.DoubleStorage, view=("7v", 4, 5))  # elements 4..8
    obj = {"whole": Tensor(whole, 0, (10,), (1,)), "view": Tensor(view, 1, (2, 2), (1, 2))}
    sd, info = read_state_dict(write_legacy(tmp_path / "v.pth", obj, {"7": (10, values.tobytes())}))
    np.testing.assert_array_equal(sd["whole"], values)
    np.testing.assert_array_equal(sd["view"], [[5.0, 7.0], [6.0, 8.0]])
    assert info["format"] == "pth-legacy"

    bad = {"view": Tensor(Storage("7", 10, torch.DoubleStorage, view=("7v", 8, 5)), 0, (1,), (1,))}
    _assert_one_line_error(write_legacy(tmp_path / "b.pth", bad, {"7": (10, values.tobytes())}), "exceeds storage")


def test_bytes_and_plain_values_in_a_checkpoint_are_skipped(tmp_path):
    ref = {"w": torch.ones(2)}
    ckpt = {"model": ref, "blob": b"\x00\xffabc", "tags": {"a", "b"}, "size": torch.Size([2, 3]), "z": 1j}
    sd, info = read_state_dict(_save(ckpt, tmp_path / "c.pth", "zip"))
    _assert_same(sd, ref)
    assert info["skipped"] == ["blob", "tags", "size", "z"]


def test_reading_never_imports_torch(tmp_path):
    path = _save({"model": Net("lstm").state_dict()}, tmp_path / "m.pth", "zip")
    code = (
        "import sys; sys.modules['torch'] = sys.modules['safetensors'] = None\n"
        "from rnnjit.formats import read_state_dict\n"
        f"sd, info = read_state_dict({str(path)!r})\n"
        "assert 'torch' not in [m.split('.')[0] for m in sys.modules if sys.modules[m] is not None]\n"
        "print(len(sd), info['format'])"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(len(Net("lstm").state_dict())), "pth-zip"]


def test_format_is_told_by_content_not_extension(tmp_path):
    ref = Net("gru").state_dict()
    _save(ref, tmp_path / "weights.safetensors", "zip")
    _save(ref, tmp_path / "weights.bin", "safetensors")
    assert read_state_dict(tmp_path / "weights.safetensors")[1]["format"] == "pth-zip"
    assert read_state_dict(str(tmp_path / "weights.bin"))[1]["format"] == "safetensors"


# ------------------------------------------------------------ checkpoints


def _trained(cell="lstm"):
    net = Net(cell)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    out = net.rnn(torch.randn(2, 4, net.rnn.input_size))[0]
    out.sum().backward()
    opt.step()
    return net, opt


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("key", ["model", "state_dict", "model_state_dict"])
def test_checkpoint_with_optimizer_is_unwrapped(tmp_path, fmt, key):
    net, opt = _trained()
    ckpt = {"epoch": 3, key: net.state_dict(), "optimizer": opt.state_dict(), "best": 0.25, "note": "run 7"}
    sd, info = read_state_dict(_save(ckpt, tmp_path / "ckpt.pth", fmt))
    _assert_same(sd, net.state_dict())
    assert info["unwrapped"] == key
    assert info["skipped"] == ["epoch", "optimizer", "best", "note"]


def test_nested_checkpoint_and_single_unconventional_dict(tmp_path):
    net, opt = _trained("gru")
    ckpt = {"meta": {"epoch": 1}, "ema": {"weights_fp32": net.state_dict()}, "optim_state": opt.state_dict()}
    sd, info = read_state_dict(_save(ckpt, tmp_path / "c.pth", "zip"))
    _assert_same(sd, net.state_dict())
    assert info["unwrapped"] == "ema.weights_fp32"


def test_several_dicts_of_tensors_are_flattened_with_dotted_keys(tmp_path):
    enc, dec = torch.nn.GRU(2, 3), torch.nn.Linear(3, 1)
    ckpt = {"encoder": enc.state_dict(), "decoder": dec.state_dict(), "optimizer": {"state": {0: {"m": torch.ones(1)}}}}
    sd, info = read_state_dict(_save(ckpt, tmp_path / "c.pth", "zip"))
    ref = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    ref.update({f"decoder.{k}": v for k, v in dec.state_dict().items()})
    _assert_same(sd, ref)
    assert info["unwrapped"] is None and info["skipped"] == ["optimizer"]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("wrap", [False, True])
def test_dataparallel_module_prefix_is_stripped(tmp_path, wrap):
    net = Net("lstm")
    dp = torch.nn.DataParallel(net).state_dict()
    assert all(k.startswith("module.") for k in dp)
    sd, info = read_state_dict(_save({"model": dp} if wrap else dp, tmp_path / "dp.pth", "zip"))
    _assert_same(sd, net.state_dict())
    assert info["stripped_prefix"] == "module."
    assert info["unwrapped"] == ("model" if wrap else None)


def test_prefix_is_kept_unless_every_key_has_it(tmp_path):
    ref = {"model.rnn.weight": torch.ones(2), "head.weight": torch.zeros(1)}
    sd, info = read_state_dict(_save(ref, tmp_path / "p.pth", "zip"))
    assert list(sd) == list(ref) and info["stripped_prefix"] is None


# ------------------------------------------------------------------- npz


def test_npz_and_bundle_npz(tmp_path):
    ref = {k: v.numpy() for k, v in Net("rnn").state_dict().items()}
    np.savez(tmp_path / "w.npz", **ref, __rnnjit__=np.array('{"format_version": 1}'))
    sd, info = read_state_dict(tmp_path / "w.npz")
    assert list(sd) == list(ref)
    for k in ref:
        np.testing.assert_array_equal(sd[k], ref[k])
    assert info["format"] == "npz" and info["skipped"] == ["__rnnjit__"]


def test_npz_with_object_array_is_refused(tmp_path):
    np.savez(tmp_path / "o.npz", w=np.ones(2), bad=np.array([1, "x", None], dtype=object))
    with pytest.raises(WeightFileError, match="'bad' is an object array"):
        read_state_dict(tmp_path / "o.npz")


# ---------------------------------------------------------- hostile pickles


def _attacks(marker):
    return {
        "posix.system": Call(os.system, f"touch {marker}"),
        "builtins.eval": Call(builtins.eval, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.Popen": Call(subprocess.Popen, ["touch", str(marker)]),
    }


@pytest.mark.parametrize("layout", ["zip", "legacy"], ids=lambda f: f"layout={f}")
@pytest.mark.parametrize("name", ["posix.system", "builtins.eval", "subprocess.Popen"], ids=lambda g: f"global={g}")
def test_malicious_pickle_global_is_refused_and_never_runs(tmp_path, layout, name):
    marker = tmp_path / "pwned"
    obj = {"weight": Tensor(Storage("0", 1), 0, (1,), (1,)), "bias": _attacks(marker)[name]}
    if layout == "zip":
        path = write_zip(tmp_path / "evil.pth", obj, {"0": b"\0" * 4})
    else:
        path = write_legacy(tmp_path / "evil.pth", obj, {"0": (1, b"\0" * 4)})
    with pytest.raises(UnsafePickleError, match=f"refused pickle global '{name}'") as exc:
        read_state_dict(path)
    assert "torch.save(model.state_dict(), path)" in str(exc.value)
    assert "\n" not in str(exc.value)
    assert not marker.exists()


def test_whole_pickled_module_is_refused_with_a_hint(tmp_path):
    torch.save(torch.nn.GRU(2, 3), tmp_path / "whole.pth")
    _assert_one_line_error(tmp_path / "whole.pth", r"holds a whole pickled model \(torch\.nn\.modules\.rnn\.GRU\)")
    torch.save({"model": torch.nn.GRU(2, 3), "epoch": 1}, tmp_path / "wrapped.pth")
    _assert_one_line_error(tmp_path / "wrapped.pth", r"whole pickled model: torch\.nn\.modules\.rnn\.GRU \(at 'model', a pickled nn\.Module\)")


# ------------------------------------------------------------ broken files


def _assert_one_line_error(path, match):
    with pytest.raises(WeightFileError, match=match) as exc:
        read_state_dict(path)
    assert "\n" not in str(exc.value)


def test_truncated_pth_is_a_clear_error(tmp_path):
    data = _save(Net("lstm").state_dict(), tmp_path / "m.pth", "zip").read_bytes()
    (tmp_path / "half.pth").write_bytes(data[: len(data) // 2])
    _assert_one_line_error(tmp_path / "half.pth", "truncated or corrupt")


def test_truncated_legacy_is_a_clear_error(tmp_path):
    data = _save(Net("gru").state_dict(), tmp_path / "m.pth", "legacy").read_bytes()
    (tmp_path / "half.pth").write_bytes(data[: len(data) - 10])
    _assert_one_line_error(tmp_path / "half.pth", "truncated")


def test_random_bytes_empty_file_and_missing_file(tmp_path):
    (tmp_path / "rand.pth").write_bytes(np.random.default_rng(0).bytes(1000))
    _assert_one_line_error(tmp_path / "rand.pth", r"unrecognised file.*expected a PyTorch \.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    _assert_one_line_error(tmp_path / "empty.pth", r"is empty \(0 bytes\)")
    _assert_one_line_error(tmp_path / "nope.pth", "no such file")
    _assert_one_line_error(tmp_path, "is a directory")


def test_other_archives_are_named(tmp_path):
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 1)), tmp_path / "ts.pt")
    _assert_one_line_error(tmp_path / "ts.pt", "TorchScript archive")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("readme.txt", "hello")
    _assert_one_line_error(tmp_path / "other.zip", r"zip archive holding readme\.txt; expected \*/data\.pkl")
    with tarfile.open(tmp_path / "old.tar", "w") as tf:
        tf.add(tmp_path / "other.zip", arcname="pickle")
    _assert_one_line_error(tmp_path / "old.tar", r"tar archive \(the PyTorch < 0\.4")
    np.save(tmp_path / "one.npy", np.ones(3))
    _assert_one_line_error(tmp_path / "one.npy", "a single .npy array")


def test_plain_pickle_without_arrays_holds_no_tensors(tmp_path):
    import pickle

    (tmp_path / "p.pkl").write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
    _assert_one_line_error(tmp_path / "p.pkl", r"holds no tensors \(top-level keys: 'w'\)")


def _write_safetensors(path, header: bytes, body: bytes):
    path.write_bytes(len(header).to_bytes(8, "little") + header + body)
    return path


@pytest.mark.parametrize(
    "header, match",
    [
        (b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 4096]}}', "claims bytes 0..4096"),
        (b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}', "claims bytes 8..24"),
        (b'{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}', "needs 12 bytes, has 16"),
        (b'{"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}', "shape"),
        (b'{"w": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}}', "dtype 'F8_E4M3'"),
        (b'{"w": [1, 2]}', "entry 'w'"),
        (b'{"w": {"dtype": "F32",', "not valid JSON"),
    ],
)
def test_safetensors_bad_header_is_refused(tmp_path, header, match):
    _assert_one_line_error(_write_safetensors(tmp_path / "w.safetensors", header, b"\0" * 16), match)


def test_safetensors_header_longer_than_file(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes((10_000).to_bytes(8, "little") + b'{"w": {}}')
    _assert_one_line_error(path, "header claims 10000 bytes")


def test_missing_storage_member(tmp_path):
    obj = {"w": Tensor(Storage("0", 4), 0, (4,), (1,)), "b": Tensor(Storage("1", 2), 0, (2,), (1,))}
    path = write_zip(tmp_path / "m.pth", obj, {"0": b"\0" * 16})
    _assert_one_line_error(path, r"storage of tensor 'b' \(archive/data/1\) is missing")


@pytest.mark.parametrize(
    "offset, size, stride, match",
    [
        (0, (5,), (1,), "reaches element 4 of a storage of 4 elements"),
        (3, (2,), (1,), "reaches element 4"),
        (0, (2, 2), (1, 3), "reaches element 4"),
        (0, (2,), (-1,), "non-negative integer"),
        (0, (2, 2), (1,), "one stride per dimension"),
        (0, (1 << 20, 1 << 20), (0, 0), "refusing to allocate"),
    ],
)
@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_view_outside_its_storage_is_refused(tmp_path, layout, offset, size, stride, match):
    obj = {"w": Tensor(Storage("0", 4), offset, size, stride)}
    if layout == "zip":
        path = write_zip(tmp_path / "m.pth", obj, {"0": b"\0" * 16})
    else:
        path = write_legacy(tmp_path / "m.pth", obj, {"0": (4, b"\0" * 16)})
    _assert_one_line_error(path, match)


def test_pickle_cannot_overwrite_a_validated_tensor(tmp_path):
    # BUILD after the rebuild call would set slots (offset, stride) past the checks.
    obj = {"w": Tensor(Storage("0", 4), 0, (4,), (1,), state=(None, {"offset": -(1 << 20)}))}
    _assert_one_line_error(write_zip(tmp_path / "m.pth", obj, {"0": b"\0" * 16}), "set the state of a LazyTensor")


def test_looping_or_deeply_nested_checkpoint(tmp_path):
    loop = {"x": {}}
    loop["x"]["y"] = loop
    _assert_one_line_error(write_zip(tmp_path / "loop.pth", loop, {}), r"holds no tensors \(top-level keys: 'x'\)")
    _assert_one_line_error(write_zip(tmp_path / "deep.pth", deep_dict_pickle(100_000), {}), "nests containers 101 deep")
    inner = {"x": {"w": Tensor(Storage("0", 1), 0, (1,), (1,))}}
    outer = {"model": inner}
    inner["model"] = outer
    # The loop back to the top holds nothing new: the one state_dict inside is found.
    sd, info = read_state_dict(write_zip(tmp_path / "l2.pth", outer, {"0": b"\0" * 4}))
    assert list(sd) == ["w"] and info["unwrapped"] == "model.x" and info["skipped"] == ["model.model"]


def test_storage_shorter_than_declared(tmp_path):
    obj = {"w": Tensor(Storage("0", 4), 0, (4,), (1,))}
    _assert_one_line_error(write_zip(tmp_path / "z.pth", obj, {"0": b"\0" * 8}), "holds 8 bytes but 16 are needed")
    _assert_one_line_error(write_legacy(tmp_path / "l.pth", obj, {"0": (2, b"\0" * 8)}), "holds 8 bytes but 16")


def test_file_without_tensors(tmp_path):
    torch.save({"epoch": 3, "cfg": {"lr": 0.1}}, tmp_path / "n.pth")
    _assert_one_line_error(tmp_path / "n.pth", r"holds no tensors \(top-level keys: 'epoch', 'cfg'\)")
    torch.save([torch.ones(1)], tmp_path / "l.pth")
    _assert_one_line_error(tmp_path / "l.pth", "holds a list, not a dict of tensors")


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("small")
    ref = collections.OrderedDict(w=torch.arange(6.0).reshape(2, 3), b=torch.ones(3, dtype=torch.float16))
    return {fmt: _save(ref, d / f"{fmt}.pth", fmt).read_bytes() for fmt in ("zip", "legacy", "safetensors")}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fmt=st.sampled_from(["zip", "legacy", "safetensors"]),
    cut=st.floats(0, 1),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), max_size=3),
)
def test_damaged_files_raise_weight_file_error_or_read(tmp_path, small_files, fmt, cut, flips):
    data = bytearray(small_files[fmt])
    for where, xor in flips:
        data[int(where * len(data))] ^= xor
    data = data[: int(cut * len(data))] if cut < 1 else data
    path = tmp_path / "damaged.pth"
    path.write_bytes(bytes(data))
    try:
        sd, _ = read_state_dict(path)
    except RnnjitError as exc:
        assert isinstance(exc, WeightFileError) and "\n" not in str(exc)
    else:
        assert all(isinstance(v, np.ndarray) and v.dtype.kind in "fiucb" for v in sd.values())


@pytest.mark.parametrize("fmt", FMTS, ids=lambda f: f"fmt={f}")
def test_widened_names_follow_the_stripped_prefix(tmp_path, fmt):
    ref = {"module.w": torch.ones(2, 2, dtype=torch.bfloat16), "module.b": torch.ones(2)}
    _, info = read_state_dict(_save(ref, tmp_path / "m.pt", fmt))
    assert info["stripped_prefix"] == "module." and info["widened"] == ["w"]
