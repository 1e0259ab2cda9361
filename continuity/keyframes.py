"""Keyframe extraction from a generated shot, by StoryMem's rule (arXiv 2512.19539, Sec. 3.3).

Walk the frames in order: the first (good enough) frame is a keyframe; a later frame becomes one
when its similarity to the last keyframe drops below ``threshold`` (the content has changed).
When more than ``max_per_shot`` frames pass, StoryMem's extract_keyframes.py lowers the
threshold by 0.01 and walks again, so the keyframes spread over the shot (``adaptive``; turn it
off to keep the first ones). A keyframe more than ``memory_dedup`` similar to a frame already in
memory is then dropped, so the memory bank does not fill up with the same view. StoryMem measures
similarity with CLIP and quality with HPSv3; here the embedder is any callable, with a weightless
default so the loop runs without weights, and quality is sharpness (variance of the Laplacian).
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from memstore.embedders import Embedder, Embedding
from memstore.errors import InvalidInputError
from memstore.library import Keyframe as LibraryKeyframe
from memstore.library import Library
from memstore.schema import Entity, Reference
from memstore.validation import Source
from retrieval.query import RetrievalResult

#: frames (H x W x 3 uint8) -> (N, d) float32 rows, L2-normalised
EmbedFn = Callable[[list[np.ndarray]], np.ndarray]
#: the face that proved a character in a keyframe: (unit vector, box x0 y0 x1 y1)
FaceMatch = tuple[np.ndarray, list[float]]


class KeyframeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.9, ge=-1.0, le=1.0)  # new keyframe when similarity to the last one is below
    max_per_shot: int = Field(3, ge=1)
    memory_dedup: float | None = Field(0.9, ge=-1.0, le=1.0)  # None: keep duplicates of memory
    min_quality: float | None = Field(None, ge=0.0, le=1.0)  # sharpness in [0, 1]; None: no filter
    sample_every: int = Field(1, ge=1)  # look at every n-th frame only (long shots, slow embedders)
    # True (StoryMem): when more than max_per_shot frames pass, lower the threshold by
    # adaptive_step and walk again; False: keep the first max_per_shot that pass.
    adaptive: bool = True
    adaptive_step: float = Field(0.01, gt=0.0, le=0.5)


@dataclass
class Keyframe:
    frame_index: int
    image: np.ndarray  # H x W x 3 uint8
    vector: np.ndarray  # the embedding the decision was made with
    quality: float
    reason: str


@dataclass
class ExtractionLog:
    """What happened to every looked-at frame that was not kept (for the report and for tests)."""

    dropped: list[tuple[int, str]] = field(default_factory=list)
    threshold: float | None = None  # the similarity threshold finally used (after adaptation)


# --- embedders -----------------------------------------------------------------------------------


def _as_rgb_uint8(frame: Any) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InvalidInputError(f"a frame must be H x W x 3 (RGB), got shape {arr.shape}")
    if arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.dtype != np.uint8:
        raise InvalidInputError(f"a frame must be uint8, got {arr.dtype}")
    return arr


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.nan_to_num(np.asarray(x, dtype=np.float32))
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def tiny_embed(frames: Sequence[np.ndarray], size: int = 8, bins: int = 4) -> np.ndarray:
    """Weightless frame features: an 8x8 grey thumbnail (mean removed, so that layout and not
    overall brightness decides) joined with a square-rooted RGB histogram (palette), each half
    the weight, L2-normalised. 8x8 is the perceptual-hash size: coarse enough that a slow pan or
    sensor noise keeps similarity above 0.9, fine enough that a cut falls far below it. Sees
    cuts and big changes; knows nothing of identity (configure CLIP for that)."""
    rows = []
    for frame in frames:
        arr = _as_rgb_uint8(frame)
        img = Image.fromarray(arr)
        grey = np.asarray(img.convert("L").resize((size, size), Image.BILINEAR), dtype=np.float32).ravel()
        grey -= grey.mean()
        g_norm = np.linalg.norm(grey)
        # a flat frame has no layout: its grey part is zero and the palette alone decides
        grey = grey / g_norm if g_norm > 1e-3 * size else np.zeros_like(grey)
        small = np.asarray(img.resize((64, 64), Image.BILINEAR), dtype=np.int64) * bins // 256
        idx = (small[..., 0] * bins + small[..., 1]) * bins + small[..., 2]
        hist = np.sqrt(np.bincount(idx.ravel(), minlength=bins**3).astype(np.float32) / idx.size)
        hist /= max(np.linalg.norm(hist), 1e-12)
        rows.append(np.concatenate([grey, hist]) * np.float32(np.sqrt(0.5)))
    if not rows:
        return np.zeros((0, size * size + bins**3), dtype=np.float32)
    return _normalize(np.stack(rows))


def embed_with(embedder: Any) -> EmbedFn:
    """Adapt a memstore embedder (anything with ``embed_images(list[PIL.Image]) -> (N, d)``)
    to an :data:`EmbedFn`. Rows the embedder could not fill (NaN) become zero vectors, which are
    similar to nothing."""

    def embed(frames: list[np.ndarray]) -> np.ndarray:
        images = [Image.fromarray(_as_rgb_uint8(f)) for f in frames]
        return _normalize(np.asarray(embedder.embed_images(images), dtype=np.float32))

    return embed


# --- quality -------------------------------------------------------------------------------------


def sharpness(frame: np.ndarray, size: int = 256, scale: float = 100.0) -> float:
    """Variance of the Laplacian of the grey frame at a fixed width, mapped to [0, 1) by
    v / (v + scale): blurry or flat frames score near 0, sharp ones near 1. A fixed working size
    keeps scores comparable across resolutions."""
    img = Image.fromarray(_as_rgb_uint8(frame)).convert("L")
    w, h = img.size
    if w > size:
        img = img.resize((size, max(1, round(h * size / w))), Image.BILINEAR)
    g = np.asarray(img, dtype=np.float32)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    v = float(lap.var())
    return v / (v + scale)


# --- extraction ----------------------------------------------------------------------------------


def extract_keyframes(
    frames: Sequence[np.ndarray] | np.ndarray,
    embed: EmbedFn | None = None,
    config: KeyframeConfig | None = None,
    memory: np.ndarray | None = None,
    log: ExtractionLog | None = None,
) -> list[Keyframe]:
    """Pick at most ``config.max_per_shot`` keyframes from ``frames`` (T x H x W x 3 uint8).

    ``memory`` holds the vectors (M x d, same embedder) of frames already in the memory bank;
    ``log``, when given, collects why each other looked-at frame was not kept.
    """
    cfg = config or KeyframeConfig()
    embed = embed or tiny_embed
    n = len(frames)
    indices = list(range(0, n, cfg.sample_every))
    if not indices:
        return []
    sampled = [_as_rgb_uint8(frames[i]) for i in indices]
    vectors = _normalize(embed(sampled))
    if vectors.shape[0] != len(sampled):
        raise InvalidInputError(f"the embedder returned {vectors.shape[0]} vectors for {len(sampled)} frames")
    mem = None
    if memory is not None and len(memory):
        mem = _normalize(np.asarray(memory, dtype=np.float32).reshape(len(memory), -1))
        if mem.shape[1] != vectors.shape[1]:
            raise InvalidInputError(
                f"memory vectors have {mem.shape[1]} dimensions, the frame embedder makes {vectors.shape[1]}; "
                "embed memory with the same embedder"
            )
    log = log if log is not None else ExtractionLog()

    quality_cache: dict[int, float] = {}

    def quality_of(pos: int) -> float:
        if pos not in quality_cache:
            quality_cache[pos] = sharpness(sampled[pos])
        return quality_cache[pos]

    def walk(threshold: float) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
        """StoryMem's walk at one threshold: (picked positions with reasons, low-quality drops)."""
        picks: list[tuple[int, str]] = []
        low: list[tuple[int, str]] = []
        anchor: np.ndarray | None = None  # the last picked frame
        anchor_pos = -1
        for pos, vec in enumerate(vectors):
            if anchor is not None:
                sim = float(anchor @ vec)
                if sim >= threshold:
                    continue  # the same view as the anchor: the common case, not worth a log line
                reason = f"new view: similarity {sim:.2f} < {threshold:.2f} to frame {indices[anchor_pos]}"
            else:
                reason = "first frame" if pos == 0 else "first frame of acceptable quality"
            if cfg.min_quality is not None and quality_of(pos) < cfg.min_quality:
                # a changed but poor frame neither becomes a keyframe nor the new anchor
                low.append((indices[pos], f"quality {quality_of(pos):.2f} < {cfg.min_quality:.2f}"))
                continue
            picks.append((pos, reason))
            anchor, anchor_pos = vec, pos
            if not cfg.adaptive and len(picks) >= cfg.max_per_shot:
                break
        return picks, low

    threshold = cfg.threshold
    picks, low = walk(threshold)
    # StoryMem lowers the threshold until at most max_per_shot frames pass, so the keyframes spread
    # over the whole shot instead of bunching at its start; each walk is only dot products.
    while cfg.adaptive and len(picks) > cfg.max_per_shot and threshold > -1.0:
        threshold -= cfg.adaptive_step
        picks, low = walk(threshold)
    picks = picks[: cfg.max_per_shot]
    log.threshold = threshold
    log.dropped.extend(low)

    kept: list[Keyframe] = []
    for pos, reason in picks:
        vec, frame_index = vectors[pos], indices[pos]
        if cfg.memory_dedup is not None:
            # compared with memory (StoryMem) and with this shot's earlier keyframes, so that a
            # return to an earlier view (A -> B -> A) is not stored twice
            pool = [k.vector for k in kept] + (list(mem) if mem is not None else [])
            if pool:
                sims = np.stack(pool) @ vec
                best = int(np.argmax(sims))
                if sims[best] > cfg.memory_dedup:
                    where = (
                        f"keyframe {kept[best].frame_index}" if best < len(kept) else f"memory frame {best - len(kept)}"
                    )
                    log.dropped.append(
                        (frame_index, f"duplicate: similarity {sims[best]:.2f} > {cfg.memory_dedup:.2f} to {where}")
                    )
                    continue
        if threshold != cfg.threshold:
            reason += f" (threshold lowered from {cfg.threshold:.2f} to keep at most {cfg.max_per_shot})"
        kept.append(
            Keyframe(frame_index=frame_index, image=sampled[pos], vector=vec, quality=quality_of(pos), reason=reason)
        )
    return kept


