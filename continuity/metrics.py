"""Cross-shot consistency metrics.

* Image similarity across shots: for each entity, the mean cosine similarity of image embeddings
  over all pairs of appearances that lie in *different* shots (pairs within one shot say nothing
  about consistency across cuts). StoryMem reports this as CLIP-I, with CLIP; here any image
  embedder fits, so ``metrics.json`` calls it ``image_similarity`` and names the embedder
  (``image_embedder``), and adds ``clip_i`` only when a CLIP model made it: a colour histogram's
  cosine is not CLIP-I.
* Face similarity: reference-to-shot (is this the registered person?) and shot-to-shot (is it
  the same person throughout?), cosine of face embeddings; images with no face are counted, not
  scored.
* OCCM, the on-stage character count match of ViStoryBench ("ViStoryBench: Comprehensive
  Benchmark Suite for Story Visualization", 2025; code: GitHub ViStoryBench/vistorybench):
  ``100 * exp(-|D - E| / (eps + E))`` with D the detected and E the expected number of characters.
  Here characters are counted by their faces (see :data:`OCCM_DEFINITION` and
  :func:`character_count`): E counts the shot's characters whose registered references show a
  face (a cat or a robot cannot be counted by a face detector), D the faces of the shot's most
  crowded keyframe that are not the location's own (people in a location photo are scenery, not
  cast). Locations and props are never counted.

With a compositing generator (the animatic pastes the retrieved references into the frame) every
similarity measures the compositor, not a model: the report carries a ``caveat`` saying so.

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

OCCM_FORMULA = (
    "100*exp(-|D-E|/E) per scored shot (ViStoryBench's on-stage character count match), averaged over scored shots"
)
#: what OCCM counts when the counts come from ShotFaces (character_count)
OCCM_DEFINITION = (
    f"{OCCM_FORMULA}. E: the shot's characters whose registered references show a face; D: faces detected in the "
    "shot's most crowded keyframe, not counting faces that match a face of the shot's location references (people "
    "in a location photo are scenery). Locations and props are never counted; a shot with E = 0 and D = 0 "
    "(e.g. a cat or a robot, which a face detector cannot count) is not scored."
)
#: what OCCM says when the caller handed in (detected, expected) pairs counted its own way
OCCM_CALLER_COUNTS = f"{OCCM_FORMULA}. D and E as the caller counted them (not checked here)."

#: generator name -> why its shots cannot show a model's consistency
COMPOSITING_GENERATORS = {
    "animatic": (
        "generator 'animatic' composites the retrieved reference images into each frame: face and image "
        "similarity (e.g. face reference -> shot near 1) measure the compositor pasting the references, not "
        "a generative model's consistency; OCCM counts the faces of the pasted images"
    ),
}

#: image embedder types whose similarity may be called CLIP-I
CLIP_EMBEDDERS = ("open-clip", "open_clip", "clip")
THUMBNAIL_EMBEDDER = "thumbnail+palette (continuity.keyframes.tiny_embed, weightless)"


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _cross_shot_pairs(shots: Sequence[int], vectors: np.ndarray) -> list[float]:
    """Cosine of every pair of rows that come from different shots."""
    sims = vectors @ vectors.T
    return [float(sims[i, j]) for i, j in combinations(range(len(shots)), 2) if shots[i] != shots[j]]


def is_clip(embedder: str | None) -> bool:
    """Whether an image embedder name (its type, or ``type:model...``) is a CLIP model."""
    return embedder is not None and embedder.split(":", 1)[0].casefold() in CLIP_EMBEDDERS


@dataclass
class EntityConsistency:
    entity: str
    shots: list[int]
    images: int
    image_similarity: float | None = None  # mean cross-shot cosine of the image embedder
    image_similarity_pairs: int = 0
    face_ref: float | None = None  # mean face cosine, reference -> shot images
    face_shot: float | None = None  # mean face cosine between images of different shots
    face_shot_pairs: int = 0
    faces_found: int | None = None  # shot images in which a face was found

    # the old names, kept for callers: the value is whatever the image embedder measured
    @property
    def clip_i(self) -> float | None:
        return self.image_similarity

    @property
    def clip_i_pairs(self) -> int:
        return self.image_similarity_pairs


@dataclass
class ConsistencyReport:
    entities: dict[str, EntityConsistency] = field(default_factory=dict)
    image_similarity: float | None = None  # mean over entities (each entity counts once)
    image_embedder: str | None = None  # what made image_similarity (see is_clip)
    face_ref: float | None = None
    face_shot: float | None = None
    occm: float | None = None  # mean over scored shots (OCCM_DEFINITION)
    occm_per_shot: dict[int, float] = field(default_factory=dict)
    occm_unscored_shots: list[int] = field(default_factory=list)  # nobody countable by face, no face seen
    occm_definition: str | None = None  # what D and E counted (None: no OCCM)
    generator: str | None = None
    caveat: str | None = None  # why these figures do not measure a model (a compositing generator)
    notes: list[str] = field(default_factory=list)

    @property
    def clip_i(self) -> float | None:
        """The old name of :attr:`image_similarity` (whatever embedder made it; JSON says which)."""
        return self.image_similarity

    def to_json(self) -> dict[str, Any]:
        def r(v: Any) -> Any:
            return round(v, 6) if isinstance(v, float) else v

        clip = is_clip(self.image_embedder)
        entities = {}
        for name, ec in self.entities.items():
            row = {k: r(v) for k, v in asdict(ec).items()}
            if clip:
                row["clip_i"], row["clip_i_pairs"] = row["image_similarity"], row["image_similarity_pairs"]
            entities[name] = row
        out: dict[str, Any] = {
            "image_similarity": r(self.image_similarity),
            "image_embedder": self.image_embedder,
            "face_ref": r(self.face_ref),
            "face_shot": r(self.face_shot),
            "occm": r(self.occm),
            "occm_per_shot": {str(k): r(v) for k, v in self.occm_per_shot.items()},
            "occm_unscored_shots": list(self.occm_unscored_shots),
            "occm_definition": self.occm_definition,
            "generator": self.generator,
            "caveat": self.caveat,
            "entities": entities,
            "notes": list(self.notes),
        }
        if clip:  # only a CLIP model's similarity is CLIP-I
            out["clip_i"] = out["image_similarity"]
        return out


def _flatten(per_shot: Mapping[int, Sequence[np.ndarray]]) -> tuple[list[int], list[np.ndarray]]:
    shots: list[int] = []
    images: list[np.ndarray] = []
    for shot, imgs in sorted(per_shot.items()):
        for img in imgs:
            shots.append(int(shot))
            images.append(np.asarray(img))
    return shots, images


def cross_shot_similarity(
    per_shot: Mapping[int, Sequence[np.ndarray]], embed: ImageEmbedFn
) -> tuple[float | None, int]:
    """(mean cross-shot cosine, number of pairs) for one entity's appearances; (None, 0) when the
    entity appears in fewer than two shots. CLIP-I when ``embed`` is CLIP's."""
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


