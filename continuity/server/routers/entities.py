"""Entities of a library: list, register with images, read, update, add images, remove."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from memstore.errors import InvalidInputError
from memstore.images import EncodedImage
from memstore.library import Library
from memstore.schema import Entity
from memstore.sheets import MAX_VIEWS, SheetImages, sheet_images
from memstore.validation import VIEWS, clean_name

from ..limits import load_uploads
from ..shapes import entity_json, reference_json
from ..state import ExistingLibraryDep, LibraryDep, UploadLimitDep

router = APIRouter(tags=["entities"])


def get_entity_name(name: str) -> str:
    """The route's ``{name}`` (an entity's name, alias or id), refused when it is no valid name."""
    return clean_name(name)


# Declared after the library, so it runs after it: a bad library name is reported first, as before.
EntityNameDep = Annotated[str, Depends(get_entity_name)]
ViewForm = Annotated[str | None, Form(description=f"The view every image shows: {', '.join(VIEWS)}.")]
SheetViewsForm = Annotated[
    str | None,
    Form(description="The one image is a turnaround sheet: its views left to right, comma-separated (front,profile)."),
]
SheetRowsForm = Annotated[int, Form(ge=1, le=MAX_VIEWS, description="Rows of poses on the sheet.")]


def image_inputs(encoded: list[EncodedImage], view: str | None, sheet_views: str | None, rows: int) -> SheetImages:
    """The uploads as the library takes them: with their file names and views, a sheet split."""
    if sheet_views:
        if len(encoded) != 1:
            raise InvalidInputError(
                f"sheet_views splits one turnaround sheet; send exactly one image, got {len(encoded)}"
            )
        return sheet_images(encoded[0].data, sheet_views.split(","), rows=rows, name=encoded[0].name)
    return SheetImages([e.data for e in encoded], [e.name for e in encoded], [view or None] * len(encoded))


def parse_consent(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    text = value.strip().lower()
    if text in ("yes", "true", "1"):
        return True
    if text in ("no", "false", "0"):
        return False
    raise InvalidInputError(f"consent must be 'yes' or 'no', got {value!r}")


MAX_PATCH_LIST = 256


class RightsPatch(BaseModel):
    """The rights fields to change; a field left out keeps its value, ``null`` clears it."""

    model_config = ConfigDict(extra="forbid")
    owner: str | None = None
    license: str | None = None
    consent: bool | None = None
    expires: datetime | None = None


class EntityPatch(BaseModel):
    """The fields of an entity to change; those left out keep their values."""

    model_config = ConfigDict(extra="forbid")
    description: str | None = None
    aliases: list[str] | None = Field(None, max_length=MAX_PATCH_LIST)
    tags: list[str] | None = Field(None, max_length=MAX_PATCH_LIST)
    rights: RightsPatch | None = None
    consent: bool | None = Field(None, description="Shortcut for rights.consent.")

    def changes(self, current: Entity) -> dict[str, Any]:
        """The keyword arguments of ``Library.update``: given fields, rights merged into the current ones."""
        fields: dict[str, Any] = {
            name: getattr(self, name) for name in ("description", "aliases", "tags") if getattr(self, name) is not None
        }
        rights = self.rights.model_dump(exclude_unset=True) if self.rights is not None else {}
        if self.consent is not None:
            if "consent" in rights and rights["consent"] != self.consent:
                raise InvalidInputError("consent and rights.consent disagree; send one of them")
            rights["consent"] = self.consent
        if rights:
            fields["rights"] = {**current.rights.model_dump(), **rights}
        if not fields:
            raise InvalidInputError("nothing to update; send description, aliases, tags, rights or consent")
        return fields


def update_entity(library: Library, name: str, patch: EntityPatch) -> Entity:
    # under the write lock: the rights are merged with what is stored at this moment
    with library.store.write_lock():
        current = library.get(name)
        return library.update(current, **patch.changes(current))


@router.get("/libraries/{lib:path}/entities")
def list_entities(library: ExistingLibraryDep, kind: str | None = None, tag: str | None = None) -> dict[str, Any]:
    entities = library.list(kind=kind or None, tag=tag or None)
    counts: dict[str, int] = {}
    for ref in library.references(with_vectors=False):
        counts[ref.entity_id] = counts.get(ref.entity_id, 0) + 1
    return {
        "library": library.name,
        "entities": [{**entity_json(e), "reference_count": counts.get(e.id, 0)} for e in entities],
    }


@router.post("/libraries/{lib:path}/entities/{name:path}/images", status_code=201)
def add_images(
    library: LibraryDep,
    upload_limit: UploadLimitDep,
    name: EntityNameDep,
    images: Annotated[list[UploadFile], File(description="Reference images (JPEG, PNG, WebP, ...).")],
    era: Annotated[str, Form()] = "default",
    view: ViewForm = None,
    sheet_views: SheetViewsForm = None,
    sheet_rows: SheetRowsForm = 1,
) -> dict[str, Any]:
    """Add images to an entity, all or none; bytes it already has are not stored twice."""
    entity = library.get(name)
    encoded = load_uploads(images, upload_limit)
    if not encoded:
        raise InvalidInputError("no images in the request; send one or more 'images' files")
    inputs = image_inputs(encoded, view, sheet_views, sheet_rows)
    before = {r.id for r in library.references(entity, with_vectors=False)}
    refs = library.add_images(entity, inputs.images, era=era, names=inputs.names, views=inputs.views)
    return {
        "entity": entity_json(entity),
        "added": len({r.id for r in refs} - before),
        "references": [{**reference_json(r, library.name), "new": r.id not in before} for r in refs],
    }


@router.get("/libraries/{lib:path}/entities/{name:path}")
def get_entity(library: LibraryDep, name: EntityNameDep) -> dict[str, Any]:
    entity = library.get(name)
    return entity_json(entity, library.references(entity, with_vectors=True))


@router.patch("/libraries/{lib:path}/entities/{name:path}")
def patch_entity(library: LibraryDep, name: EntityNameDep, body: EntityPatch) -> dict[str, Any]:
    """Change an entity's description, aliases, tags, rights or consent (all or nothing; the name
    and kind do not change here)."""
    entity = update_entity(library, name, body)
    return entity_json(entity, library.references(entity, with_vectors=True))


@router.delete("/libraries/{lib:path}/entities/{name:path}")
def remove_entity(library: LibraryDep, name: EntityNameDep) -> dict[str, Any]:
    """Remove an entity with its references and cached tokens."""
    return {"removed": entity_json(library.remove(name))}


@router.post("/libraries/{lib:path}/entities", status_code=201)
def register_entity(
    library: LibraryDep,
    upload_limit: UploadLimitDep,
    name: Annotated[str, Form()],
    kind: Annotated[str, Form(description="character | location | prop | style")],
    aliases: Annotated[list[str], Form(description="Other names (repeat the field).")] = [],  # noqa: B006
    description: Annotated[str, Form()] = "",
    tags: Annotated[list[str], Form(description="Tags (repeat the field).")] = [],  # noqa: B006
    era: Annotated[str, Form(description="Version label of these images.")] = "default",
    consent: Annotated[str | None, Form(description="yes | no")] = None,
    rights_owner: Annotated[str | None, Form()] = None,
    license: Annotated[str | None, Form()] = None,
    rights_expires: Annotated[str | None, Form(description="ISO date after which use is refused.")] = None,
    images: Annotated[list[UploadFile] | None, File(description="Reference images.")] = None,
    view: ViewForm = None,
    sheet_views: SheetViewsForm = None,
    sheet_rows: SheetRowsForm = 1,
) -> dict[str, Any]:
    """Register an entity with its images; nothing is written if any field or image is bad."""
    rights = {
        "owner": rights_owner or None,
        "license": license or None,
        "consent": parse_consent(consent),
        "expires": rights_expires or None,
    }
    inputs = image_inputs(load_uploads(images, upload_limit), view, sheet_views, sheet_rows)
    entity = library.register(
        name,
        kind,
        images=inputs.images,
        names=inputs.names,
        views=inputs.views,
        aliases=[a for a in aliases if a.strip()],
        description=description,
        tags=[t for t in tags if t.strip()],
        era=era,
        rights=rights,
    )
    return entity_json(entity, library.references(entity, with_vectors=True))
