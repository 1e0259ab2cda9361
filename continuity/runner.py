"""StoryRunner: retrieve -> select memory -> prepare -> generate -> keyframes -> write back, per shot.

Resumable: each finished shot is recorded in the store's ``shots`` table under a hash of
everything that determines it (its script entry, the generator, the seed, what was retrieved and
remembered, and the previous shot's hash), and that row is written last. A rerun skips shots
whose hash is recorded and whose MP4 exists; an interrupted run loses no finished shot, and the
keyframes a crashed shot may have written are removed before it is generated again.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from memstore.errors import ScriptError
from memstore.library import Library
from memstore.schema import Entity, Reference, now
from memstore.validation import sql_str
from retrieval.memory import MemoryFrame, group_frames, select_memory
from retrieval.query import RetrievalResult, ShotQuery

from .story import StoryScript, shot_input_hash


@dataclass
class RunConfig:
    """How a story is run. Everything here enters each shot's input hash."""

    generator: str = "animatic"
    generator_options: dict[str, Any] = field(default_factory=dict)
    model: Optional[str] = None  # local weights for diffusers generators (continuity.generator_setup)
    adapter: Optional[str] = None  # IP-Adapter weights, or a LoRA for wan-m2v
    memory_policy: str = "relevant"
    memory_budget: int = 10
    width: int = 640
    height: int = 360
    fps: int = 12
    seed: int = 0
    consent_overrides: tuple[str, ...] = ()
    require_consent: bool = False
    register_cast: bool = True
    # cosine between a keyframe's face and a character's reference faces to attribute it; lenient on
    # purpose (dlib's usual same-person cut, 0.6 euclidean on unit vectors, is about 0.82 cosine)
    face_match_threshold: float = 0.55


@dataclass
class ShotRun:
    """What one shot produced (or what a resumed run found)."""

    index: int
    scene: int
    prompt: str
    input_hash: str
    video: Path
    result: RetrievalResult
    memory: list[tuple[MemoryFrame, str]]
    keyframes: list[Reference]
    provenance: Path
    skipped: bool = False
    seconds: float = 0.0
    frames: Optional[np.ndarray] = None


@dataclass
class StoryRun:
    story: StoryScript
    out_dir: Path
    shots: list[ShotRun]
    video: Optional[Path] = None
    report: Optional[Path] = None
    metrics: dict[str, Any] = field(default_factory=dict)