def _is_background(face: np.ndarray, background: Sequence[np.ndarray], same_face: float) -> bool:
    v = _unit(face)
    return any(float(v @ _unit(b)) >= same_face for b in background)


@dataclass(frozen=True)
class ShotFaces:
    """What OCCM needs of one shot (see :func:`character_count`)."""

    keyframe_faces: Sequence[Sequence[np.ndarray | None]]
    expected: int
    location_faces: Sequence[np.ndarray] = ()
    same_face: float = 0.5

    def count(self) -> tuple[int, int] | None:
        return character_count(
            self.keyframe_faces, self.expected, location_faces=self.location_faces, same_face=self.same_face
        )


def character_count(
    keyframe_faces: Sequence[Sequence[np.ndarray | None]],
    expected: int,
    *,
    location_faces: Sequence[np.ndarray] = (),
    same_face: float = 0.5,
) -> tuple[int, int] | None:
    """(detected, expected) for one shot's OCCM, or None when the shot cannot be scored.

    ``keyframe_faces``: per keyframe, the vectors of every face detected in it (None: a face whose
    vector could not be computed, still a face); ``expected``: the shot's characters whose
    registered references show a face; ``location_faces``: the faces found in the shot's location
    references. A detected face at least ``same_face`` similar (cosine, the face embedder's own
    same-person threshold) to a location face is that location's scenery and is not counted.
    Detected is the most crowded keyframe's count. No expected character and no face seen: None
    (nothing a face detector can count, e.g. a cat)."""
    if expected < 0:
        raise InvalidInputError(f"the expected character count must be non-negative, got {expected}")
    counts = [
        sum(1 for f in faces if f is None or not _usable(f) or not _is_background(f, location_faces, same_face))
        for faces in keyframe_faces
    ]
    detected = max(counts, default=0)
    if expected == 0 and detected == 0:
        return None
    return detected, expected