__all__ = [
    "EmbedFn",
    "ExtractionLog",
    "Keyframe",
    "KeyframeConfig",
    "embed_with",
    "extract_keyframes",
    "sharpness",
    "tiny_embed",
]


# --- write-back ----------------------------------------------------------------------------------
# The story loop's side of keyframes: which embedders measure them, which entities a keyframe
# shows, and storing the new ones as harvested references.


def image_embedder(library: Library) -> Embedder | None:
    """The library's first image embedder (similarity of keyframes), if any."""
    return next((e for e in library.embedders if e.modality == "image"), None)


def face_embedder(library: Library) -> Embedder | None:
    """The library's first face embedder (who a keyframe shows), if any."""
    return next((e for e in library.embedders if e.modality == "face"), None)


def frame_embed(library: Library) -> EmbedFn:
    """Keyframe similarity: the library's first image embedder, else the weightless default."""
    emb = image_embedder(library)
    return embed_with(emb) if emb is not None else tiny_embed


class KeyframeBank:
    """A story's harvested keyframes (metadata and vectors, no images), read from the store once and
    kept in step as shots commit or are forgotten, so that no shot re-reads the story's keyframes:
    memory selection and the duplicate check cost the same at shot 10 and at shot 10,000."""

    IMAGES = 256  # encoded images kept (the latest shots' keyframes are the likeliest memory)

    def __init__(self, library: Library, story_id: str):
        self.library = library
        self.by_shot: dict[int, list[Reference]] = {}
        self._by_entity: dict[str, list[Reference]] = {}  # in shot order
        self._images: OrderedDict[str, bytes] = OrderedDict()
        self.add(library.keyframes(story_id))

    def with_images(self, refs: Sequence[Reference]) -> list[Reference]:
        """These keyframes with their images: from the bank's cache, the rest in one store read."""
        missing = [r.id for r in refs if r.id not in self._images]
        if missing:
            for ref_id, data in self.library.images(missing).items():
                self._remember(ref_id, data)
        return [r.model_copy(update={"image": self._images[r.id]}) for r in refs if r.id in self._images]

    def _remember(self, ref_id: str, data: bytes) -> None:
        self._images[ref_id] = data
        self._images.move_to_end(ref_id)
        while len(self._images) > self.IMAGES:
            self._images.popitem(last=False)

    def add(self, refs: Sequence[Reference]) -> None:
        shots, entities = set(), set()
        stripped = []
        for ref in refs:  # images go to the bounded cache: a long story must not hold them all
            if ref.image is not None:
                self._remember(ref.id, ref.image)
                ref = ref.model_copy(update={"image": None})
            stripped.append(ref)
        for ref in stripped:
            self.by_shot.setdefault(_shot(ref), []).append(ref)
            self._by_entity.setdefault(ref.entity_id, []).append(ref)
            shots.add(_shot(ref))
            entities.add(ref.entity_id)
        for shot in shots:  # the store's order (Library.references), so a rerun chooses alike
            self.by_shot[shot].sort(key=lambda r: (r.created, r.id))
        for entity in entities:
            self._by_entity[entity].sort(key=lambda r: (_shot(r), r.created, r.id))

    def drop(self, shot: int) -> list[Reference]:
        gone = self.by_shot.pop(shot, [])
        for entity in {r.entity_id for r in gone}:
            self._by_entity[entity] = [r for r in self._by_entity[entity] if _shot(r) != shot]
        return gone

    def at(self, shot: int) -> list[Reference]:
        return list(self.by_shot.get(shot, []))

    def before(self, shot: int) -> list[Reference]:
        """Keyframes of earlier shots, in story order."""
        return [r for s in sorted(k for k in self.by_shot if k < shot) for r in self.by_shot[s]]

    def of_entity(self, entity_id: str, before: int) -> list[Reference]:
        refs = self._by_entity.get(entity_id, [])
        return refs[: bisect.bisect_left([_shot(r) for r in refs], before)] if refs else []

    def recent(self, before: int, per_entity: int = 32) -> list[Reference]:
        """Each entity's latest keyframes of earlier shots: the candidates a shot may condition on
        besides the registered blueprints (older looks are the episodic memory's business)."""
        return [r for entity in self._by_entity for r in self.of_entity(entity, before)[-per_entity:]]


