"""Placeholders stay inert: hand-written pickles that try to call, import or smuggle through them.

Each case is a pickle fragment placed at key ``"x"`` beside a real state_dict at
``"model"`` (``{"model": {"w": tensor}, "x": <fragment>}``), so a case either
loads the one weight with the fragment set aside, or fails with our one-line
error; nothing it names is ever imported or called.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
from formats_craft import Storage, Tensor, dumps, write_legacy, write_zip
from formats_user import Exploit

from rnnjit.errors import UnsafePickleError, WeightFileError
from rnnjit.formats import read_state_dict


def _s(text: str) -> bytes:
    """BINUNICODE: a string pushed on the stack."""
    raw = text.encode()
    return b"X" + len(raw).to_bytes(4, "little") + raw


def _g(module: str, name: str) -> bytes:
    """GLOBAL: what pickle resolves through find_class."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


MARK, TUPLE, REDUCE, NEWOBJ, BUILD, SETITEMS, APPENDS = b"(", b"t", b"R", b"\x81", b"b", b"u", b"e"
EMPTY_TUPLE, EMPTY_DICT, EMPTY_LIST, NEWOBJ_EX = b")", b"}", b"]", b"\x92"
INSTANCE = _g("trainlib.cfg", "Config") + EMPTY_TUPLE + NEWOBJ  # an unknown class, built by NEWOBJ


def _write(tmp_path, fragment: bytes, layout: str):
    legacy = layout == "legacy"
    inner = dumps({"w": Tensor(Storage("0", 2), 0, (2,), (1,))}, legacy=legacy)
    assert inner[:2] == b"\x80\x02" and inner[-1:] == b"."
    body = b"\x80\x02" + EMPTY_DICT + MARK + _s("model") + inner[2:-1] + _s("x") + fragment + SETITEMS + b"."
    raw = np.ones(2, "<f4").tobytes()
    if legacy:
        return write_legacy(tmp_path / "f.pth", body, {"0": (2, raw)})
    return write_zip(tmp_path / "f.pth", body, {"0": raw})


