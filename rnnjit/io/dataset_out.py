"""A dataset output: one output file per input file, under the same relative path.

``in/label=0/part-3.parquet`` is scored to ``out/label=0/part-3.parquet``
(``.csv``/``.jsonl`` for those formats), so outputs line up with inputs and
hive partition folders are kept. Each output file is committed by rename and
then recorded in the resume manifest (`rnnjit.io.manifest`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import pyarrow.fs as pafs

from rnnjit.errors import InputError
from rnnjit.io.dataset import PARQUET_EXTENSIONS
from rnnjit.io.fs import TMP_MARK, Location, remove_stale_temps, resolve
from rnnjit.io.manifest import MANIFEST, Manifest
from rnnjit.io.targets import FORMAT_EXT, OutputExistsError


def output_rel(rel: str, fmt: str) -> str:
    """The output's path for an input file's relative path: same folders, the format's extension."""
    low = rel.lower()
    for ext in PARQUET_EXTENSIONS:
        if low.endswith(ext):
            return rel[: -len(ext)] + FORMAT_EXT[fmt]
    return rel + FORMAT_EXT[fmt]


def fingerprint(model, plan, fmt: str, extra: dict) -> dict:
    """What must not change between a run and its ``--resume``: model weights, options, format.

    The engine and thread count are left out: they do not change the scores
    beyond float rounding.
    """
    h = hashlib.sha256()
    for k in sorted(getattr(model, "weights", {}) or {}):
        h.update(k.encode())
        h.update(model.weights[k].tobytes())
    h.update(repr(model).encode())
    opts = {k: v for k, v in asdict(plan.options).items() if k not in ("engine", "threads")}
    return {
        "model": h.hexdigest()[:32],
        "options": json.loads(json.dumps(opts, default=str)),
        "columns": list(plan.columns),
        "format": fmt,
        **extra,
    }


def open_output_dir(output, filesystem, *, overwrite: bool, resume: bool, fp: dict) -> tuple[Location, Manifest]:
    """Create or check the output directory; returns it and the manifest (loaded with ``resume``).

    A directory that already holds files needs ``resume`` (continue) or
    ``overwrite`` (start over: the manifest is dropped and every file rewritten).
    Temporary files of dead runs are removed.
    """
    loc = resolve(str(output).rstrip("/") or "/", filesystem)
    info = loc.info()
    if info.type == pafs.FileType.File:
        raise InputError(
            f"output {loc.uri!r} is a file but a dataset output is a directory; give a directory name "
            "(ending in /), or drop --output-layout dataset"
        )
    if info.type == pafs.FileType.NotFound:
        loc.fs.create_dir(loc.path, recursive=True)
    remove_stale_temps(loc, recursive=True)
    manifest = Manifest(loc, fp)
    entries = [i for i in loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True))
               if i.type == pafs.FileType.File and TMP_MARK not in i.base_name]
    if resume:
        manifest.load()
    elif entries and not overwrite:
        has_manifest = any(i.base_name == MANIFEST for i in entries)
        hint = "pass --resume to finish it, " if has_manifest else ""
        raise OutputExistsError(
            f"output directory {loc.uri!r} already holds {len(entries)} file(s); {hint}pass --overwrite to "
            "replace the files this run writes, or choose another directory"
        )
    elif overwrite:
        manifest.clear()
    return loc, manifest