def _shot(ref: Reference) -> int:
    return int(ref.shot or 0)


class KeyframeWriter:
    """Extract a shot's keyframes and store them as harvested references of the entities they show.

    StoryMem drops a keyframe that is > 0.9 similar to one already in memory. Our memory is
    per entity, so the check is per entity too: a frame of the forest is a duplicate for the
    forest, but the first frame of Aria in the forest is new for Aria and is kept for her."""

    def __init__(
        self,
        library: Library,
        *,
        face_match_threshold: float | None = None,
        config: KeyframeConfig | None = None,
        bank: KeyframeBank | None = None,
    ):
        from .thresholds import face_threshold

        self.library = library
        self.config = config or KeyframeConfig()
        self.embed = frame_embed(library)
        self.bank = bank
        self._image = image_embedder(library)
        self._face = face_embedder(library)
        # a keyframe shows a character when a face in it is that person, by the face embedder's own scale
        if face_match_threshold is None and self._face is not None:
            face_match_threshold = face_threshold(self._face)
        self.face_match_threshold = face_match_threshold if face_match_threshold is not None else 0.0

    def write_back(
        self,
        story_id: str,
        index: int,
        frames: np.ndarray,
        result: RetrievalResult,
        *,
        exclude: frozenset[str] = frozenset(),
        source: Source = "harvested",
    ) -> list[Reference]:
        """Store the shot's new keyframes for the entities they show, in one append; ``exclude``:
        entity ids the continuity guard rejected in this shot (their keyframes would teach drift)."""
        keyframes = extract_keyframes(frames, embed=self.embed, config=self.config)
        if not keyframes:
            return []
        key = self._image.column_name if self._image is not None else "_frame"
        bank = self.bank or KeyframeBank(self.library, story_id)
        self._fill_vectors(bank.before(index), key)
        chosen: list[LibraryKeyframe] = []
        for kf in keyframes:
            vector = np.asarray(kf.vector, dtype=np.float32)
            shown, faces = [], {}
            for entity, face in self.attribute(kf.image, result):
                seen = [r.vectors[key] for r in bank.of_entity(entity.id, index) if key in r.vectors]
                if entity.id in exclude or (seen and _max_cosine(vector, seen) > self.config.memory_dedup):
                    continue
                shown.append(entity)
                if face is not None:
                    faces[entity.id] = face
            chosen.append(LibraryKeyframe(kf.image, kf.frame_index, shown, faces))
        written = self.library.add_keyframes(story_id, index, chosen, source=source)
        for ref in written:  # the duplicate check of later shots reads this vector from the bank
            ref.vectors.setdefault(key, np.asarray(next(k.vector for k in keyframes if k.frame_index == ref.frame)))
        if self.bank is not None and source == "harvested":  # rejected frames are never memory
            self.bank.add(written)
        return written

    def _fill_vectors(self, earlier: list[Reference], key: str) -> None:
        """Give every earlier keyframe a vector under ``key`` (embedded once, where the store holds
        none from this embedder)."""
        missing = {r.id: r for r in earlier if key not in r.vectors}
        if missing:
            loaded = self.library.references(ids=list(missing), with_images=True)
            vectors = self.embed([np.asarray(r.pil()) for r in loaded]) if loaded else []
            for ref, vector in zip(loaded, vectors, strict=False):
                missing[ref.id].vectors[key] = np.asarray(vector)

    def attribute(self, image: np.ndarray, result: RetrievalResult) -> list[tuple[Entity, FaceMatch | None]]:
        """The shot's characters and location that the keyframe shows: a character is verified by
        face match where both the keyframe and the character's references have faces, and comes
        with the face that matched it (a group shot's largest face may be someone else's)."""
        places = [(h.entity, None) for h in result.hits if h.entity.kind == "location"]
        people = [h for h in result.hits if h.entity.kind == "character"]
        if self._face is None:
            return [(h.entity, None) for h in people] + places
        column = self._face.column_name
        found = [f for f in detect_faces(self._face, image) if f.vector is not None]
        kept: list[tuple[Entity, FaceMatch | None]] = []
        for hit in people:
            known = [r.vectors[column] for r in hit.references if column in r.vectors]
            if not known or not found:  # nothing to verify against: trust the cast
                kept.append((hit.entity, None))
                continue
            score, face = max(((max(float(np.dot(f.vector, k)) for k in known), f) for f in found), key=lambda t: t[0])
            if score >= self.face_match_threshold:
                box = face.face_box if face.face_box is not None else (0.0, 0.0, 0.0, 0.0)
                kept.append((hit.entity, (np.asarray(face.vector, dtype=np.float32), list(box))))
        return kept + places


def detect_faces(face: Embedder, image: np.ndarray) -> list[Embedding]:
    """Every face of an image where the embedder can find several, else its one (largest) face."""
    detect = getattr(face, "detect_faces", None)
    pil = Image.fromarray(image)
    return list(detect(pil)) if detect is not None else list(face.embed([pil]))


def _max_cosine(vector: np.ndarray, others: Sequence[np.ndarray]) -> float:
    return max(float(np.dot(vector, v) / (np.linalg.norm(v) * np.linalg.norm(vector) + 1e-12)) for v in others)
