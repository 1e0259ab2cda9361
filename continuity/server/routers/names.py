"""Renaming an entity (its id, references and story records stay; the old name becomes an alias)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from ..shapes import entity_json
from ..state import LibraryDep
from .entities import EntityNameDep

router = APIRouter(tags=["entities"])


class RenameBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    new_name: str = Field(..., min_length=1, max_length=200)
    keep_alias: bool = Field(True, description="Keep the old name as an alias, so scripts that use it still resolve.")


@router.post("/libraries/{lib:path}/entities/{name:path}/rename")
def rename_entity(library: LibraryDep, name: EntityNameDep, body: RenameBody) -> dict[str, Any]:
    """Rename an entity; a name or alias another entity holds is a 409 and changes nothing."""
    entity = library.rename(name, body.new_name, keep_alias=body.keep_alias)
    return entity_json(entity, library.references(entity, with_vectors=False))
