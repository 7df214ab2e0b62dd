"""Output sinks: Parquet, CSV or JSON lines, written under a temporary name and renamed when complete."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from rnnjit.errors import InputError

FORMATS = ("parquet", "csv", "jsonl")
_EXT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


class OutputExistsError(InputError):
    """The output path exists and ``overwrite`` was not given."""


def infer_format(output, fmt: str | None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise InputError(f"output format {fmt!r} is not known; expected one of {', '.join(FORMATS)}")
        return fmt
    return _EXT_FORMATS.get(Path(str(output)).suffix.lower(), "parquet")


def _float32_to_float64(arr: pa.Array) -> pa.Array:
    """float32 -> float64 holding the shortest decimal repr (so text shows 0.1, not 0.10000000149)."""
    vals = arr.to_numpy(zero_copy_only=False)
    vals = np.asarray(vals, dtype=np.float32).astype(str).astype(np.float64)
    return pa.array(vals, pa.float64(), mask=np.asarray(arr.is_null()) if arr.null_count else None)


def _json_lists(arr: pa.Array) -> pa.Array:
    """A list column as JSON text per row (null stays null)."""
    out = []
    for v in arr.to_pylist():
        out.append(None if v is None else json.dumps(_round32(v), allow_nan=False))
    return pa.array(out, pa.string())


def _round32(v):
    if isinstance(v, list):
        return [_round32(e) for e in v]
    if isinstance(v, float):
        return float(np.format_float_positional(np.float32(v), unique=True, trim="-")) if np.isfinite(v) else None
    return v


def csv_table(batch: pa.RecordBatch) -> pa.Table:
    """Flatten for CSV: a vector score becomes score_0..score_{O-1}; lists become JSON text."""
    arrays, names = [], []
    for name, col in zip(batch.schema.names, batch.columns):
        t = col.type
        if name == "score" and pa.types.is_fixed_size_list(t):
            O = t.list_size
            valid = ~np.asarray(col.is_null()) if col.null_count else None
            vals = np.asarray(col.values.slice(col.offset * O, len(col) * O).to_numpy(zero_copy_only=False)).reshape(-1, O)
            for j in range(O):
                a = pa.array(vals[:, j], pa.float32(), mask=None if valid is None else ~valid)
                arrays.append(_float32_to_float64(a))
                names.append(f"score_{j}")
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_struct(t):
            arrays.append(_json_lists(col))
            names.append(name)
        elif pa.types.is_float32(t):
            arrays.append(_float32_to_float64(col))
            names.append(name)
        else:
            arrays.append(col)
            names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


class Sink:
    """Writes batches to ``tmp``; `commit` renames to the final path, `abort` removes tmp."""

    def __init__(self, path: Path, schema: pa.Schema, fmt: str):
        self.path = path
        self.fmt = fmt
        self.tmp = path.parent / f".{path.name}.rnnjit-tmp-{os.getpid()}"
        self.schema = schema
        self._writer = None
        self._fh = None
        if fmt == "parquet":
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(str(self.tmp), schema)
        elif fmt == "csv":
            self._csv_header = True
            self._fh = open(self.tmp, "wb")
        else:
            self._fh = open(self.tmp, "w", encoding="utf-8")

    def write(self, batch: pa.RecordBatch) -> None:
        if self.fmt == "parquet":
            if batch.schema != self.schema:
                batch = batch.cast(self.schema)
            self._writer.write_batch(batch)
        elif self.fmt == "csv":
            import pyarrow.csv as pcsv

            pcsv.write_csv(csv_table(batch), self._fh, pcsv.WriteOptions(include_header=self._csv_header))
            self._csv_header = False
        else:
            tbl = jsonl_rows(batch)
            lines = [json.dumps(r, allow_nan=False) for r in tbl]
            if lines:
                self._fh.write("\n".join(lines) + "\n")

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._fh is not None:
            if self.fmt == "csv" and self._csv_header:
                self._fh.write((",".join(f'"{n}"' for n in _csv_header_names(self.schema)) + "\n").encode())
            self._fh.close()
            self._fh = None

    def commit(self) -> None:
        self._close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self._close()
        except Exception:  # noqa: BLE001 - the original error matters, not this one
            pass
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


def _csv_header_names(schema: pa.Schema) -> list[str]:
    names = []
    for f in schema:
        if f.name == "score" and pa.types.is_fixed_size_list(f.type):
            names += [f"score_{j}" for j in range(f.type.list_size)]
        else:
            names.append(f.name)
    return names


def jsonl_rows(batch: pa.RecordBatch) -> list[dict]:
    """Rows as dicts for JSON lines; float32 values printed with their shortest repr."""
    cols = {}
    for name, col in zip(batch.schema.names, batch.columns):
        t = col.type
        if pa.types.is_float32(t):
            cols[name] = [None if v is None or not np.isfinite(v) else v for v in _float32_to_float64(col).to_pylist()]
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            cols[name] = [None if v is None else _round32(v) for v in col.to_pylist()]
        elif pa.types.is_floating(t):
            cols[name] = [None if v is None or not np.isfinite(v) else v for v in col.to_pylist()]
        else:
            cols[name] = [_jsonable(v) for v in col.to_pylist()]
    n = batch.num_rows
    return [{k: v[i] for k, v in cols.items()} for i in range(n)]


def _jsonable(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, (list, tuple)):
        return [_jsonable(e) for e in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(e) for k, e in v.items()}
    return str(v)


def check_output(output, overwrite: bool) -> Path:
    path = Path(output)
    if path.exists() and path.is_dir():
        raise InputError(f"output {str(path)!r} is a directory; give a file name, e.g. {str(path / 'scores.parquet')!r}")
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"output {str(path)!r} already exists; pass --overwrite to replace it, or choose another name"
        )
    if not path.parent.exists():
        raise InputError(f"the directory of output {str(path)!r} does not exist; create it first")
    return path
