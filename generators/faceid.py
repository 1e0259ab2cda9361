"""IP-Adapter FaceID: identity from the face vectors already stored with each reference.

A FaceID adapter reads an ArcFace embedding (512-d, as insightface's buffalo_l makes it) instead of
a CLIP image embedding, so there is nothing to encode at all: ``prepare`` reads
``Reference.vectors[column]`` (written when the reference was registered) and passes it as
``ip_adapter_image_embeds``. Masks and per-entity scales work as in :mod:`generators.ip_adapter`.
Real FaceID checkpoints also carry LoRA weights for the UNet; diffusers applies them on load
(it needs peft).

The column is the store's own: the vector column whose metadata says an ``insightface`` embedder
made it at the width the adapter reads (512 for IP-Adapter-FaceID), found by :func:`arcface_column`.
No such column, several, or a named column of another embedder or width (dlib's 128-d vectors cannot
feed an ArcFace projection) is a one-line error saying what to configure, never a run in which
every character is silently skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from memstore.errors import EmbedderError, EmbedderMismatchError, InvalidInputError

from .base import ordered_characters
from .ip_adapter import IPAdapterGenerator

#: The embedder (registry name, as recorded in a vector column's metadata) that writes ArcFace vectors.
ARCFACE_EMBEDDER = "insightface"
ADD_ARCFACE = "add one: continuity reindex --embedder insightface (it configures the embedder and computes the vectors)"


def _describe(columns: Mapping[str, Mapping[str, str]]) -> str:
    return ", ".join(f"{c} ({m.get('embedder')}, {m.get('dim')}-d)" for c, m in sorted(columns.items())) or "none"


def is_arcface(meta: Mapping[str, str], dim: int) -> bool:
    return meta.get("embedder") == ARCFACE_EMBEDDER and str(meta.get("dim")) == str(dim)


def arcface_column(
    columns: Mapping[str, Mapping[str, str]],
    *,
    dim: int = 512,
    wanted: str | None = None,
    preferred: Sequence[str] = (),
) -> str:
    """The vector column FaceID reads: ``wanted`` when it holds ``dim``-d ArcFace vectors, else the
    one ArcFace column of that width (``preferred``, the library's own columns, break a tie).

    ``columns`` is ``Store.vector_columns()``: column -> {"embedder", "spec", "dim"}."""
    if wanted is not None:
        meta = columns.get(wanted)
        if meta is None:
            raise EmbedderError(
                f"face column {wanted!r} is not a vector column of this store (vector columns: {_describe(columns)}); "
                f"FaceID reads {dim}-d ArcFace vectors: name one of those, or {ADD_ARCFACE}"
            )
        if not is_arcface(meta, dim):
            raise EmbedderMismatchError(
                f"face column {wanted!r} holds {meta.get('dim')}-d {meta.get('embedder')} vectors ({meta.get('spec')}), "
                f"but FaceID reads {dim}-d ArcFace ({ARCFACE_EMBEDDER}) vectors; {ADD_ARCFACE}"
            )
        return wanted
    found = sorted(c for c, m in columns.items() if is_arcface(m, dim))
    if len(found) > 1:
        own = [c for c in found if c in preferred]
        found = own if len(own) == 1 else found
    if not found:
        raise EmbedderError(
            f"FaceID reads {dim}-d ArcFace face vectors, but this store has no such column "
            f"(vector columns: {_describe(columns)}); {ADD_ARCFACE}"
        )
    if len(found) > 1:
        raise EmbedderError(
            f"this store has {len(found)} ArcFace columns ({', '.join(found)}); pick one with --option face_column=NAME"
        )
    return found[0]


class StoredFaceVectors:
    """An "encoder" that reads a stored vector column: the spec names the column, nothing runs."""

    def __init__(self, column: str = "face_arcface", normalize: bool = False, dim: int | None = None):
        self.column = column
        self.normalize = bool(normalize)
        self.dim = dim
        self.spec = f"stored-vector:{column}"
        self.calls = 0

    def vector(self, ref: Any) -> np.ndarray:
        vec = (ref.vectors or {}).get(self.column)
        if vec is None:
            have = sorted((ref.vectors or {}).keys())
            raise InvalidInputError(
                f"reference {ref.id} has no {self.column!r} vector (has {have or 'none'}); "
                "register it with a face embedder or pick the column with face_column="
            )
        vec = np.asarray(vec, dtype=np.float32).reshape(-1)
        if self.dim is not None and vec.shape[0] != self.dim:
            raise EmbedderMismatchError(
                f"reference {ref.id}'s {self.column!r} vector is {vec.shape[0]}-d, but the FaceID adapter reads "
                f"{self.dim}-d ArcFace vectors; {ADD_ARCFACE}"
            )
        if self.normalize:
            vec = vec / max(float(np.linalg.norm(vec)), 1e-12)
        return vec

    def negative(self) -> np.ndarray | None:
        return None  # zeros, as in diffusers' FaceID examples


class FaceIDGenerator(IPAdapterGenerator):
    """Characters conditioned by their stored face embeddings through an IP-Adapter FaceID.

    ``library`` (what ``story run`` passes) lets the generator find the store's ArcFace column
    itself (:func:`arcface_column`); ``face_column`` names one (checked against the store when a
    library is given). Without a library, ``face_column`` is required. Only characters with a face
    vector in the column are conditioned (the others are noted in ``conditioning.options``, e.g. a
    character whose photos show no face); each uses its first such reference.
    """

    name = "faceid"

    def __init__(
        self,
        pipeline: Any = None,
        *,
        library: Any = None,
        face_column: str | None = None,
        normalize: bool = False,
        **kwargs: Any,
    ):
        kwargs.setdefault("weight_name", "ip-adapter-faceid_sd15.bin")
        kwargs.pop("encoder", None)
        kwargs.pop("token_cache", None)  # stored vectors are their own cache
        kwargs.pop("include_location", None)
        super().__init__(pipeline, encoder=StoredFaceVectors(face_column or "", normalize), **kwargs)
        dim = self.face_dim()
        if library is not None:
            own = [e.column_name for e in getattr(library, "embedders", ()) if e.type_name == ARCFACE_EMBEDDER]
            face_column = arcface_column(library.store.vector_columns(), dim=dim, wanted=face_column, preferred=own)
        elif face_column is None:
            raise EmbedderError(
                "faceid needs the store's ArcFace column: pass library= (story run does) to find it, or face_column=NAME"
            )
        self.face_column = face_column
        self.encoder = StoredFaceVectors(face_column, normalize, dim)

    def face_dim(self) -> int:
        """The face-vector width the loaded FaceID projection reads (512 for IP-Adapter-FaceID)."""
        return int(self._unconditional_embeds().shape[1])

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_folder: str,
        adapter: str,
        *,
        pipeline_class: str = "StableDiffusionPipeline",
        weight_name: str = "ip-adapter-faceid_sd15.bin",
        subfolder: str = "",
        allow_download: bool = False,
        **kwargs: Any,
    ) -> FaceIDGenerator:
        from ._diffusers import load_pipeline

        pipe = load_pipeline(pipeline_class, model_id_or_folder, allow_download=allow_download)
        return cls(
            pipe,
            adapter=adapter,
            weight_name=weight_name,
            subfolder=subfolder,
            model_id=str(model_id_or_folder),
            **kwargs,
        )

    def _entities(self, result: Any) -> list[Any]:
        return ordered_characters(result)[: self.max_entities]

    def _pick(self, hit: Any) -> Any:
        return next((r for r in hit.references if self.face_column in (r.vectors or {})), None)

    def _embed(self, refs: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        pos = np.stack([self.encoder.vector(r) for r in refs])
        return pos, np.zeros_like(pos)

    def prepare(self, shot: Any, result: Any) -> Any:
        conditioning = super().prepare(shot, result)
        used = {e.entity_id for e in conditioning.entities}
        skipped = [h.entity.name for h in self._entities(result) if h.entity.id not in used]
        conditioning.options["skipped"] = skipped
        # a string, so the shot's provenance (scalar options only) says who had no face vector
        conditioning.options["without_face_vector"] = ", ".join(skipped)
        conditioning.options["face_column"] = self.face_column
        return conditioning
