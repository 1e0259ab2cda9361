"""Crafted archives for the hostile-import tests and the reliability benchmark: a real export
with its tables or manifest changed, and zip bombs (honest or lying headers)."""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from memstore.archive import read_archive

Change = Callable[[pa.Table], pa.Table]


def _ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def craft(
    src: Path,
    out: Path,
    *,
    entities: Change | None = None,
    references: Change | None = None,
    tokens: Change | None = None,
    manifest: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """A copy of archive ``src`` with its tables or manifest changed by the given functions."""
    meta, tables = read_archive(src)
    for name, change in (("entities", entities), ("references", references), ("tokens", tokens)):
        if change is not None:
            tables[name] = change(tables[name])
    meta["counts"] = {name: t.num_rows for name, t in tables.items()}
    if manifest is not None:
        manifest(meta)
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("manifest.json", json.dumps(meta, default=str))
        for name, table in tables.items():
            zf.writestr(f"{name}.arrow", _ipc(table))
    return out


def set_values(column: str, values: list[Any]) -> Change:
    """A change that replaces one column's values."""

    def change(table: pa.Table) -> pa.Table:
        idx = table.schema.get_field_index(column)
        return table.set_column(idx, table.schema.field(idx), pa.array(values, table.schema.field(idx).type))

    return change


def bomb(path: Path, inflated: int, declared: int | None = None, level: int | None = None, noise: int = 0) -> Path:
    """A zip whose entities member (the first one read) inflates to ``inflated`` bytes, zeros but for ``noise``
    random bytes per MiB (which lowers the ratio), optionally lying about its size in the headers."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        manifest = {"format": "continuity-library", "version": 1, "library": "x", "config": None}
        manifest |= {"vector_columns": {}, "counts": {"entities": 0, "references": 0, "tokens": 0}}
        zf.writestr("manifest.json", json.dumps(manifest))
        for name in ("references", "tokens"):
            zf.writestr(f"{name}.arrow", b"")
        with zf.open("entities.arrow", "w", force_zip64=True) as member:
            chunk = os.urandom(noise) + bytes((1 << 20) - noise)
            for _ in range(inflated >> 20):
                member.write(chunk)
    if declared is not None:  # rewrite the sizes in both headers to look harmless
        data = bytearray(path.read_bytes())
        name = b"entities.arrow"
        local = data.find(b"PK\x03\x04")
        while local >= 0 and data[local + 30 : local + 30 + len(name)] != name:
            local = data.find(b"PK\x03\x04", local + 4)
        central = data.find(b"PK\x01\x02")
        while central >= 0 and data[central + 46 : central + 46 + len(name)] != name:
            central = data.find(b"PK\x01\x02", central + 4)
        struct.pack_into("<I", data, local + 22, declared)
        struct.pack_into("<I", data, central + 24, declared)
        path.write_bytes(bytes(data))
    return path