class StoryRunner:
    """Runs a story script against a library with one generator adapter."""

    def __init__(
        self,
        library: Library,
        out_dir: str | os.PathLike,
        config: Optional[RunConfig] = None,
        *,
        generator: Any = None,
        retriever: Any = None,
        progress: Optional[Callable[[int, int, str], None]] = None,
    ):
        self.library = library
        self.out_dir = Path(out_dir)
        self.config = config or RunConfig()
        self.generator = generator
        self.retriever = retriever
        self.progress = progress

    # --- set-up -------------------------------------------------------------------------------
    def _generator(self) -> Any:
        if self.generator is None:
            from .generator_setup import build_generator

            self.generator = build_generator(self.config.generator, self.library, model=self.config.model,
                                             adapter=self.config.adapter, options=self.config.generator_options)
        return self.generator

    def _retriever(self) -> Any:
        if self.retriever is None:
            from retrieval import Retriever

            self.retriever = Retriever(self.library)
        return self.retriever

    def ensure_cast(self, story: StoryScript) -> list[Entity]:
        """Every cast member must be (or become) an entity of the library."""
        entities = []
        base = Path(story.base_dir) if story.base_dir else Path(".")
        for member in story.cast:
            existing = self.library.find(member.ref or member.name)
            if existing is not None:
                entities.append(existing)
                continue
            if member.ref:
                raise ScriptError(f"cast member {member.name!r} refers to {member.ref!r}, which is not in library {self.library.name!r}")
            if not self.config.register_cast:
                raise ScriptError(f"cast member {member.name!r} is not in library {self.library.name!r}; register it first")
            entities.append(
                self.library.register(
                    member.name, member.kind, images=[str(p) for p in member.image_paths(base)],
                    aliases=member.aliases, description=member.description,
                )
            )
        return entities

    # --- the loop -----------------------------------------------------------------------------
    def run(self, story: StoryScript, *, stop_after: Optional[int] = None) -> StoryRun:
        from retrieval.context import StoryContext

        from .consent import check_rights

        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "shots").mkdir(exist_ok=True)
        self.ensure_cast(story)
        generator = self._generator()
        retriever = self._retriever()
        context = StoryContext()
        done = self._done_shots(story.id)
        runs: list[ShotRun] = []
        previous_hash = ""
        total = story.num_shots
        for index, scene, shot in story.iter_shots():
            if stop_after is not None and index >= stop_after:
                break
            started = time.perf_counter()
            location = shot.location or scene.location
            query = ShotQuery(
                prompt=shot.prompt, story_id=story.id, shot_index=index, cut=shot.cut,
                cast=tuple(shot.cast) if shot.cast else None, location=location,
                require_consent=self.config.require_consent,
            )
            result = retriever.retrieve(query, context)
            overrides = check_rights(
                [h.entity for h in result.hits], overrides=set(self.config.consent_overrides),
                require_consent=self.config.require_consent,
            )
            memory = self._select_memory(story.id, index, result)
            result = dataclasses.replace(
                result,
                memory=tuple(f.reference for f, _ in memory),
                memory_reasons=tuple(why for _, why in memory),
            )
            seed = shot.seed if shot.seed is not None else self.config.seed + index
            input_hash = shot_input_hash(shot, {
                "previous": previous_hash,
                "story": story.id,
                "index": index,
                "location": location,
                "generator": self.config.generator,
                "generator_options": self.config.generator_options,
                # other weights make other shots; absent without weights so earlier hashes still hold
                **({"weights": [self.config.model, self.config.adapter]}
                   if self.config.model or self.config.adapter else {}),
                "size": [self.config.width, self.config.height, self.config.fps],
                "seed": seed,
                "retrieved": [(h.entity.id, [r.id for r in h.references]) for h in result.hits],
                "memory": [r.id for r in result.memory],
                "overrides": [o.entity_id for o in overrides],
            })
            video = self.out_dir / "shots" / f"shot_{index:03d}.mp4"
            provenance_path = self.out_dir / "shots" / f"shot_{index:03d}.provenance.json"
            if done.get(index) == input_hash and video.exists() and provenance_path.exists():
                keyframes = self.library.references(source="harvested", story=story.id, with_vectors=False)
                runs.append(ShotRun(index, scene.index, shot.prompt, input_hash, video, result, memory,
                                    [k for k in keyframes if k.shot == index], provenance_path, skipped=True))
                context.update(result)
                previous_hash = input_hash
                if self.progress:
                    self.progress(index + 1, total, "resumed")
                continue
            self._forget_shot(story.id, index)
            timings = {"retrieve": time.perf_counter() - started}
            spec = self._shot_spec(story, index, shot, seed)
            t = time.perf_counter()
            conditioning = generator.prepare(spec, result)
            timings["prepare"] = time.perf_counter() - t
            t = time.perf_counter()
            output = generator.generate(spec, conditioning, seed)
            timings["generate"] = time.perf_counter() - t
            frames = np.asarray(output.frames)
            t = time.perf_counter()
            self._write_video(video, frames, output.fps)
            keyframes = self._write_back(story.id, index, frames, result, memory)
            timings["keyframes"] = time.perf_counter() - t
            manifest = self._provenance(story, index, scene, shot, input_hash, seed, result, keyframes, overrides,
                                        video, output, conditioning, timings)
            from .provenance import write_provenance

            write_provenance(provenance_path, manifest)
            self._record(story.id, index, input_hash, shot.prompt, seed, result, video, provenance_path)
            runs.append(ShotRun(index, scene.index, shot.prompt, input_hash, video, result, memory, keyframes,
                                provenance_path, seconds=time.perf_counter() - started, frames=frames))
            context.update(result)
            previous_hash = input_hash
            if self.progress:
                self.progress(index + 1, total, "generated")
        run = StoryRun(story, self.out_dir, runs)
        if runs:
            self._finish(run)
        return run

    # --- pieces -------------------------------------------------------------------------------
    def _shot_spec(self, story: StoryScript, index: int, shot: Any, seed: int) -> Any:
        from generators import ShotSpec

        num_frames = max(1, int(round(shot.duration * self.config.fps)))
        return ShotSpec(
            prompt=shot.prompt, num_frames=num_frames, width=self.config.width, height=self.config.height,
            fps=self.config.fps, seed=seed, shot_index=index, story_id=story.id,
        )

    def _select_memory(self, story_id: str, index: int, result: RetrievalResult) -> list[tuple[MemoryFrame, str]]:
        # Choose on metadata, then read images for the chosen frames only: a long story has
        # thousands of keyframes and each shot needs at most `memory_budget` of them.
        refs = [r for r in self.library.references(source="harvested", story=story_id, with_vectors=False)
                if r.shot is not None and r.shot < index]
        location = result.location
        chosen = select_memory(
            self.config.memory_policy, group_frames(refs),
            entity_ids=[h.entity.id for h in result.hits],
            location_id=location.entity.id if location else None,
            names={h.entity.id: h.entity.name for h in result.hits},
            budget=self.config.memory_budget,
        )
        loaded = {r.id: r for r in self.library.references(ids=[f.reference.id for f, _ in chosen], with_images=True)}
        return [(dataclasses.replace(f, references=(loaded[f.reference.id], *f.references[1:])), why)
                for f, why in chosen if f.reference.id in loaded]

    def _done_shots(self, story_id: str) -> dict[int, str]:
        table = self.library.store.shots
        rows = table.search().where(
            f"story_id = {sql_str(story_id)} AND library = {sql_str(self.library.name)}"
        ).select(["shot_index", "input_hash"]).limit(None).to_list()
        return {r["shot_index"]: r["input_hash"] for r in rows}

    def _forget_shot(self, story_id: str, index: int) -> None:
        """Remove what an earlier (crashed or changed) run left for this shot."""
        stale = [r.id for r in self.library.references(source="harvested", story=story_id, with_vectors=False) if r.shot == index]
        self.library.remove_references(stale)
        with self.library.store.write_lock():
            self.library.store.shots.delete(
                f"story_id = {sql_str(story_id)} AND library = {sql_str(self.library.name)} AND shot_index = {int(index)}"
            )

    def _write_video(self, path: Path, frames: np.ndarray, fps: float) -> None:
        from .video import write_mp4

        write_mp4(path, frames, fps)  # atomic: a temp file renamed into place

    def _frame_embed(self) -> Callable[[list[np.ndarray]], np.ndarray]:
        """Image embedder for keyframe similarity: the library's first image embedder."""
        from PIL import Image

        emb = self._image_embedder()
        if emb is None:
            from .keyframes import tiny_embed

            return tiny_embed
        return lambda frames: emb.embed_images([Image.fromarray(np.asarray(f)) for f in frames])

    def _image_embedder(self) -> Any:
        image_embedders = [e for e in self.library.embedders if e.modality == "image"]
        return image_embedders[0] if image_embedders else None

    def _face_embedder(self) -> Any:
        faces = [e for e in self.library.embedders if e.modality == "face"]
        return faces[0] if faces else None

    def _write_back(self, story_id: str, index: int, frames: np.ndarray, result: RetrievalResult,
                    memory: list[tuple[MemoryFrame, str]]) -> list[Reference]:
        """Extract keyframes and store them as harvested references of the entities they show.

        StoryMem drops a keyframe that is > 0.9 similar to one already in memory. Our memory is
        per entity, so the check is per entity too: a frame of the forest is a duplicate for the
        forest, but the first frame of Aria in the forest is new for Aria and is kept for her."""
        from .keyframes import KeyframeConfig, extract_keyframes

        config = KeyframeConfig()
        embed = self._frame_embed()
        keyframes = extract_keyframes(frames, embed=embed, config=config)
        if not keyframes:
            return []
        earlier = [r for r in self.library.references(source="harvested", story=story_id, with_images=False)
                   if r.shot is not None and r.shot < index]
        emb = self._image_embedder()
        column = emb.column_name if emb is not None else None
        key = column or "_frame"
        missing = {r.id: r for r in earlier if key not in r.vectors}
        if missing:  # no stored vector from this embedder: embed those images once
            loaded = self.library.references(ids=list(missing), with_images=True)
            for ref, vector in zip(loaded, embed([np.asarray(r.pil()) for r in loaded]) if loaded else []):
                missing[ref.id].vectors[key] = np.asarray(vector)
        written: list[Reference] = []
        for kf in keyframes:
            vector = np.asarray(kf.vector, dtype=np.float32)
            for entity in self._attribute(kf.image, result):
                seen = [r.vectors[key] for r in earlier if r.entity_id == entity.id and key in r.vectors]
                if seen and max(float(np.dot(vector, v) / (np.linalg.norm(v) * np.linalg.norm(vector) + 1e-12)) for v in seen) > config.memory_dedup:
                    continue
                written += self.library.add_images(
                    entity, [kf.image], source="harvested", story=story_id, shot=index, frames=[kf.frame_index],
                )
        return written

    def _attribute(self, image: np.ndarray, result: RetrievalResult) -> list[Entity]:
        """The shot's cast, with characters verified by face match where both sides have faces."""
        from PIL import Image

        entities = [h.entity for h in result.hits if h.entity.kind in ("character", "location")]
        face = self._face_embedder()
        if face is None:
            return entities
        column = face.column_name
        detect = getattr(face, "detect_faces", None)
        found = detect(Image.fromarray(image)) if detect else face.embed([Image.fromarray(image)])
        vectors = [np.asarray(f.vector) for f in found if f.vector is not None]
        kept = []
        for hit in result.hits:
            entity = hit.entity
            if entity.kind == "location":
                kept.append(entity)
                continue
            if entity.kind != "character":
                continue
            known = [r.vectors[column] for r in hit.references if column in r.vectors]
            if not known or not vectors:
                kept.append(entity)  # nothing to verify against: trust the cast
                continue
            best = max(float(np.dot(v, k)) for v in vectors for k in known)
            if best >= self.config.face_match_threshold:
                kept.append(entity)
        return kept

    def _provenance(self, story: StoryScript, index: int, scene: Any, shot: Any, input_hash: str, seed: int,
                    result: RetrievalResult, keyframes: list[Reference], overrides: Sequence[Any], video: Path,
                    output: Any, conditioning: Any, timings: dict[str, float]) -> Any:
        from .provenance import ConsentOverride, ShotManifest, output_file, uses_from_retrieval

        notes = []
        if keyframes:
            notes.append(f"{len(keyframes)} keyframe reference(s) written back: " + ", ".join(sorted({k.entity_id[:8] for k in keyframes})))
        return ShotManifest(
            story_id=story.id, shot_index=index, scene_index=scene.index, shot_in_scene=shot.index,
            input_hash=input_hash, prompt=shot.prompt, enriched_prompt=getattr(conditioning, "prompt", None),
            generator=self.config.generator, model_id=(getattr(output, "metadata", None) or {}).get("model_id")
            or getattr(self._generator(), "model_id", None), seed=seed,
            **uses_from_retrieval(result),
            consent_overrides=[ConsentOverride(entity_id=o.entity_id, name=o.name,
                                               reason=f"{o.reason}; overridden by the run at {o.overridden_at.isoformat()}")
                               for o in overrides],
            outputs=[output_file(video, base_dir=video.parent)],
            timings={k: round(v, 4) for k, v in timings.items()}, notes=notes,
        )

    def _record(self, story_id: str, index: int, input_hash: str, prompt: str, seed: int, result: RetrievalResult,
                video: Path, provenance: Path) -> None:
        row = {
            "story_id": story_id, "shot_index": index, "library": self.library.name, "input_hash": input_hash,
            "prompt": prompt, "generator": self.config.generator, "seed": seed,
            "retrieved": [h.entity.id for h in result.hits], "memory": [r.id for r in result.memory],
            "output": str(video), "provenance": provenance.read_text(), "created": now(),
        }
        with self.library.store.write_lock():
            self.library.store.retry(lambda: self.library.store.shots.add([row]))

    def _finish(self, run: StoryRun) -> None:
        """The story MP4, consistency metrics and the HTML report."""
        from .video import concat_mp4

        run.video = Path(concat_mp4(self.out_dir / "story.mp4", [s.video for s in run.shots], fps=self.config.fps))
        harvested = [r for r in self.library.references(source="harvested", story=run.story.id, with_images=True)
                     if r.shot is not None and r.shot in {s.index for s in run.shots}]
        entities = self.library.entities_by_id({r.entity_id for r in harvested} | {h.entity.id for s in run.shots for h in s.result.hits})
        appearances: dict[str, dict[int, list[np.ndarray]]] = {}
        for ref in harvested:
            name = entities[ref.entity_id].name if ref.entity_id in entities else ref.entity_id
            appearances.setdefault(name, {}).setdefault(ref.shot, []).append(np.asarray(ref.pil()))
        report = self._metrics(run, appearances, entities)
        run.metrics = report.to_json()
        (self.out_dir / "metrics.json").write_text(json.dumps(run.metrics, indent=2))
        run.report = self._report(run, appearances, report)

    def _metrics(self, run: StoryRun, appearances: dict[str, dict[int, list[np.ndarray]]], entities: dict[str, Entity]) -> Any:
        from PIL import Image

        from .metrics import consistency, face_embed_with

        characters = [e for e in entities.values() if e.kind == "character"]
        face = self._face_embedder()
        references: dict[str, list[np.ndarray]] = {}
        counts: dict[int, tuple[int, int]] = {}
        if face is not None:
            for entity in characters:
                references[entity.name] = [np.asarray(r.pil()) for r in self.library.references(entity, source="registered", with_images=True)]
            detect = getattr(face, "detect_faces", None)
            if detect is not None:
                for shot in run.shots:
                    frames = [np.asarray(k.pil()) for k in self.library.references(ids=[k.id for k in shot.keyframes], with_images=True)]
                    expected = len([h for h in shot.result.hits if h.entity.kind == "character"])
                    if frames:
                        detected = max(len([f for f in detect(Image.fromarray(fr)) if f.face_box is not None]) for fr in frames)
                        counts[shot.index] = (detected, expected)
        return consistency(
            appearances, embed=self._frame_embed(), face_embed=face_embed_with(face) if face is not None else None,
            references=references, character_counts=counts, face_entities=[e.name for e in characters],
        )

    def _report(self, run: StoryRun, appearances: dict[str, dict[int, list[np.ndarray]]], metrics: Any) -> Path:
        from .provenance import read_provenance
        from .report import ReportImage, ShotReport, write_report

        shots = []
        cuts = {index: shot.cut for index, _, shot in run.story.iter_shots()}
        for s in run.shots:
            manifest = read_provenance(s.provenance)
            keyframe_refs = self.library.references(ids=[k.id for k in s.keyframes], with_images=True) if s.keyframes else []
            unique = {(k.shot, k.frame): k for k in keyframe_refs}
            keyframes = [ReportImage(np.asarray(k.pil()), f"frame {k.frame}") for k in unique.values()]
            memory = [ReportImage(np.asarray(f.reference.pil()), f"shot {f.shot} frame {f.frame}: {why}") for f, why in s.memory]
            shots.append(ShotReport.from_manifest(manifest, s.provenance.parent, keyframes=keyframes, memory=memory,
                                                  cut=cuts.get(s.index, True)))
        return Path(write_report(self.out_dir, run.story, shots, metrics, entity_sheets=appearances,
                                 generator=self.config.generator))
