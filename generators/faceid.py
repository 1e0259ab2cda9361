"""IP-Adapter FaceID: identity from the face vectors already stored with each reference.

A FaceID adapter reads an ArcFace embedding (512-d for insightface's buffalo_l) instead of a CLIP
image embedding, so there is nothing to encode at all: ``prepare`` reads
``Reference.vectors[column]`` (written when the reference was registered) and passes it as
``ip_adapter_image_embeds``. Masks and per-entity scales work as in :mod:`generators.ip_adapter`.
Real FaceID checkpoints also carry LoRA weights for the UNet; diffusers applies them on load
(it needs peft).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from memstore.errors import InvalidInputError

from .base import ordered_characters
from .ip_adapter import IPAdapterGenerator


class StoredFaceVectors:
    """An "encoder" that reads a stored vector column: the spec names the column, nothing runs."""

    def __init__(self, column: str = "face_arcface", normalize: bool = False):
        self.column = column
        self.normalize = bool(normalize)
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
        if self.normalize:
            vec = vec / max(float(np.linalg.norm(vec)), 1e-12)
        return vec

    def negative(self) -> np.ndarray | None:
        return None  # zeros, as in diffusers' FaceID examples


class FaceIDGenerator(IPAdapterGenerator):
    """Characters conditioned by their stored face embeddings through an IP-Adapter FaceID.

    Only characters with a face vector in ``face_column`` are conditioned (the others are noted in
    ``conditioning.options["skipped"]``); each uses its first such reference.
    """

    name = "faceid"

    def __init__(
        self, pipeline: Any = None, *, face_column: str = "face_arcface", normalize: bool = False, **kwargs: Any
    ):
        kwargs.setdefault("weight_name", "ip-adapter-faceid_sd15.bin")
        kwargs.pop("encoder", None)
        kwargs.pop("token_cache", None)  # stored vectors are their own cache
        kwargs.pop("include_location", None)
        self.face_column = face_column
        super().__init__(pipeline, encoder=StoredFaceVectors(face_column, normalize), **kwargs)

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
        conditioning.options["skipped"] = [h.entity.name for h in self._entities(result) if h.entity.id not in used]
        conditioning.options["face_column"] = self.face_column
        return conditioning
