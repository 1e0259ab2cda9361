"""Query Blueprints: a shot prompt -> the reference images to condition on, with masks and reasons."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import reported
from .handles import LibraryHandle, fingerprint_of
from .layout import FITS, box_mask, fit_image
from .stories import check_story, names_list, session_at, session_config, shot_index
from .tensors import image_batch, mask_batch
from .widgets import (
    cut_input,
    library_input,
    override_consent_input,
    prompt_input,
    shot_input,
    size_input,
    story_input,
)

if TYPE_CHECKING:
    import torch

    from retrieval import RetrievalResult, ShotQuery, StoryContext
    from retrieval.query import Hit


@dataclass
class Blueprints:
    """One row per reference image, everything aligned with the batch index."""

    images: list[np.ndarray]
    face_masks: list[np.ndarray]
    region_masks: list[np.ndarray]
    names: list[str]


class QueryBlueprints:
    DESCRIPTION = (
        "Retrieve the blueprints a shot needs: the chosen reference images of every entity the prompt "
        "(and, with a story, the story so far) points at, best first. Outputs are aligned with the batch "
        "index: references[i] is an image of names line i, face_masks[i] its face box (all ones where "
        "there is no face), region_masks[i] where that entity goes in the generated frame (for IP-Adapter "
        "attention masks). An entity whose consent is 'no' is refused unless overridden."
    )
    CATEGORY = "continuity/retrieval"
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "MASK", "MASK", "STRING", "STRING")
    RETURN_NAMES = ("references", "face_masks", "region_masks", "names", "reasons")
    OUTPUT_TOOLTIPS = (
        "The reference images, size x size, grouped by entity, best entity first.",
        "Per reference: its face box in the fitted image (all ones without a face box).",
        "Per reference: its entity's region in a width x height frame (characters left to right).",
        "Per reference: its entity's name, one per line.",
        "Per entity: score and why it was retrieved, one per line.",
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict[str, tuple[object, ...]]]:
        return {
            "required": {
                "library": library_input(),
                "prompt": prompt_input(),
                "k": ("INT", {"default": 8, "min": 1, "max": 64, "tooltip": "At most this many entities."}),
                "references_per_entity": ("INT", {"default": 2, "min": 1, "max": 16}),
                "size": size_input(512, "Side of the square reference images."),
                "fit": (
                    list(FITS),
                    {"default": "pad", "tooltip": "pad: whole image letterboxed; crop: fill and centre-crop."},
                ),
            },
            "optional": {
                "kinds": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "Only these kinds, comma-separated (character, location, prop, style); empty: all.",
                    },
                ),
                "story": story_input(),
                "shot": shot_input(),
                "cut": cut_input(),
                "width": size_input(1024, "Width of the generated frame (for the region masks)."),
                "height": size_input(576, "Height of the generated frame (for the region masks)."),
                "override_consent": override_consent_input(),
            },
        }

    @classmethod
    def IS_CHANGED(cls, library: object = None, **_: object) -> str:
        return fingerprint_of(library)

    @reported
    def run(
        self,
        library: LibraryHandle,
        prompt: str,
        k: int = 8,
        references_per_entity: int = 2,
        size: int = 512,
        fit: str = "pad",
        kinds: str = "",
        story: str = "",
        shot: int = 0,
        cut: bool = True,
        width: int = 1024,
        height: int = 576,
        override_consent: str = "",
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str, str]:
        from continuity.consent import check_rights

        query, context = _query(library, prompt, k, references_per_entity, kinds, story, shot, cut)
        result = library.retriever.retrieve(query, context)
        check_rights(result.hits, overrides=names_list(override_consent))
        rows = blueprints(result, size, fit, width, height)
        if not rows.images:
            from memstore.errors import NotFoundError

            raise NotFoundError(
                f"no blueprint with an image matches {prompt.strip()[:80]!r} in library {library.name!r};"
                " name a registered entity in the prompt, or register one (Register Entity)"
            )
        return (
            image_batch(rows.images),
            mask_batch(rows.face_masks),
            mask_batch(rows.region_masks),
            "\n".join(rows.names),
            reasons_text(result),
        )


def _query(
    handle: LibraryHandle,
    prompt: str,
    k: int,
    references_per_entity: int,
    kinds: str,
    story: str,
    shot: int,
    cut: bool,
) -> tuple[ShotQuery, StoryContext | None]:
    """The shot's query, and with a story the context of the shots before it."""
    from memstore.validation import clean_kind
    from retrieval import ShotQuery

    wanted = tuple(clean_kind(kind) for kind in names_list(kinds)) or None
    if not prompt.strip():  # checked before the shot log is read (its first read creates it)
        from memstore.errors import InvalidInputError

        raise InvalidInputError("the shot prompt is empty; give the text of the shot")
    if not story.strip():
        return ShotQuery(prompt, k=k, references_per_entity=references_per_entity, kinds=wanted), None
    story = check_story(story)
    index = shot_index(handle, story, shot)
    session = session_at(handle, story, index, session_config())
    query = ShotQuery(
        prompt,
        story_id=story,
        shot_index=index,
        cut=cut,
        kinds=wanted,
        k=k,
        references_per_entity=references_per_entity,
    )
    return query, session.context


def blueprints(result: RetrievalResult, size: int, fit: str, width: int, height: int) -> Blueprints:
    """The references of every hit fitted into size x size, with their face and region masks."""
    regions = _regions(result, width, height)
    rows = Blueprints([], [], [], [])
    for hit in result.hits:
        for ref in hit.references:
            if ref.image is None:
                continue
            image, placed = fit_image(ref.pil(), size, size, fit)
            face = placed.box(ref.face_box) if ref.face_box and len(ref.face_box) == 4 else None
            rows.images.append(image)
            rows.face_masks.append(box_mask(face, size, size))
            rows.region_masks.append(regions.get(hit.entity.id, box_mask(None, width, height)))
            rows.names.append(hit.entity.name)
    return rows


def _regions(result: RetrievalResult, width: int, height: int) -> dict[str, np.ndarray]:
    """Characters' region hints (cast order, left to right, as the adapters place them) as masks;
    other kinds cover the whole frame."""
    from generators.base import ShotSpec, ordered_characters, regions_for

    characters = ordered_characters(result)
    boxes = regions_for(ShotSpec(result.query.prompt, width=width, height=height), characters)
    return {
        hit.entity.id: box_mask((x0 * width, y0 * height, x1 * width, y1 * height), width, height)
        for hit, (x0, y0, x1, y1) in zip(characters, boxes, strict=False)
    }


def reasons_text(result: RetrievalResult) -> str:
    lines = [_reason_line(hit) for hit in result.hits]
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines)


def _reason_line(hit: Hit) -> str:
    images = sum(1 for r in hit.references if r.image is not None)
    why = "; ".join(hit.reasons) or "-"
    return f"{hit.entity.name} ({hit.entity.kind}, {hit.score:.3f}, {images} image(s)): {why}"