LOADS = {
    "a user function called by REDUCE": (_g("formats_user", "touch") + MARK + _s("{marker}") + TUPLE + REDUCE, "formats_user.touch"),
    "NEWOBJ then BUILD with a dict": (INSTANCE + EMPTY_DICT + MARK + _s("lr") + _s("0.1") + SETITEMS + BUILD, "trainlib.cfg.Config"),
    "SETITEMS and APPENDS on an instance": (
        INSTANCE + MARK + _s("k") + _s("v") + SETITEMS + MARK + _s("a") + _s("b") + APPENDS,
        "trainlib.cfg.Config",
    ),
    "NEWOBJ_EX with keyword arguments": (
        _g("trainlib.cfg", "Config") + EMPTY_TUPLE + EMPTY_DICT + MARK + _s("k") + _s("v") + SETITEMS + NEWOBJ_EX,
        "trainlib.cfg.Config",
    ),
    "getattr(cls, name), as enum.pickle_by_enum_name writes a member": (
        _g("builtins", "getattr") + MARK + _g("trainlib.cfg", "Phase") + _s("EVAL") + TUPLE + REDUCE,
        "builtins.getattr",
    ),
    "a module that does something on import": (_g("antigravity", "fly") + EMPTY_TUPLE + REDUCE, "antigravity.fly"),
    "a module that does not exist": (_g("rnnjit_no_such_module", "Thing"), "rnnjit_no_such_module.Thing"),
    "a placeholder class as a REDUCE argument": (
        _g("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE,  # allowed, then set aside as a plain value
        None,
    ),
}

FAILS = {
    "REDUCE calling a placeholder instance": (INSTANCE + EMPTY_TUPLE + REDUCE, r"calls an instance of trainlib\.cfg\.Config"),
    "a placeholder fed to OrderedDict": (
        _g("collections", "OrderedDict") + MARK + INSTANCE + TUPLE + REDUCE,
        r"TypeError.*not iterable",
    ),
    "a placeholder fed to set": (_g("builtins", "set") + MARK + INSTANCE + TUPLE + REDUCE, "not iterable"),
    "a placeholder as a tensor's storage": (
        _g("torch._utils", "_rebuild_tensor_v2")
        + MARK + INSTANCE + b"K\x00" + MARK + b"K\x01" + TUPLE + MARK + b"K\x01" + TUPLE + b"\x89" + EMPTY_DICT + TUPLE
        + REDUCE,
        r"built from Placeholder, not a storage",
    ),
    "a placeholder as a tensor's dtype": (
        _g("torch._utils", "_rebuild_tensor_v3")
        + MARK + INSTANCE + b"K\x00" + EMPTY_TUPLE + EMPTY_TUPLE + b"\x89" + EMPTY_DICT + INSTANCE + TUPLE + REDUCE,
        r"built from Placeholder|has dtype <placeholder",
    ),
    "os.system": (_g("os", "system") + MARK + _s("touch {marker}") + TUPLE + REDUCE, r"refused pickle global 'os\.system'"),
    "builtins.exec": (_g("builtins", "exec") + MARK + _s("open('{marker}', 'w')") + TUPLE + REDUCE, "'builtins.exec'"),
    "builtins.setattr": (_g("builtins", "setattr") + MARK + INSTANCE + _s("a") + _s("b") + TUPLE + REDUCE, "'builtins.setattr'"),
    "__builtin__.eval (protocol 2 name)": (_g("__builtin__", "eval") + MARK + _s("1") + TUPLE + REDUCE, "'builtins.eval'"),
    "importlib.import_module": (_g("importlib", "import_module") + MARK + _s("os") + TUPLE + REDUCE, "'importlib"),
    "subprocess.Popen": (_g("subprocess", "Popen") + MARK + _s("true") + TUPLE + REDUCE, "'subprocess.Popen'"),
}


@pytest.mark.parametrize("layout", ["zip", "legacy"], ids=lambda f: f"layout={f}")
@pytest.mark.parametrize("case", list(LOADS), ids=lambda c: c.replace(" ", "-"))
def test_fragment_is_set_aside_and_never_run(tmp_path, case, layout):
    marker = tmp_path / "pwned"
    fragment, name = LOADS[case]
    path = _write(tmp_path, _with_marker(fragment, marker), layout)
    sd, info = read_state_dict(path)
    assert list(sd) == ["w"] and info["unwrapped"] == "model"
    np.testing.assert_array_equal(sd["w"], np.ones(2, np.float32))
    assert info["placeholders"] == ([f"{name} (at 'x')"] if name else [])
    assert not marker.exists()
    assert "antigravity" not in sys.modules and "rnnjit_no_such_module" not in sys.modules


def _with_marker(fragment: bytes, marker) -> bytes:
    """Substitute ``{marker}`` inside BINUNICODE strings, fixing their lengths."""
    out = fragment
    for text in ("touch {marker}", "open('{marker}', 'w')", "{marker}"):
        if _s(text) in out:
            out = out.replace(_s(text), _s(text.replace("{marker}", str(marker))))
    return out


@pytest.mark.parametrize("layout", ["zip", "legacy"], ids=lambda f: f"layout={f}")
@pytest.mark.parametrize("case", list(FAILS), ids=lambda c: c.replace(" ", "-"))
def test_fragment_is_refused_and_never_run(tmp_path, case, layout):
    marker = tmp_path / "pwned"
    fragment, match = FAILS[case]
    path = _write(tmp_path, _with_marker(fragment, marker), layout)
    with pytest.raises(WeightFileError, match=match) as exc:
        read_state_dict(path)
    assert "\n" not in str(exc.value)
    assert not marker.exists()


def test_reduce_tricks_written_by_pickle_itself_are_refused(tmp_path):
    """``__reduce__`` returning (os.system, ...), as pickle.dumps writes it."""
    marker = tmp_path / "pwned"
    torch.save({"model": {"w": torch.ones(2)}, "x": Exploit(f"touch {marker}")}, tmp_path / "e.pth")
    with pytest.raises(UnsafePickleError, match=rf"refused pickle global '{os.name}\w*\.system'"):
        read_state_dict(tmp_path / "e.pth")
    assert not marker.exists()
