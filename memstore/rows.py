"""Arrow columns derived from pydantic models: a record's layout on disk is written once, as the
model's annotated fields (lancedb's ``LanceModel.to_arrow_schema`` idea, without its fixed vector
columns: ours are appended per configured embedder at run time).

A field's Arrow type follows its Python type (``str`` -> string, ``int`` -> int64, ``float`` ->
float64, ``bool``, ``bytes`` -> large_binary, ``datetime`` -> UTC microseconds, ``list[X]``,
``Literal[...]`` of strings -> string, a ``dict`` -> JSON text); ``Annotated[T, Col(...)]`` says
what the Python type cannot: a narrower type (int32, float32), a column name, NOT NULL.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

import pyarrow as pa
from pydantic import BaseModel

TS = pa.timestamp("us", tz="UTC")
_SCALARS: dict[Any, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    bytes: pa.large_binary(),
    dt.datetime: TS,
}


@dataclass(frozen=True)
class Col:
    """Column facts a Python type cannot carry."""

    type: pa.DataType | None = None
    name: str | None = None
    nullable: bool = True


NOT_NULL = Col(nullable=False)


def _strip_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def arrow_type(annotation: Any) -> pa.DataType:
    """The Arrow type of a (non-annotated) Python type, or TypeError when there is none."""
    annotation = _strip_optional(annotation)
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    origin = typing.get_origin(annotation)
    if origin is Literal and all(isinstance(a, str) for a in typing.get_args(annotation)):
        return pa.string()
    if origin is list:
        (item,) = typing.get_args(annotation)
        return pa.list_(arrow_type(item))
    if origin is dict or annotation is dict:
        return pa.string()  # stored as JSON text
    raise TypeError(f"no Arrow type for {annotation!r}; annotate the field with Col(type=...)")


def field_of(name: str, annotation: Any) -> pa.Field:
    """The Arrow field of one model field (``Annotated`` metadata applied)."""
    col = Col()
    for _ in range(2):  # Annotated[Optional[T], Col] and Optional[Annotated[T, Col]] alike
        annotation = _strip_optional(annotation)
        if typing.get_origin(annotation) is typing.Annotated:
            annotation, *extra = typing.get_args(annotation)
            col = next((m for m in extra if isinstance(m, Col)), col)
    kind = col.type if col.type is not None else arrow_type(annotation)
    return pa.field(col.name or name, kind, nullable=col.nullable)


def model_fields(model: type[BaseModel], *, exclude: tuple[str, ...] = ()) -> list[pa.Field]:
    """Arrow fields of a model's own fields, in declaration order (nested models are not columns:
    a model that flattens one lists its columns with :func:`model_fields` of the nested model)."""
    hints = typing.get_type_hints(model, include_extras=True)
    return [field_of(name, hints[name]) for name in model.model_fields if name not in exclude]


def schema_of(model: type[BaseModel], *, exclude: tuple[str, ...] = ()) -> pa.Schema:
    return pa.schema(model_fields(model, exclude=exclude))
