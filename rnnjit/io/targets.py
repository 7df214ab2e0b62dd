"""Where the scores go: output format from the name, and the checks before writing.

- The format comes from ``--format`` or the extension (``.parquet``, ``.csv``,
  ``.jsonl``), compression from a trailing ``.gz`` or ``.zst`` (CSV and JSON
  lines only: Parquet compresses inside the file); an extension that disagrees
  with ``--format`` is an error, not a mislabelled file.
- ``-`` is standard output (CSV or JSON lines; CSV when no format is given).
- A file output is never the input itself (same inode, like ``cp a a``), a
  symlink is followed to its target, and a FIFO or device is refused.
- A dataset output is a directory: ``--output-layout dataset``, a name ending
  in ``/``, or an existing directory.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import pyarrow.fs as pafs

from rnnjit.errors import InputError
from rnnjit.io.fs import Location, ends_in_slash, is_uri, resolve

FORMATS = ("parquet", "csv", "jsonl")
OUTPUT_LAYOUTS = ("file", "dataset")
STDOUT = "-"
_EXT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
                ".parquet": "parquet", ".parq": "parquet", ".pq": "parquet"}
_COMPRESSION = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}
FORMAT_EXT = {"parquet": ".parquet", "csv": ".csv", "jsonl": ".jsonl"}


class OutputExistsError(InputError):
    """The output path exists and ``overwrite`` was not given."""


def _split_ext(name: str) -> tuple[str | None, str | None]:
    """(format, compression) named by the file's extensions, None where there is none."""
    base, ext = os.path.splitext(name.lower())
    comp = _COMPRESSION.get(ext)
    if comp:
        base, ext = os.path.splitext(base)
    return _EXT_FORMATS.get(ext), comp


def infer_format(output, fmt: str | None) -> tuple[str, str | None]:
    """``(format, compression)`` for ``output`` and an optional explicit ``fmt``.

    Raises `InputError` when ``fmt`` is unknown, when the extension names
    another format, or for compressed or standard-output Parquet.
    """
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"output format {fmt!r} is not known; expected one of {', '.join(FORMATS)}")
    name = str(output)
    if name == STDOUT:
        if fmt == "parquet":
            raise InputError(
                "Parquet cannot be streamed to standard output (its footer is written last); "
                "give a file name, or use --format csv or --format jsonl with -o -"
            )
        return fmt or "csv", None
    ext_fmt, comp = _split_ext(name.rstrip("/").rsplit("/", 1)[-1])
    if fmt and ext_fmt and fmt != ext_fmt:
        raise InputError(
            f"output {name!r} has a .{ext_fmt} name but fmt={fmt!r} was given; "
            f"name it with a {FORMAT_EXT[fmt]} extension, or drop fmt"
        )
    fmt = fmt or ext_fmt or "parquet"
    if comp and fmt == "parquet":
        raise InputError(
            f"output {name!r} asks for {comp} compression of Parquet; Parquet compresses inside the file, "
            "so drop the extension's .gz/.zst, or write --format csv/jsonl"
        )
    return fmt, comp


def wants_dataset(output, layout: str | None, filesystem=None) -> bool:
    """True when the output is a directory of files (see the module docstring)."""
    if layout is not None and layout not in OUTPUT_LAYOUTS:
        raise InputError(f"output layout {layout!r} is not known; expected one of {', '.join(OUTPUT_LAYOUTS)}")
    text = str(output)
    if text == STDOUT:
        if layout == "dataset":
            raise InputError("a dataset output is a directory, not standard output; give a directory name ending in /")
        return False
    if layout:
        return layout == "dataset"
    if ends_in_slash(text):
        return True
    loc = resolve(output, filesystem)
    return loc.info().type == pafs.FileType.Directory


@dataclass(frozen=True)
class FileTarget:
    """A checked single-file output: ``loc`` (symlinks followed), or standard output."""

    loc: Location | None
    fmt: str
    compression: str | None

    @property
    def stdout(self) -> bool:
        return self.loc is None

    @property
    def name(self) -> str:
        return "<stdout>" if self.loc is None else self.loc.uri


def check_file_output(output, overwrite: bool, fmt: str | None = None, filesystem=None) -> FileTarget:
    """Check a single-file output before any row is read; see the module docstring."""
    fmt, comp = infer_format(output, fmt)
    if str(output) == STDOUT:
        return FileTarget(None, fmt, None)
    loc = resolve(output, filesystem)
    if loc.local:
        real = os.path.realpath(loc.path)  # write onto a symlink's target, keep the link
        if real != loc.path:
            loc = Location(loc.fs, real, loc.uri)
        try:
            st = os.stat(real)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise InputError(
                f"output {loc.uri!r} is a directory; give a file name, e.g. {os.path.join(loc.uri, 'scores.parquet')!r}, "
                "or pass output_layout='dataset' to write one output file per input file"
            )
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise InputError(
                f"output {loc.uri!r} is not a regular file (a FIFO, socket or device); rnnjit writes a "
                "temporary file and renames it, which would replace it; give a file name, or -o - for stdout"
            )
        if st is not None and not overwrite:
            raise OutputExistsError(
                f"output {loc.uri!r} already exists; pass overwrite=True to replace it, or choose another name"
            )
        if not os.path.isdir(os.path.dirname(real)):
            raise InputError(f"the directory of output {loc.uri!r} does not exist; create it first")
        return FileTarget(loc, fmt, comp)
    info = loc.info()
    if info.type == pafs.FileType.Directory:
        raise InputError(f"output {loc.uri!r} is a directory; give a file name, or pass output_layout='dataset'")
    if info.type == pafs.FileType.File and not overwrite:
        raise OutputExistsError(f"output {loc.uri!r} already exists; pass overwrite=True to replace it, or choose another name")
    return FileTarget(loc, fmt, comp)


def refuse_input_as_output(out: Location, input_files) -> None:
    """The output must not be one of the input files (``cp a a``), nor inside an input directory."""
    if out is None or not out.local:
        return
    for f in input_files:
        if not f.loc.local:
            continue
        try:
            same = os.path.samefile(out.path, f.loc.path)
        except OSError:
            same = False
        if same:
            raise InputError(
                f"output {out.uri!r} is the input file {f.uri!r}; writing it would destroy the input; "
                "choose another output name"
            )


def refuse_output_inside_input(out: Location, inputs, filesystem=None) -> None:
    """An output inside an input directory would be read as input by the next run."""
    if out is None:
        return
    for text in inputs:
        loc = resolve(text, filesystem)
        if loc.fs.type_name != out.fs.type_name or is_uri(str(text)) != is_uri(out.uri):
            continue
        if loc.info().type != pafs.FileType.Directory:
            continue
        root = os.path.realpath(loc.path) if loc.local else loc.path.rstrip("/")
        target = os.path.realpath(out.path) if out.local else out.path
        if target == root or target.startswith(root.rstrip("/") + "/"):
            raise InputError(
                f"output {out.uri!r} is inside the input directory {loc.uri!r}, so the next run would "
                "read it as input; write it somewhere else"
            )
