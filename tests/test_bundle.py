"""The bundle: round trip into torch, its JSON document, and validation of bad bundles.

Bad bundles are crafted by rewriting a good one's npz members, the way a
truncated copy, a hand edit or a different tool would break them.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import rnnjit
import rnnjit.bundle
from rnnjit.errors import BundleError
from torch_models import TOL, Arch, Net, as_dtype, convert_and_load, make_batch, max_abs, torch_forward

ROUND_TRIP = [
    Arch("lstm", num_layers=2, bidirectional=True, proj_size=3),
    Arch("gru", num_layers=3, bias=False),
    Arch("rnn_relu", num_layers=2, bidirectional=True),
    Arch("rnn_tanh"),
]


def _id(a: Arch) -> str:
    cell, layers, bidir, bias, proj = a.cell, a.num_layers, a.bidirectional, a.bias, a.proj_size
    return f"{cell=}-{layers=}-{bidir=}-{bias=}-{proj=}"


@pytest.mark.parametrize("arch", ROUND_TRIP, ids=_id)
def test_bundle_loads_back_into_torch_with_identical_outputs(arch, tmp_path):
    net = Net(arch, ("linear:4", "relu", "linear:2", "softmax"), seed=1).eval()
    convert_and_load(net, tmp_path)
    npz = np.load(tmp_path / "model.npz", allow_pickle=False)
    fresh = Net(arch, ("linear:4", "relu", "linear:2", "softmax"), seed=99)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in npz.items() if not k.startswith("__")}, strict=True)
    x, lens = make_batch(np.random.default_rng(0), arch, B=3, T=5, variable=True)
    for output in ("last", "final", "all"):
        np.testing.assert_array_equal(
            torch_forward(fresh, x, lens, output=output)[0], torch_forward(net, x, lens, output=output)[0]
        )


def test_bundle_keys_are_pytorch_keys_plus_one_json_document(tmp_path):
    net = Net(Arch("lstm", num_layers=2, proj_size=2), ("linear:1", "sigmoid"))
    convert_and_load(net, tmp_path, feature_names=["a", "b", "c"])
    npz = np.load(tmp_path / "model.npz", allow_pickle=False)
    assert set(npz.files) == set(net.state_dict()) | {"__rnnjit__"}
    for k, v in net.state_dict().items():
        assert npz[k].dtype == np.float32 and npz[k].shape == tuple(v.shape)
        np.testing.assert_array_equal(npz[k], v.numpy())
    doc = json.loads(str(npz["__rnnjit__"][()]))
    assert doc["format_version"] == 2
    assert [s["kind"] for s in doc["chain"]] == ["rnn", "linear", "activation"]
    rnn = doc["chain"][0]["rnn"]
    assert (rnn["cell"], rnn["input_size"], rnn["hidden_size"], rnn["proj_size"]) == ("lstm", 3, 5, 2)
    assert (rnn["num_layers"], rnn["bidirectional"], rnn["bias"], rnn["prefix"]) == (2, False, True, "rnn.")
    assert [s["name"] for s in doc["chain"]] == ["rnn", "head.0", "sigmoid"]
    assert doc["output"] == "last" and doc["dtype"] == "float32"
    assert doc["feature_names"] == ["a", "b", "c"]
    prov = doc["provenance"]
    assert prov["source"] == "model.pth"
    assert prov["sha256"] == hashlib.sha256((tmp_path / "model.pth").read_bytes()).hexdigest()
    assert prov["rnnjit_version"] == rnnjit.__version__
    # the stored reference is what the model computes on the stored input
    ref = doc["reference"]
    model = rnnjit.load(tmp_path / "model.npz")
    assert model.feature_names == ["a", "b", "c"]
    y = model.predict(np.array(ref["x"], np.float32), np.array(ref["lengths"]), engine="numpy")
    np.testing.assert_allclose(y, np.array(ref["y"]), rtol=0, atol=1e-6)


def test_reference_false_stores_no_reference(tmp_path):
    convert_and_load(Net(Arch("gru")), tmp_path, reference=False)
    doc = rnnjit.bundle.read_config(tmp_path / "model.npz")
    assert "reference" not in doc


def test_float64_model_gives_float64_bundle(tmp_path, engine):
    net = as_dtype(Net(Arch("gru", num_layers=2, bidirectional=True), ("linear:2",)), "float64")
    model, bundle = convert_and_load(net, tmp_path)
    assert model.dtype == np.float64
    assert all(v.dtype == np.float64 for k, v in np.load(bundle).items() if not k.startswith("__"))
    x, lens = make_batch(np.random.default_rng(1), net.arch, B=3, T=6, variable=True, dtype="float64")
    y = model.predict(x, lens, engine=engine)
    assert y.dtype == np.float64
    assert max_abs(y, torch_forward(net, x, lens)[0]) <= TOL["float64"]
    # and the same bundle computes in float32 on request
    y32 = rnnjit.load(bundle, dtype="float32").predict(x, lens, engine=engine)
    assert y32.dtype == np.float32 and max_abs(y32, y) <= TOL["float32"]


def test_output_mode_is_stored_and_overridable(tmp_path):
    net = Net(Arch("lstm", bidirectional=True), ("linear:2",))
    model, bundle = convert_and_load(net, tmp_path, output="all")
    assert rnnjit.load(bundle).output == "all"
    x, _ = make_batch(np.random.default_rng(2), net.arch, B=2, T=4, variable=False)
    assert model.predict(x).shape == (2, 4, 2)
    assert model.predict(x, output="final").shape == (2, 2)


# ------------------------------------------------------------- bad bundles
@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory):
    d = tmp_path_factory.mktemp("good")
    net = Net(Arch("lstm", num_layers=2, bidirectional=True), ("linear:4", "relu", "linear:1", "sigmoid"))
    _, bundle = convert_and_load(net, d)
    return bundle


def rewrite(src, dst, *, drop=(), replace=None, config=None, raw=None):
    """Copy bundle ``src`` to ``dst`` dropping/replacing arrays or editing the JSON document."""
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if k not in drop}
    if config is not None:
        doc = json.loads(str(arrays["__rnnjit__"][()]))
        config(doc)
        arrays["__rnnjit__"] = np.array(json.dumps(doc))
    arrays.update(replace or {})
    arrays.update(raw or {})
    np.savez(dst, **arrays)
    return dst


def load_error(path) -> str:
    with pytest.raises(BundleError) as exc:
        rnnjit.load(path)
    msg = str(exc.value)
    assert "\n" not in msg, f"message is not one line: {msg!r}"
    return msg


def test_good_bundle_loads(good_bundle):
    assert rnnjit.load(good_bundle).output_dim == 1


def as_version_1(doc):
    """The JSON document as rnnjit wrote it before chains (format_version 1: rnn + head)."""
    chain = doc.pop("chain")
    doc["format_version"] = 1
    doc["rnn"] = chain[0]["rnn"]
    doc["head"] = chain[1:]
    doc.pop("ignored", None)


def test_version_1_bundle_loads_as_the_same_chain(good_bundle, tmp_path):
    old = rnnjit.load(rewrite(good_bundle, tmp_path / "v1.npz", config=as_version_1))
    new = rnnjit.load(good_bundle)
    assert old.chain == new.chain and old.describe() == "rnn,head.0,relu,head.2,sigmoid"
    x = np.random.default_rng(1).standard_normal((3, 4, 3)).astype(np.float32)
    np.testing.assert_array_equal(old.predict(x, lengths=[4, 2, 1], engine="numpy"),
                                  new.predict(x, lengths=[4, 2, 1], engine="numpy"))


def test_demo_bundle_still_loads_and_verifies():
    """data/demo_bundle.npz was written before chains (format_version 1) until someone regenerates it."""
    from rnnjit.verify import verify_reference

    path = Path(__file__).resolve().parent.parent / "data" / "demo_bundle.npz"
    assert rnnjit.bundle.read_config(path)["format_version"] in (1, 2)
    assert verify_reference(rnnjit.load(path), engine="numpy")["ok"]


def test_missing_weight_key_is_named(good_bundle, tmp_path):
    msg = load_error(rewrite(good_bundle, tmp_path / "b.npz", drop=["rnn.weight_hh_l1_reverse"]))
    assert "rnn.weight_hh_l1_reverse" in msg and "missing" in msg and "(20, 5)" in msg


def test_missing_head_key_is_named(good_bundle, tmp_path):
    msg = load_error(rewrite(good_bundle, tmp_path / "b.npz", drop=["head.2.weight"]))
    assert "head.2.weight" in msg and "missing" in msg


def test_misshaped_weight_names_key_and_both_shapes(good_bundle, tmp_path):
    with np.load(good_bundle) as npz:
        w = npz["rnn.weight_ih_l1"]
    assert w.shape == (20, 10)
    msg = load_error(rewrite(good_bundle, tmp_path / "b.npz", replace={"rnn.weight_ih_l1": w[:, :9]}))
    assert "rnn.weight_ih_l1" in msg and "(20, 9)" in msg and "(20, 10)" in msg


def test_misshaped_head_weight_names_key_and_both_shapes(good_bundle, tmp_path):
    bad = np.zeros((1, 3), np.float32)
    msg = load_error(rewrite(good_bundle, tmp_path / "b.npz", replace={"head.2.weight": bad}))
    assert "head.2.weight" in msg and "(1, 3)" in msg and "(1, 4)" in msg


def test_misshaped_bias_names_key_and_both_shapes(good_bundle, tmp_path):
    msg = load_error(rewrite(good_bundle, tmp_path / "b.npz", replace={"rnn.bias_hh_l0": np.zeros(21, np.float32)}))
    assert "rnn.bias_hh_l0" in msg and "(21,)" in msg and "(20,)" in msg


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=lambda v: f"value={v}")
def test_non_finite_weight_is_named(good_bundle, tmp_path, value):
    with np.load(good_bundle) as npz:
        w = npz["rnn.weight_hh_l0"].copy()
    w[3, 1] = value
    msg = load_error(rewrite(good_bundle, tmp_path / "b.npz", replace={"rnn.weight_hh_l0": w}))
    assert "rnn.weight_hh_l0" in msg and "non-finite" in msg


def test_non_finite_head_weight_is_named(good_bundle, tmp_path):
    with np.load(good_bundle) as npz:
        b = npz["head.0.bias"].copy()
    b[0] = np.nan
    msg = load_error(rewrite(good_bundle, tmp_path / "b.npz", replace={"head.0.bias": b}))
    assert "head.0.bias" in msg


@pytest.mark.parametrize("version", [3, 99, 0, "1", None], ids=lambda v: f"format_version={v!r}")
def test_unknown_format_version(good_bundle, tmp_path, version):
    def edit(doc):
        doc["format_version"] = version

    msg = load_error(rewrite(good_bundle, tmp_path / "b.npz", config=edit))
    assert "format_version" in msg and repr(version) in msg


def test_object_array_is_refused(good_bundle, tmp_path):
    obj = np.array([{"a": 1}, None], dtype=object)
    msg = load_error(rewrite(good_bundle, tmp_path / "b.npz", raw={"rnn.weight_ih_l0": obj}))
    assert "rnn.weight_ih_l0" in msg and "object" in msg


def test_integer_weight_is_refused(good_bundle, tmp_path):
    msg = load_error(rewrite(good_bundle, tmp_path / "b.npz", replace={"head.2.bias": np.zeros(1, np.int64)}))
    assert "head.2.bias" in msg


def test_missing_json_document(good_bundle, tmp_path):
    msg = load_error(rewrite(good_bundle, tmp_path / "b.npz", drop=["__rnnjit__"]))
    assert "__rnnjit__" in msg


def test_json_document_that_is_not_json(good_bundle, tmp_path):
    msg = load_error(rewrite(good_bundle, tmp_path / "b.npz", raw={"__rnnjit__": np.array("{not json")}))
    assert "__rnnjit__" in msg


@pytest.mark.parametrize(
    "field, value",
    [("cell", "transformer"), ("num_layers", 0), ("proj_size", -1)],
    ids=lambda v: repr(v),
)
def test_bad_rnn_config_values(good_bundle, tmp_path, field, value):
    def edit(doc):
        doc["chain"][0]["rnn"][field] = value

    msg = load_error(rewrite(good_bundle, tmp_path / "b.npz", config=edit))
    assert field in msg or repr(value) in msg


def test_config_that_disagrees_with_weights(good_bundle, tmp_path):
    def edit(doc):
        doc["chain"][0]["rnn"]["hidden_size"] = 6

    msg = load_error(rewrite(good_bundle, tmp_path / "b.npz", config=edit))
    assert "rnn.weight_ih_l0" in msg and "(24, 3)" in msg and "(20, 3)" in msg


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.update(output="every"),
        lambda d: d.update(dtype="float16"),
        lambda d: d["chain"].append({"kind": "activation", "name": "swish"}),
        lambda d: d["chain"].append({"kind": "attention", "name": "attn"}),
        lambda d: d["chain"].insert(1, {"kind": "pool", "name": "median"}),
    ],
    ids=["output='every'", "dtype='float16'", "activation='swish'", "kind='attention'", "pool='median'"],
)
def test_bad_mode_dtype_or_step(good_bundle, tmp_path, edit):
    msg = load_error(rewrite(good_bundle, tmp_path / "b.npz", config=edit))
    assert any(s in msg for s in ("every", "float16", "swish", "attention", "median"))


def test_not_a_bundle_files(tmp_path):
    assert "does not exist" in load_error(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"this is not a zip file")
    load_error(tmp_path / "junk.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    load_error(tmp_path / "single.npy")
    np.savez(tmp_path / "plain.npz", w=np.zeros(3))
    assert "__rnnjit__" in load_error(tmp_path / "plain.npz")


def test_truncated_bundle(good_bundle, tmp_path):
    data = good_bundle.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    load_error(tmp_path / "cut.npz")


def test_corrupt_member(good_bundle, tmp_path):
    """A member whose bytes were damaged after writing (zip CRC or npy header)."""
    dst = tmp_path / "bad.npz"
    with zipfile.ZipFile(good_bundle) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "rnn.weight_ih_l0.npy":
                data = b"\x93NUMPY garbage" + data[14:]
            zout.writestr(item, data)
    assert "rnn.weight_ih_l0" in load_error(dst)


def test_extra_layer_weights_are_refused(good_bundle, tmp_path):
    """Keys of a third layer next to a config that says two: the file and config disagree."""
    with np.load(good_bundle) as npz:
        extra = {k.replace("_l1", "_l2"): npz[k] for k in npz.files if "_l1" in k}
    msg = load_error(rewrite(good_bundle, tmp_path / "b.npz", replace=extra))
    assert "_l2" in msg


def test_config_that_says_unidirectional_next_to_reverse_weights(good_bundle, tmp_path):
    def edit(doc):
        doc["chain"][0]["rnn"]["bidirectional"] = False

    msg = load_error(rewrite(good_bundle, tmp_path / "b.npz", config=edit))
    assert "reverse" in msg or "(20, 10)" in msg


def test_float64_bundle_round_trips_into_a_double_module(tmp_path):
    net = as_dtype(Net(Arch("lstm", bidirectional=True, proj_size=2), ("linear:1", "sigmoid"), seed=4), "float64")
    convert_and_load(net, tmp_path)
    npz = np.load(tmp_path / "model.npz", allow_pickle=False)
    fresh = as_dtype(Net(Arch("lstm", bidirectional=True, proj_size=2), ("linear:1", "sigmoid"), seed=5), "float64")
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in npz.items() if not k.startswith("__")})
    for k, v in net.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)
