"""The resume manifest of a dataset output: which input files have a committed output.

``_rnnjit_manifest.json`` in the output directory (a leading ``_`` so no
Parquet reader takes it for data) records, per input file, its size and
modification time and the output file committed for it, plus a fingerprint
of the model and options. It is rewritten whole under a temporary name and
renamed after each output file is committed, so it never lists an output that
was not renamed into place, and a reader never sees it half-written. An
output committed but not yet recorded (a crash between the two renames) is
simply redone by ``--resume``.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.fs as pafs

from rnnjit.errors import InputError
from rnnjit.io import killpoints
from rnnjit.io.fs import Location, temp_name

MANIFEST = "_rnnjit_manifest.json"
VERSION = 1


class Manifest:
    """Committed outputs of a dataset run, keyed by the input file's relative path."""

    def __init__(self, directory: Location, fingerprint: dict):
        self.loc = directory.join(MANIFEST)
        self.fingerprint = fingerprint
        self.files: dict[str, dict] = {}

    @staticmethod
    def _stamp(f) -> dict:
        return {"size": int(f.size), "mtime_ns": f.mtime_ns}

    def load(self) -> "Manifest":
        """Read the manifest left by an earlier run (none: nothing is done yet).

        Raises `InputError` when it was written with another model or options:
        mixing the two runs' outputs would be a silent wrong score.
        """
        try:
            with self.loc.fs.open_input_stream(self.loc.path) as fh:
                doc = json.loads(fh.read().decode("utf-8"))
        except FileNotFoundError:
            return self
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise InputError(
                f"cannot read the resume manifest {self.loc.uri!r} ({exc}); remove it to redo every file"
            ) from exc
        if doc.get("version") != VERSION:
            raise InputError(f"resume manifest {self.loc.uri!r} has version {doc.get('version')!r}; expected {VERSION}")
        if doc.get("fingerprint") != self.fingerprint:
            old, new = doc.get("fingerprint") or {}, self.fingerprint
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise InputError(
                f"the output directory was written by a run with another {', '.join(diff)}; --resume would mix "
                "two runs' scores; rerun with the same model and options, or pass --overwrite to start over"
            )
        self.files = dict(doc.get("files") or {})
        return self

    def done(self, f) -> bool:
        """True when ``f`` has a committed output recorded for its current size and mtime."""
        rec = self.files.get(f.rel)
        if not rec or {k: rec.get(k) for k in ("size", "mtime_ns")} != self._stamp(f):
            return False
        out = self.loc.parent().join(rec["output"])
        return out.info().type == pafs.FileType.File

    def record(self, f, output_rel: str, rows: int) -> None:
        """Record ``f``'s committed output and rewrite the manifest atomically."""
        self.files[f.rel] = {**self._stamp(f), "output": output_rel, "rows": int(rows)}
        self.save()

    def save(self) -> None:
        doc = {"version": VERSION, "fingerprint": self.fingerprint, "files": self.files}
        tmp = self.loc.parent().join(temp_name(self.loc.name))
        with tmp.fs.open_output_stream(tmp.path) as fh:
            fh.write(json.dumps(doc, indent=1, sort_keys=True).encode("utf-8"))
        tmp.fs.move(tmp.path, self.loc.path)
        killpoints.reach("manifest")

    def clear(self) -> None:
        try:
            self.loc.fs.delete_file(self.loc.path)
        except (FileNotFoundError, OSError, pa.ArrowException):
            pass
