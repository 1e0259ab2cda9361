"""Query a library by image: which entities does this picture look like?

Every configured embedder with a column in the store answers: whole-image embedders (CLIP, the
colour histogram) embed the whole query; face embedders embed the largest face in it (no face:
that column answers nothing). Hits are aggregated per entity: its best-scoring reference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .errors import InvalidInputError
from .images import ImageInput, load_image

OVERFETCH = 8  # references fetched per wanted entity: one entity may own many near-duplicates


@dataclass(frozen=True)
class ImageMatch:
    entity_id: str
    name: str
    kind: str
    score: float  # cosine similarity of the best reference
    reference_id: str
    column: str
    query_face_box: tuple[float, ...] | None = None  # the face searched with (face columns)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["query_face_box"] = list(self.query_face_box) if self.query_face_box else None
        return data


def search_by_image(
    library: Any, image: ImageInput, k: int = 5, *, kind: str | None = None, columns: list[str] | None = None
) -> dict[str, list[ImageMatch]]:
    """Per vector column, the ``k`` entities whose references are most similar to ``image``
    (a path, bytes, PIL image or array), best first."""
    if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
        raise InvalidInputError(f"k must be a positive integer, got {k!r}")
    pil = load_image(image).to_pil().convert("RGB")
    present = library.store.vector_columns()
    out: dict[str, list[ImageMatch]] = {}
    for emb in library.embedders:
        column = emb.column_name
        if column not in present or (columns is not None and column not in columns):
            continue
        if emb.modality == "face" and kind not in (None, "character"):
            continue  # faces index characters only
        [found] = emb.embed([pil])
        if found.vector is None:
            out[column] = []  # e.g. no face in the query
            continue
        hits = library.search(found.vector, column, k=k * OVERFETCH, kind=kind)
        best: dict[str, tuple[float, Any]] = {}
        for score, ref in hits:
            if ref.entity_id not in best or score > best[ref.entity_id][0]:
                best[ref.entity_id] = (score, ref)
        entities = library.entities_by_id(best)
        ranked = sorted(best.items(), key=lambda item: -item[1][0])[:k]
        box = tuple(found.face_box) if found.face_box is not None else None
        out[column] = [
            ImageMatch(eid, entities[eid].name, entities[eid].kind, float(score), ref.id, column, box)
            for eid, (score, ref) in ranked
            if eid in entities
        ]
    return out
