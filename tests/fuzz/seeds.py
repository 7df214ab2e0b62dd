"""Real files to mutate: written by torch.save, safetensors, np.savez and rnnjit.convert."""

from __future__ import annotations

import argparse
import pathlib
from pathlib import Path

import numpy as np

FORMATS = ("pth-zip", "pth-legacy", "safetensors", "npz", "bundle", "parquet")


def _net():
    import torch

    torch.manual_seed(0)
    net = torch.nn.Module()
    net.rnn = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    net.head = torch.nn.Sequential(torch.nn.Linear(8, 2), torch.nn.Sigmoid())
    return net


def _gru():
    import torch

    torch.manual_seed(1)
    net = torch.nn.Module()
    net.rnn = torch.nn.GRU(2, 3, batch_first=True)
    net.fc = torch.nn.Linear(3, 1)
    return net


def build(folder: Path) -> dict[str, list[Path]]:
    """Write the seed files under ``folder``; return them by format."""
    import torch
    from safetensors.torch import save_file

    import rnnjit

    folder.mkdir(parents=True, exist_ok=True)
    nets = {"lstm": _net(), "gru": _gru()}
    out: dict[str, list[Path]] = {f: [] for f in FORMATS}
    for name, net in nets.items():
        sd = net.state_dict()
        opt = torch.optim.Adam(net.parameters())
        ckpt = {
            "model": sd,
            "optimizer": opt.state_dict(),
            "args": argparse.Namespace(hidden=4, path=pathlib.Path("/data")),
            "epoch": np.int64(3),
            "mean": np.arange(3.0),
            "note": "run 7",
        }
        for fmt, kwargs in (("pth-zip", {}), ("pth-legacy", {"_use_new_zipfile_serialization": False})):
            for what, obj in (("sd", sd), ("ckpt", ckpt)):
                path = folder / f"{name}-{what}-{fmt}.pth"
                torch.save(obj, path, **kwargs)
                out[fmt].append(path)
        path = folder / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
        out["safetensors"].append(path)
        arrays = {k: v.numpy() for k, v in sd.items()}
        np.savez(folder / f"{name}.npz", **arrays)
        np.savez_compressed(folder / f"{name}-z.npz", **arrays)
        out["npz"] += [folder / f"{name}.npz", folder / f"{name}-z.npz"]
        head = "head.0,sigmoid" if name == "lstm" else "fc"
        rnnjit.convert(folder / f"{name}-sd-pth-zip.pth", folder / f"{name}-bundle.npz", head=head)
        out["bundle"].append(folder / f"{name}-bundle.npz")
    out["parquet"].append(folder / "gru-bundle.npz")  # parquet cases are built per case and scored with this bundle
    return out


def existing(folder: Path) -> dict[str, list[Path]]:
    """The seeds `build` wrote, found again (the worker process reads them)."""
    out: dict[str, list[Path]] = {f: [] for f in FORMATS}
    for path in sorted(folder.iterdir()):
        n = path.name
        if n.endswith("-pth-zip.pth"):
            out["pth-zip"].append(path)
        elif n.endswith("-pth-legacy.pth"):
            out["pth-legacy"].append(path)
        elif n.endswith(".safetensors"):
            out["safetensors"].append(path)
        elif n.endswith("-bundle.npz"):
            out["bundle"].append(path)
            if n.startswith("gru-"):
                out["parquet"].append(path)
        elif n.endswith(".npz"):
            out["npz"].append(path)
    return out
