"""The manifest of a dataset output: what the directory holds and for which input.

``_rnnjit_manifest.json`` in the output directory (a leading ``_`` so no
Parquet reader takes it for data) records

- ``fingerprint``: the model, options and format of the run;
- ``inputs``: the input root(s) as given, normalized (a local path made
  absolute with links resolved; a URI without its query string, which may
  carry credentials);
- ``files``: per input file (its path relative to its root) a content
  fingerprint (size, modification time, a hash of the Parquet footer, which
  holds the row counts and column statistics), the output committed for it and
  its row count;
- ``remove``: outputs this run replaces (inputs gone, or an ``--overwrite``),
  deleted only once every output is committed.

It is rewritten whole under a temporary name and renamed: at the start of a
run (before anything else is written), after each output file is committed,
and after the removals. So it never lists an output that was not renamed into
place, always names every output file in the directory, and a reader never
sees it half-written. An output committed but not yet recorded (a crash
between the two renames) is simply redone by ``--resume``.
"""

from __future__ import annotations

import json

import pyarrow as pa

from rnnjit.errors import InputError
from rnnjit.io import killpoints
from rnnjit.io.fs import Location, finish_mode, open_temp
from rnnjit.io.signals import held

MANIFEST = "_rnnjit_manifest.json"
VERSION = 2
_MAX_BYTES = 256 << 20  # a manifest of a million files is ~200 MB; anything larger is not ours
_STAMP = ("size", "mtime_ns", "footer")


def safe_rel(rel) -> bool:
    """A relative path that stays inside its directory: no ``..``, no absolute path, no empty part."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\0" in rel or rel.startswith("/"):
        return False
    return all(p not in ("", ".", "..") for p in rel.split("/"))


class Manifest:
    """What a dataset output directory holds, keyed by the input file's relative path."""

    def __init__(self, directory: Location, fingerprint: dict, inputs: list[str]):
        self.loc = directory.join(MANIFEST)
        self.fingerprint = fingerprint
        self.inputs = list(inputs)
        self.files: dict[str, dict] = {}
        self.remove: list[str] = []

    @staticmethod
    def stamp(f, footer: str) -> dict:
        """The content fingerprint of input file ``f`` (an `rnnjit.io.dataset.InputFile`)."""
        return {"size": int(f.size), "mtime_ns": f.mtime_ns, "footer": footer}

    def read(self) -> dict | None:
        """The manifest on disk, checked field by field (None when there is none).

        Raises `InputError` for one that cannot be read or was edited into
        something this version did not write (a path leaving the directory, a
        field of the wrong type): one line, never a traceback.
        """
        try:
            with self.loc.fs.open_input_stream(self.loc.path) as fh:
                raw = fh.read(_MAX_BYTES + 1)
        except FileNotFoundError:
            return None
        except (pa.ArrowException, OSError) as exc:
            raise self._bad(f"cannot be read ({exc})") from exc
        if len(raw) > _MAX_BYTES:
            raise self._bad(f"is larger than {_MAX_BYTES >> 20} MiB")
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise self._bad(f"is not valid JSON ({str(exc).splitlines()[0]})") from exc
        if not isinstance(doc, dict):
            raise self._bad(f"holds a JSON {type(doc).__name__}, not an object")
        if doc.get("version") != VERSION:
            return doc  # the caller names the version it found
        self._check(doc)
        return doc

    def _check(self, doc: dict) -> None:
        if not isinstance(doc.get("fingerprint"), dict):
            raise self._bad("has no 'fingerprint' object")
        inputs = doc.get("inputs")
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise self._bad("has no 'inputs' list of strings")
        files, remove = doc.get("files"), doc.get("remove", [])
        if not isinstance(files, dict):
            raise self._bad("has no 'files' object")
        if not isinstance(remove, list) or not all(safe_rel(r) for r in remove):
            raise self._bad("has a 'remove' entry that is not a relative path inside the directory")
        for rel, rec in files.items():
            if not safe_rel(rel) or not isinstance(rec, dict):
                raise self._bad(f"has a malformed entry {rel!r}")
            if not safe_rel(rec.get("output")):
                raise self._bad(f"entry {rel!r} names output {rec.get('output')!r}, not a path inside the directory")
            if not isinstance(rec.get("size"), int) or not isinstance(rec.get("rows"), int) or \
                    not isinstance(rec.get("footer"), str) or not isinstance(rec.get("mtime_ns"), (int, type(None))):
                raise self._bad(f"entry {rel!r} lacks its size, mtime_ns, footer or rows")

    def _bad(self, what: str) -> InputError:
        return InputError(
            f"the manifest {self.loc.uri!r} {what}; rnnjit cannot tell what the directory holds; "
            "pass overwrite=True to score every file again, or choose another directory"
        )

    def done(self, f, footer: str) -> bool:
        """True when ``f`` has a committed output recorded for its current content."""
        rec = self.files.get(f.rel)
        return bool(rec) and {k: rec.get(k) for k in _STAMP} == self.stamp(f, footer)

    def record(self, f, footer: str, output_rel: str, rows: int) -> None:
        """Record ``f``'s committed output and rewrite the manifest atomically."""
        self.files[f.rel] = {**self.stamp(f, footer), "output": output_rel, "rows": int(rows)}
        self.save()

    def save(self) -> None:
        doc = {"version": VERSION, "fingerprint": self.fingerprint, "inputs": self.inputs, "files": self.files,
               "remove": sorted(self.remove)}
        with held():  # a few milliseconds: a SIGTERM waits for the rename
            tmp, fh = open_temp(self.loc)
            try:
                with fh:
                    fh.write(json.dumps(doc, indent=1, sort_keys=True).encode("utf-8"))
                finish_mode(tmp, self.loc)
                tmp.fs.move(tmp.path, self.loc.path)
            except BaseException:
                try:
                    tmp.fs.delete_file(tmp.path)
                except (FileNotFoundError, OSError, pa.ArrowException):
                    pass
                raise
        killpoints.reach("manifest")
