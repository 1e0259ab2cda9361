"""Nodes that open a library and put blueprints into it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import reported
from .handles import LIBRARY, LibraryHandle, open_handle
from .stories import names_list
from .tensors import frames_from_image
from .widgets import kind_input, library_input

if TYPE_CHECKING:
    import torch

    from memstore.library import Library
    from memstore.schema import Entity

CONSENT = ("not recorded", "yes", "no")


class OpenLibrary:
    DESCRIPTION = (
        "Open (or create) a continuity store and one of its libraries. The handle is opened once per "
        "ComfyUI process and reused by every run; the node re-runs when the library's tables change."
    )
    CATEGORY = "continuity/library"
    FUNCTION = "run"
    RETURN_TYPES = (LIBRARY, "STRING")
    RETURN_NAMES = ("library", "summary")
    OUTPUT_TOOLTIPS = ("The library handle for the other continuity nodes.", "What the library holds.")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict[str, tuple[object, ...]]]:
        return {
            "required": {
                "db": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "Store folder or URI (s3://, gs://, az://); empty: $CONTINUITY_DB, else "
                        "./continuity-db in ComfyUI's working folder.",
                    },
                ),
                "library": ("STRING", {"default": "default", "tooltip": "Library name inside the store."}),
            },
            "optional": {
                "create": ("BOOLEAN", {"default": True, "tooltip": "Create the store when the folder does not exist."}),
            },
        }

    @classmethod
    def IS_CHANGED(cls, db: str = "", library: str = "default", create: bool = True, **_: object) -> str | float:
        try:
            return open_handle(db, library, create=create).fingerprint()
        except Exception:  # noqa: BLE001 - the run itself reports the error; NaN never equals: run it
            return float("nan")

    @reported
    def run(self, db: str, library: str, create: bool = True) -> tuple[LibraryHandle, str]:
        handle = open_handle(db, library, create=create)
        counts = handle.library.count()
        summary = f"library {handle.name!r} at {handle.uri}: " + ", ".join(f"{v} {k}" for k, v in counts.items())
        return handle, summary


def _rights(consent: str, owner: str) -> dict[str, object] | None:
    from memstore.errors import InvalidInputError

    if consent not in CONSENT:
        raise InvalidInputError(f"consent {consent!r} is unknown; expected one of {', '.join(CONSENT)}")
    rights: dict[str, object] = {}
    if consent != "not recorded":
        rights["consent"] = consent == "yes"
    if owner.strip():
        rights["owner"] = owner.strip()
    return rights or None


class RegisterEntity:
    DESCRIPTION = (
        "Register a character, location, prop or style with its reference images. Registering a name "
        "that exists (same kind) adds the new images and updates the fields that changed, so re-running "
        "the graph is harmless. Images already stored are not stored twice."
    )
    CATEGORY = "continuity/library"
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = (LIBRARY, "STRING", "INT")
    RETURN_NAMES = ("library", "name", "references")
    OUTPUT_TOOLTIPS = (
        "The same library, for nodes that must run after this write.",
        "The entity's name.",
        "How many reference images the entity has now.",
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict[str, tuple[object, ...]]]:
        return {
            "required": {
                "library": library_input(),
                "images": ("IMAGE", {"tooltip": "Reference images (a batch; every image is one reference)."}),
                "name": ("STRING", {"default": "", "tooltip": "The name prompts use for it."}),
                "kind": kind_input(),
            },
            "optional": {
                "aliases": ("STRING", {"default": "", "tooltip": "Other names, comma-separated ('the knight')."}),
                "description": ("STRING", {"default": "", "multiline": True}),
                "era": ("STRING", {"default": "default", "tooltip": "Version label of these images ('armored')."}),
                "consent": (list(CONSENT), {"default": CONSENT[0], "tooltip": "Did the depicted person consent?"}),
                "rights_owner": ("STRING", {"default": ""}),
            },
        }

    @reported
    def run(
        self,
        library: LibraryHandle,
        images: torch.Tensor,
        name: str,
        kind: str,
        aliases: str = "",
        description: str = "",
        era: str = "default",
        consent: str = CONSENT[0],
        rights_owner: str = "",
    ) -> tuple[LibraryHandle, str, int]:
        frames = list(frames_from_image(images))
        lib = library.library
        fields = {
            "aliases": list(names_list(aliases)),
            "description": description,
            "rights": _rights(consent, rights_owner),
        }
        # prepare validates every field (and, for a new entity, decodes and embeds): nothing is
        # written until all of it passed
        existing = lib.find(name) if name.strip() else None
        if existing is None:
            prepared = lib.prepare(name, kind, images=frames, era=era, **fields)
            entity = lib.commit([prepared])[0]
        else:
            entity = _register_again(lib, existing, kind, frames, era, fields)
        return library, entity.name, len(lib.references(entity, with_vectors=False))


def _register_again(
    lib: Library, existing: Entity, kind: str, frames: list[np.ndarray], era: str, fields: dict[str, Any]
) -> Entity:
    """Register a name that exists: same kind required; add the images, update the given fields that changed."""
    from memstore.errors import DuplicateEntityError

    if existing.kind != kind:
        raise DuplicateEntityError(
            f"{existing.name!r} is already registered as a {existing.kind}; pick another name, or kind {existing.kind}"
        )
    from memstore.images import load_images

    # every check before the first write: the fields (prepare writes nothing), the images (encoded
    # as add_images will encode them), then the update (which checks names against the others)
    checked = lib.prepare(existing.name, kind, images=(), era=era, **fields).entity
    load_images(frames)
    wanted = {
        "description": checked.description or existing.description,
        "aliases": checked.aliases or existing.aliases,
        "rights": existing.rights.model_copy(update=fields["rights"] or {}),
    }
    changes = {key: value for key, value in wanted.items() if value != getattr(existing, key)}
    entity = lib.update(existing, **changes) if changes else existing
    lib.add_images(entity, frames, era=era)
    return entity


class AddReferences:
    DESCRIPTION = "Add reference images to a registered entity (optionally as another era). Images it has are skipped."
    CATEGORY = "continuity/library"
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = (LIBRARY, "INT")
    RETURN_NAMES = ("library", "added")
    OUTPUT_TOOLTIPS = ("The same library, for nodes that must run after this write.", "New references stored.")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict[str, tuple[object, ...]]]:
        return {
            "required": {
                "library": library_input(),
                "images": ("IMAGE",),
                "name": ("STRING", {"default": "", "tooltip": "A registered name or alias."}),
            },
            "optional": {"era": ("STRING", {"default": "default"})},
        }

    @reported
    def run(
        self, library: LibraryHandle, images: torch.Tensor, name: str, era: str = "default"
    ) -> tuple[LibraryHandle, int]:
        frames = list(frames_from_image(images))
        lib = library.library
        entity = lib.get(name)
        before = {r.id for r in lib.references(entity, with_vectors=False)}
        refs = lib.add_images(entity, frames, era=era)
        return library, len({r.id for r in refs} - before)
