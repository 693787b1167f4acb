"""The metadata table of a prepared folder: schema, atomic Parquet/JSON/TSV I/O."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from selfswap.io.images import atomic_write

FACES_FILE = "faces.parquet"
MANIFEST_FILE = "manifest.json"
SETTINGS_FILE = "settings.json"
REJECTED_FILE = "rejected.tsv"
PARTS_DIR = "parts"
CROPS_DIR = "crops"

#: Array columns and their per-row shape. Coordinates of landmarks, camera and transform
#: are in crop pixels (the transform maps source-image pixels to crop pixels); `box` is the
#: detector box in source-image pixels.
ARRAY_COLUMNS: dict[str, tuple[tuple[int, ...], Any]] = {
    "box": ((4,), pa.float32()),
    "landmarks5": ((5, 2), pa.float32()),
    "landmarks68": ((68, 2), pa.float32()),
    "shape": ((40,), pa.float32()),
    "expression": ((10,), pa.float32()),
    "camera": ((3, 4), pa.float32()),
    "embedding": ((128,), pa.float32()),
    "transform": ((2, 3), pa.float64()),
}

SCALAR_COLUMNS: list[tuple[str, Any]] = [
    ("source", pa.string()),
    ("face_index", pa.int16()),
    ("main", pa.bool_()),
    ("identity", pa.string()),
    ("crop", pa.string()),
    ("image_width", pa.int32()),
    ("image_height", pa.int32()),
    ("score", pa.float32()),
    ("yaw", pa.float32()),
    ("pitch", pa.float32()),
    ("roll", pa.float32()),
]

SCHEMA = pa.schema(
    [pa.field(name, kind) for name, kind in SCALAR_COLUMNS]
    + [
        pa.field(name, pa.list_(kind, int(np.prod(shape))))
        for name, (shape, kind) in ARRAY_COLUMNS.items()
    ]
)

#: Added by consolidation: identities numbered 0..K-1 in sorted label order, -1 if unknown.
FINAL_SCHEMA = SCHEMA.append(pa.field("identity_id", pa.int32()))


def rows_to_table(rows: list[dict]) -> pa.Table:
    """Rows (dicts of scalars and numpy arrays) → an Arrow table with `SCHEMA`."""
    columns = []
    for name, kind in SCALAR_COLUMNS:
        columns.append(pa.array([row[name] for row in rows], type=kind))
    for name, (shape, kind) in ARRAY_COLUMNS.items():
        size = int(np.prod(shape))
        dtype = np.float64 if kind == pa.float64() else np.float32
        flat = np.asarray([np.asarray(row[name], dtype).reshape(size) for row in rows], dtype)
        values = pa.array(flat.reshape(-1), type=kind)
        columns.append(pa.FixedSizeListArray.from_arrays(values, size))
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def column_array(table: pa.Table, name: str) -> np.ndarray:
    """A fixed-size array column as a numpy array `(N, *shape)`."""
    shape, _ = ARRAY_COLUMNS[name]
    column = table.column(name).combine_chunks()
    values = column.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(len(table), *shape)


def write_parquet(path: Path, table: pa.Table, metadata: dict | None = None) -> None:
    """Write a table atomically; `metadata` (JSON-able) goes into the file's schema."""
    if metadata is not None:
        extra = {b"selfswap": json.dumps(metadata).encode("utf-8")}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def read_parquet(path: Path) -> tuple[pa.Table, dict]:
    """A table written by `write_parquet`, and its selfswap metadata ({} if none)."""
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(b"selfswap")
    return table.replace_schema_metadata(None), (json.loads(raw) if raw else {})


def write_json(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_rejected(path: Path, records: list[tuple[str, str, str]]) -> None:
    """`path<TAB>reason<TAB>detail` per rejected input (CSV-quoted where needed)."""

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            out = csv.writer(f, dialect="excel-tab", lineterminator="\n")
            out.writerow(["path", "reason", "detail"])
            out.writerows(records)

    atomic_write(path, write)


def read_rejected(path: Path) -> list[tuple[str, str, str]]:
    if not Path(path).is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, dialect="excel-tab"))
    return [(r[0], r[1], r[2]) for r in rows[1:]]


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temporary files an earlier killed run left behind (`.NAME.*.part`)."""
    removed = 0
    if not folder.is_dir():
        return 0
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            if name.startswith(".") and name.endswith(".part"):
                Path(dirpath, name).unlink(missing_ok=True)
                removed += 1
    return removed
