"""Cross-shot consistency metrics.

* CLIP-I across shots: for each entity, the mean cosine similarity of image embeddings over all
  pairs of appearances that lie in *different* shots (pairs within one shot say nothing about
  consistency across cuts). StoryMem reports it with CLIP; any image embedder fits.
* Face similarity: reference-to-shot (is this the registered person?) and shot-to-shot (is it
  the same person throughout?), cosine of face embeddings; images with no face are counted, not
  scored.
* OCCM, the on-stage character count match of ViStoryBench ("ViStoryBench: Comprehensive
  Benchmark Suite for Story Visualization", 2025; code: GitHub ViStoryBench/vistorybench):
  ``100 * exp(-|D - E| / (eps + E))`` with D the detected and E the expected number of characters.

Everything takes callables, so the metrics do not depend on which CLIP or face model is installed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from memstore.errors import InvalidInputError

#: images (H x W x 3 uint8) -> (N, d) rows (normalised here anyway)
ImageEmbedFn = Callable[[list[np.ndarray]], np.ndarray]
#: images -> one face vector per image, or None where no face was found
FaceEmbedFn = Callable[[list[np.ndarray]], Sequence[np.ndarray | None]]
#: entity name -> shot index -> images of that entity in that shot (keyframes or crops)
Appearances = Mapping[str, Mapping[int, Sequence[np.ndarray]]]

OCCM_EPS = 1e-6


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _cross_shot_pairs(shots: Sequence[int], vectors: np.ndarray) -> list[float]:
    """Cosine of every pair of rows that come from different shots."""
    sims = vectors @ vectors.T
    return [float(sims[i, j]) for i, j in combinations(range(len(shots)), 2) if shots[i] != shots[j]]


@dataclass
class EntityConsistency:
    entity: str
    shots: list[int]
    images: int
    clip_i: float | None = None  # mean cross-shot cosine
    clip_i_pairs: int = 0
    face_ref: float | None = None  # mean face cosine, reference -> shot images
    face_shot: float | None = None  # mean face cosine between images of different shots
    face_shot_pairs: int = 0
    faces_found: int | None = None  # shot images in which a face was found


@dataclass
class ConsistencyReport:
    entities: dict[str, EntityConsistency] = field(default_factory=dict)
    clip_i: float | None = None  # mean over entities (each entity counts once)
    face_ref: float | None = None
    face_shot: float | None = None
    occm: float | None = None  # mean over shots
    occm_per_shot: dict[int, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def r(v: Any) -> Any:
            return round(v, 6) if isinstance(v, float) else v

        return {
            "clip_i": r(self.clip_i),
            "face_ref": r(self.face_ref),
            "face_shot": r(self.face_shot),
            "occm": r(self.occm),
            "occm_per_shot": {str(k): r(v) for k, v in self.occm_per_shot.items()},
            "entities": {k: {kk: r(vv) for kk, vv in asdict(v).items()} for k, v in self.entities.items()},
            "notes": list(self.notes),
        }


def _flatten(per_shot: Mapping[int, Sequence[np.ndarray]]) -> tuple[list[int], list[np.ndarray]]:
    shots: list[int] = []
    images: list[np.ndarray] = []
    for shot, imgs in sorted(per_shot.items()):
        for img in imgs:
            shots.append(int(shot))
            images.append(np.asarray(img))
    return shots, images


def cross_shot_clip_i(per_shot: Mapping[int, Sequence[np.ndarray]], embed: ImageEmbedFn) -> tuple[float | None, int]:
    """(mean cross-shot cosine, number of pairs) for one entity's appearances; (None, 0) when the
    entity appears in fewer than two shots."""
    shots, images = _flatten(per_shot)
    if len(set(shots)) < 2:
        return None, 0
    vectors = np.asarray(embed(images), dtype=np.float64)
    if vectors.shape[0] != len(images):
        raise InvalidInputError(f"the image embedder returned {vectors.shape[0]} vectors for {len(images)} images")
    pairs = _cross_shot_pairs(shots, _unit(np.nan_to_num(vectors)))
    return _mean(pairs), len(pairs)


def _usable(v: Any) -> bool:
    """A face vector, not None and not a row of NaN (memstore's 'no face' marker)."""
    return v is not None and bool(np.all(np.isfinite(np.asarray(v, dtype=np.float64))))


def face_similarity(
    per_shot: Mapping[int, Sequence[np.ndarray]],
    face_embed: FaceEmbedFn,
    references: Sequence[np.ndarray] = (),
) -> dict[str, Any]:
    """Face consistency of one character: ``face_ref`` (mean cosine of each shot face to each
    reference face), ``face_shot`` (mean cosine over face pairs from different shots) and
    ``faces_found`` (shot images with a face)."""
    shots, images = _flatten(per_shot)
    faces = list(face_embed(images)) if images else []
    if len(faces) != len(images):
        raise InvalidInputError(f"the face embedder returned {len(faces)} results for {len(images)} images")
    found = [(s, _unit(v)) for s, v in zip(shots, faces, strict=False) if _usable(v)]
    ref_faces = list(face_embed(list(references))) if len(references) else []
    refs = [_unit(v) for v in ref_faces if _usable(v)]
    face_ref = None
    if refs and found:
        ref_m = np.stack(refs)
        face_ref = float(np.mean([float(np.mean(ref_m @ v)) for _, v in found]))
    pairs: list[float] = []
    if len(found) >= 2:
        pairs = _cross_shot_pairs([s for s, _ in found], np.stack([v for _, v in found]))
    return {
        "face_ref": face_ref,
        "face_shot": _mean(pairs),
        "face_shot_pairs": len(pairs),
        "faces_found": len(found),
        "references_with_face": len(refs),
    }


def face_embed_with(embedder: Any) -> FaceEmbedFn:
    """Adapt a memstore face embedder (``embed_images(list[PIL.Image])`` with NaN rows where no
    face was found) to a :data:`FaceEmbedFn`."""
    from PIL import Image

    def embed(images: list[np.ndarray]) -> list[np.ndarray | None]:
        rows = np.asarray(embedder.embed_images([Image.fromarray(np.asarray(i)) for i in images]), dtype=np.float32)
        return [row if np.all(np.isfinite(row)) else None for row in rows]

    return embed


def occm(detected: int, expected: int, eps: float = OCCM_EPS) -> float:
    """ViStoryBench's on-stage character count match, in [0, 100]: 100 when the counts agree,
    falling exponentially with the error relative to the expected count."""
    if detected < 0 or expected < 0:
        raise InvalidInputError(f"character counts must be non-negative, got detected={detected} expected={expected}")
    return 100.0 * math.exp(-abs(detected - expected) / (eps + expected))


def consistency(
    appearances: Appearances,
    embed: ImageEmbedFn | None = None,
    face_embed: FaceEmbedFn | None = None,
    references: Mapping[str, Sequence[np.ndarray]] | None = None,
    character_counts: Mapping[int, tuple[int, int]] | None = None,
    face_entities: Sequence[str] | None = None,
) -> ConsistencyReport:
    """All metrics for a story.

    ``appearances``: entity -> shot -> images; ``references``: entity -> registered images (for
    face_ref); ``character_counts``: shot -> (detected, expected) for OCCM; ``face_entities``: the
    entities to run the face metric on (default: all that have references or appear in 2+ shots —
    pass the characters only, faces of a location mean nothing).
    """
    report = ConsistencyReport()
    references = references or {}
    if embed is None:
        from .keyframes import tiny_embed

        embed = tiny_embed
        report.notes.append("CLIP-I computed with the weightless thumbnail embedder (no CLIP configured)")
    clip_values: list[float] = []
    face_ref_values: list[float] = []
    face_shot_values: list[float] = []
    for name, per_shot in appearances.items():
        shots = sorted({int(s) for s, imgs in per_shot.items() if len(imgs)})
        ec = EntityConsistency(entity=name, shots=shots, images=sum(len(v) for v in per_shot.values()))
        ec.clip_i, ec.clip_i_pairs = cross_shot_clip_i(per_shot, embed)
        if ec.clip_i is not None:
            clip_values.append(ec.clip_i)
        if face_embed is not None and (face_entities is None or name in face_entities):
            f = face_similarity(per_shot, face_embed, references.get(name, ()))
            ec.face_ref, ec.face_shot = f["face_ref"], f["face_shot"]
            ec.face_shot_pairs, ec.faces_found = f["face_shot_pairs"], f["faces_found"]
            if ec.face_ref is not None:
                face_ref_values.append(ec.face_ref)
            if ec.face_shot is not None:
                face_shot_values.append(ec.face_shot)
        report.entities[name] = ec
    report.clip_i = _mean(clip_values)
    report.face_ref = _mean(face_ref_values)
    report.face_shot = _mean(face_shot_values)
    for shot, (detected, expected) in sorted((character_counts or {}).items()):
        report.occm_per_shot[int(shot)] = occm(detected, expected)
    report.occm = _mean(list(report.occm_per_shot.values()))
    return report


__all__ = [
    "OCCM_EPS",
    "Appearances",
    "ConsistencyReport",
    "EntityConsistency",
    "FaceEmbedFn",
    "ImageEmbedFn",
    "consistency",
    "cross_shot_clip_i",
    "face_embed_with",
    "face_similarity",
    "occm",
]