def consistency(
    appearances: Appearances,
    embed: ImageEmbedFn | None = None,
    face_embed: FaceEmbedFn | None = None,
    references: Mapping[str, Sequence[np.ndarray]] | None = None,
    character_counts: Mapping[int, tuple[int, int] | None] | None = None,
    face_entities: Sequence[str] | None = None,
    *,
    image_embedder: str | None = None,
    generator: str | None = None,
    shot_faces: Mapping[int, ShotFaces] | None = None,
) -> ConsistencyReport:
    """All metrics for a story.

    ``appearances``: entity -> shot -> images; ``references``: entity -> registered images (for
    face_ref); ``character_counts``: shot -> (detected, expected) for OCCM, or None for a shot
    that cannot be scored (see :func:`character_count`); ``face_entities``: the entities to run
    the face metric on (default: all that have references or appear in 2+ shots — pass the
    characters only, faces of a location mean nothing); ``image_embedder``: what ``embed`` is
    (an embedder's type or spec, e.g. ``color-histogram`` or ``open-clip:ViT-B-32:...``; the
    report calls the figure CLIP-I only for CLIP); ``generator``: the generator that made the
    shots (a compositing one gets a caveat); ``shot_faces``: shot -> the faces OCCM counts, the
    way :data:`OCCM_DEFINITION` says (instead of ``character_counts``, whose pairs are taken as given).
    """
    if character_counts is not None and shot_faces is not None:
        raise InvalidInputError("pass character_counts or shot_faces, not both: OCCM counts one way")
    report = ConsistencyReport(generator=generator, caveat=COMPOSITING_GENERATORS.get(generator or ""))
    references = references or {}
    if embed is None:
        from .keyframes import tiny_embed

        embed = tiny_embed
        image_embedder = THUMBNAIL_EMBEDDER
        report.notes.append("image similarity computed with the weightless thumbnail embedder (no CLIP configured)")
    report.image_embedder = image_embedder or "unnamed image embedder"
    similarity_values: list[float] = []
    face_ref_values: list[float] = []
    face_shot_values: list[float] = []
    for name, per_shot in appearances.items():
        shots = sorted({int(s) for s, imgs in per_shot.items() if len(imgs)})
        ec = EntityConsistency(entity=name, shots=shots, images=sum(len(v) for v in per_shot.values()))
        ec.image_similarity, ec.image_similarity_pairs = cross_shot_similarity(per_shot, embed)
        if ec.image_similarity is not None:
            similarity_values.append(ec.image_similarity)
        if face_embed is not None and (face_entities is None or name in face_entities):
            f = face_similarity(per_shot, face_embed, references.get(name, ()))
            ec.face_ref, ec.face_shot = f["face_ref"], f["face_shot"]
            ec.face_shot_pairs, ec.faces_found = f["face_shot_pairs"], f["faces_found"]
            if ec.face_ref is not None:
                face_ref_values.append(ec.face_ref)
            if ec.face_shot is not None:
                face_shot_values.append(ec.face_shot)
        report.entities[name] = ec
    report.image_similarity = _mean(similarity_values)
    report.face_ref = _mean(face_ref_values)
    report.face_shot = _mean(face_shot_values)
    if shot_faces is not None:
        character_counts = {shot: faces.count() for shot, faces in shot_faces.items()}
        report.occm_definition = OCCM_DEFINITION
    elif character_counts:
        report.occm_definition = OCCM_CALLER_COUNTS
    for shot, count in sorted((character_counts or {}).items()):
        if count is None:
            report.occm_unscored_shots.append(int(shot))
            continue
        detected, expected = count
        report.occm_per_shot[int(shot)] = occm(detected, expected)
    report.occm = _mean(list(report.occm_per_shot.values()))
    return report


#: the old name of cross_shot_similarity
cross_shot_clip_i = cross_shot_similarity

__all__ = [
    "COMPOSITING_GENERATORS",
    "OCCM_CALLER_COUNTS",
    "OCCM_DEFINITION",
    "OCCM_EPS",
    "Appearances",
    "ConsistencyReport",
    "EntityConsistency",
    "FaceEmbedFn",
    "ImageEmbedFn",
    "ShotFaces",
    "character_count",
    "consistency",
    "cross_shot_clip_i",
    "cross_shot_similarity",
    "is_clip",
    "face_embed_with",
    "face_similarity",
    "occm",
]
