"""The JSON shapes the server returns: each record's own ``to_json()`` (see :mod:`memstore.schema`)
plus, on every reference, the ``image_url`` where a remote pipeline fetches its image."""

from __future__ import annotations

from typing import Any

from memstore.schema import Entity, Reference


def image_url(library: str, ref_id: str) -> str:
    return f"/libraries/{library}/references/{ref_id}/image"


def reference_json(ref: Reference, library: str) -> dict[str, Any]:
    return {**ref.to_json(), "image_url": image_url(library, ref.id)}


def entity_json(entity: Entity, refs: list[Reference] | None = None) -> dict[str, Any]:
    data = entity.to_json()
    if refs is not None:
        data["references"] = [reference_json(r, entity.library) for r in refs]
    return data


def add_image_urls(references: list[dict[str, Any]], library: str) -> None:
    """Give each already-shaped reference (e.g. a retrieval hit's) its ``image_url``."""
    for ref in references:
        ref["image_url"] = image_url(library, ref["id"])
