"""The tables' Arrow layout is derived from the pydantic models; this pins the store format (2: format 1
plus ``original_name`` and ``view`` on references) so a model edit that would change what is on disk
is seen (and comes with a format bump and an upgrade in memstore/upgrade.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import numpy as np
import pyarrow as pa
import pytest
from pydantic import BaseModel

from memstore.rows import NOT_NULL, Col, model_fields
from memstore.schema import CONFIG_SCHEMA, ENTITY_SCHEMA, REFERENCE_BASE_FIELDS, SHOT_SCHEMA, TOKEN_SCHEMA

S, TS, REQ = pa.string(), pa.timestamp("us", tz="UTC"), False
FORMAT_2 = {
    "entities": [
        ("id", S, REQ),
        ("library", S, REQ),
        ("kind", S, REQ),
        ("name", S, REQ),
        ("name_key", S, REQ),
        ("aliases", pa.list_(S), True),
        ("alias_keys", pa.list_(S), True),
        ("description", S, True),
        ("search_text", S, True),
        ("tags", pa.list_(S), True),
        ("attributes", S, True),
        ("rights_owner", S, True),
        ("rights_license", S, True),
        ("consent", pa.bool_(), True),
        ("rights_expires", TS, True),
        ("created", TS, True),
        ("updated", TS, True),
    ],
    "references": [
        ("id", S, REQ),
        ("key", pa.int64(), REQ),
        ("entity_id", S, REQ),
        ("library", S, REQ),
        ("kind", S, REQ),
        ("era", S, REQ),
        ("source", S, REQ),
        ("image", pa.large_binary(), True),
        ("image_format", S, True),
        ("width", pa.int32(), True),
        ("height", pa.int32(), True),
        ("sha256", S, True),
        ("story", S, True),
        ("shot", pa.int32(), True),
        ("frame", pa.int32(), True),
        ("face_box", pa.list_(pa.float32()), True),
        ("quality", pa.float32(), True),
        ("created", TS, True),
        ("original_name", S, True),
        ("view", S, True),
    ],
    "tokens": [
        ("reference_id", S, REQ),
        ("library", S, REQ),
        ("entity_id", S, REQ),
        ("spec", S, REQ),
        ("ref_sha256", S, REQ),
        ("dtype", S, REQ),
        ("shape", pa.list_(pa.int64()), True),
        ("data", pa.large_binary(), True),
        ("created", TS, True),
    ],
    "config": [("key", S, REQ), ("value", S, REQ)],
    "shots": [
        ("story_id", S, REQ),
        ("shot_index", pa.int32(), REQ),
        ("library", S, REQ),
        ("input_hash", S, REQ),
        ("prompt", S, True),
        ("generator", S, True),
        ("seed", pa.int64(), True),
        ("retrieved", pa.list_(S), True),
        ("memory", pa.list_(S), True),
        ("output", S, True),
        ("provenance", S, True),
        ("created", TS, True),
    ],
}


@pytest.mark.parametrize(
    "table, fields",
    [
        ("entities", list(ENTITY_SCHEMA)),
        ("references", REFERENCE_BASE_FIELDS),
        ("tokens", list(TOKEN_SCHEMA)),
        ("config", list(CONFIG_SCHEMA)),
        ("shots", list(SHOT_SCHEMA)),
    ],
)
def test_derived_layout_is_store_format_2(table, fields):
    got = {f.name: (f.type, f.nullable) for f in fields}
    want = {name: (kind, nullable) for name, kind, nullable in FORMAT_2[table]}
    assert got == want


def test_a_model_field_is_a_column_with_its_annotations():
    class Row(BaseModel):
        id: Annotated[str, NOT_NULL]
        count: Annotated[int, Col(type=pa.int16())] = 0
        seen: datetime | None = None
        labels: list[str] = []
        renamed: Annotated[float | None, Col(name="score")] = None

    fields = {f.name: f for f in model_fields(Row)}
    assert list(fields) == ["id", "count", "seen", "labels", "score"]
    assert not fields["id"].nullable and fields["count"].type == pa.int16()
    assert fields["seen"].type == TS and fields["labels"].type == pa.list_(pa.string())
    assert fields["score"].type == pa.float64()


def test_a_field_without_an_arrow_type_is_refused():
    class Bad(BaseModel):
        value: complex = 0j

    with pytest.raises(TypeError, match="no Arrow type"):
        model_fields(Bad)


def test_reference_rows_give_each_vector_as_a_writable_float32_row():
    from memstore.schema import reference_rows

    flat = pa.array(np.arange(12, dtype=np.float32))
    vectors = pa.FixedSizeListArray.from_arrays(flat, 3, mask=pa.array([False, True, False, False]))
    table = pa.table({"id": ["a", "b", "c", "d"], "clip": vectors}).slice(1)  # an offset into the values
    rows = reference_rows(table, ["clip", "not_there"])
    assert [r["id"] for r in rows] == ["b", "c", "d"]
    assert rows[0]["clip"] is None  # the null row has no vector, not a row of zeros
    assert rows[1]["clip"].tolist() == [6.0, 7.0, 8.0] and rows[2]["clip"].tolist() == [9.0, 10.0, 11.0]
    rows[1]["clip"] *= 2  # callers normalise in place: the arrays are theirs, not Arrow's read-only buffers
    assert rows[1]["clip"].dtype == np.float32 and rows[1]["clip"][0] == 12.0
