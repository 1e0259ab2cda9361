"""Library: one namespace of blueprints inside a store.

Every read is filtered by ``library = <name>`` (quoted by :func:`sql_str`), so nothing scoped to
one library returns another's rows. Every write is all-or-nothing for the entity it touches:
images are decoded, checked and embedded before anything is written; references are written
first and the entity row last, so the entity row is the commit marker.
"""

from __future__ import annotations

import builtins
import dataclasses
import numbers
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from .embedders import Embedder, Embedding, get_embedder
from .errors import (
    DuplicateEntityError,
    EntityNotFoundError,
    InvalidInputError,
    NotFoundError,
    VectorError,
)
from .images import EncodedImage, ImageInput, as_sequence, load_images
from .schema import REFERENCE_META_COLUMNS, Entity, Reference, Rights, new_id, now, readable_rows, reference_rows
from .store import Store
from .validation import (
    Source,
    clean_era,
    clean_file_name,
    clean_kind,
    clean_library,
    clean_name,
    clean_source,
    clean_tag,
    clean_text,
    clean_view,
    name_key,
    sql_in,
    sql_int_in,
    sql_str,
)

if TYPE_CHECKING:
    from .shots import ShotLog

Progress = Callable[[int], None] | None


def _reason(exc: Any) -> str:
    """The first problem of a pydantic ValidationError, as one line: where, and what was wrong."""
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err.get("loc", ()))
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


@dataclass
class PreparedEntity:
    """An entity with its references decoded and embedded, ready to write in one step."""

    entity: Entity
    references: list[Reference]


@dataclass
class Keyframe:
    """One keyframe to store for the entities it shows: ``faces`` maps a character's id to the
    (unit vector, box) of the face that proved it, when the frame has several faces."""

    image: ImageInput
    frame: int | None
    entities: Sequence[Entity]
    faces: Mapping[str, tuple[np.ndarray, Sequence[float]]] = field(default_factory=dict)


def _harvested_for(
    template: Reference, entity: Entity, face: tuple[np.ndarray, Sequence[float]] | None, face_columns: set[str]
) -> Reference:
    """The template (decoded and embedded once) as a reference of one entity: faces for characters only."""
    vectors = {c: v for c, v in template.vectors.items() if entity.kind == "character" or c not in face_columns}
    box = template.face_box if entity.kind == "character" else None
    if face is not None and entity.kind == "character":
        vectors.update({c: np.asarray(face[0], dtype=np.float32) for c in face_columns})
        box = [float(x) for x in face[1]]
    return template.model_copy(
        update={"id": new_id(), "entity_id": entity.id, "kind": entity.kind, "vectors": vectors, "face_box": box}
    )


def _embedded_before(known: Mapping[str, Embedding], refs: Sequence[Reference], column: str) -> list[Embedding]:
    """The given embeddings of these references' images, in their order; one missing is refused."""
    missing = [r.sha256 for r in refs if r.sha256 not in known]
    if missing:
        raise VectorError(f"no {column!r} embedding was given for image {missing[0][:12]}; embed it or give one")
    return [known[r.sha256] for r in refs]


class Library:
    """Register, read, update and remove blueprints of one library."""

    def __init__(self, store: Store, name: str = "default"):
        self.store = store
        self.name = clean_library(name)
        self._embedders: builtins.list[Embedder] | None = None

    def __repr__(self) -> str:
        return f"Library({self.name!r}, store={self.store.uri!r})"

    # --- configuration ------------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        return self.store.library_config(self.name)

    def configure(self, *, embedders: Sequence[Any] | None = None, index_factory: str | None = None) -> None:
        """Set which embedders index this library (configs or names) and the FAISS factory."""
        config = dict(self.config)
        if embedders is not None:
            config["embedders"] = [get_embedder(e).to_config() for e in embedders]
        if index_factory is not None:
            config["index_factory"] = index_factory
        self.store.set_library_config(self.name, config)
        self._embedders = None
        self.store.forget_indexes()

    @property
    def embedders(self) -> builtins.list[Embedder]:
        if self._embedders is None:
            self._embedders = [get_embedder(c) for c in self.config.get("embedders", [])]
        return self._embedders

    def set_embedders(self, embedders: Sequence[Embedder]) -> None:
        """Use these already-built embedder objects (e.g. with a model loaded) in this process."""
        self.configure(embedders=list(embedders))
        self._embedders = list(embedders)

    def embedder_for(self, column: str) -> Embedder:
        for emb in self.embedders:
            if emb.column_name == column:
                return emb
        raise InvalidInputError(
            f"no configured embedder writes column {column!r}; configured: {[e.column_name for e in self.embedders]}"
        )

    # --- reading ------------------------------------------------------------------------------
    def _where(self, *clauses: str) -> str:
        return " AND ".join([f"library = {sql_str(self.name)}", *clauses])

    def _entity_rows(self, *clauses: str, limit: int | None = None) -> builtins.list[dict[str, Any]]:
        query = self.store.entities.search().where(self._where(*clauses))
        return readable_rows(query.limit(limit).to_arrow())

    def find(self, name_or_id: str) -> Entity | None:
        """The entity with this id, name or alias (case-insensitive), or None."""
        if not isinstance(name_or_id, str) or not name_or_id.strip():
            return None
        key = name_key(name_or_id)
        rows = self._entity_rows(
            f"(id = {sql_str(name_or_id)} OR name_key = {sql_str(key)} OR array_has(alias_keys, {sql_str(key)}))",
        )
        if not rows:
            return None
        # An id or exact name beats an alias.
        rows.sort(key=lambda r: (r["id"] != name_or_id, r["name_key"] != key))
        return Entity.from_row(rows[0])

    def get(self, name_or_id: str) -> Entity:
        entity = self.find(name_or_id)
        if entity is None:
            raise EntityNotFoundError(
                f"no entity named {name_or_id!r} in library {self.name!r}; see: continuity list --library {self.name}"
            )
        return entity

    def __contains__(self, name_or_id: str) -> bool:
        return self.find(name_or_id) is not None

    def list(self, kind: str | None = None, tag: str | None = None) -> builtins.list[Entity]:
        clauses = []
        if kind is not None:
            clauses.append(f"kind = {sql_str(clean_kind(kind))}")
        if tag is not None:
            clauses.append(f"array_has(tags, {sql_str(clean_tag(tag))})")
        rows = self._entity_rows(*clauses)
        return sorted((Entity.from_row(r) for r in rows), key=lambda e: (e.kind, e.name.casefold()))

    def entity_stamps(self) -> dict[str, datetime]:
        """Each entity's ``updated``, by id: two columns, no entity built (50k entities: ~0.1 s
        against ~3 s for :meth:`list`). Every write of an entity moves its ``updated`` on."""
        table = self.store.entities.to_lance().to_table(columns=["id", "updated"], filter=self._where())
        return {row["id"]: row["updated"] for row in readable_rows(table)}

    def entities_by_id(self, ids: Iterable[str]) -> dict[str, Entity]:
        ids = list(dict.fromkeys(ids))
        out: dict[str, Entity] = {}
        for start in range(0, len(ids), 500):
            for row in self._entity_rows(sql_in("id", ids[start : start + 500])):
                out[row["id"]] = Entity.from_row(row)
        return out

    def references(
        self,
        entity: str | Entity | None = None,
        *,
        era: str | None = None,
        source: str | None = None,
        ids: Iterable[str] | None = None,
        entity_ids: Iterable[str] | None = None,
        story: str | None = None,
        with_images: bool = False,
        with_vectors: bool = True,
    ) -> builtins.list[Reference]:
        """References of this library, optionally of one entity (or a set of entity ids), era,
        source, story or reference-id set."""
        clauses = []
        if entity is not None:
            ent = entity if isinstance(entity, Entity) else self.get(entity)
            clauses.append(f"entity_id = {sql_str(ent.id)}")
        if entity_ids is not None:
            entity_ids = list(entity_ids)
            if not entity_ids:
                return []
            clauses.append(sql_in("entity_id", entity_ids))
        if era is not None:
            clauses.append(f"era = {sql_str(clean_era(era))}")
        if source is not None:
            clauses.append(f"source = {sql_str(clean_source(source))}")
        if story is not None:
            clauses.append(f"story = {sql_str(story)}")
        if ids is not None:
            ids = list(ids)
            if not ids:
                return []
            clauses.append(sql_in("id", ids))
        return self._reference_query(
            clauses, with_images=with_images, with_vectors=with_vectors, live_only=entity is None and entity_ids is None
        )

    def _reference_query(
        self, clauses: builtins.list[str], *, with_images: bool, with_vectors: bool, live_only: bool
    ) -> builtins.list[Reference]:
        vector_cols = list(self.store.vector_columns()) if with_vectors else []
        columns = REFERENCE_META_COLUMNS + (["image"] if with_images else []) + vector_cols
        query = self.store.references.search().where(self._where(*clauses)).select(columns).limit(None)
        rows = reference_rows(query.to_arrow(), vector_cols)
        if live_only:
            rows = self._live(rows)
        refs = [Reference.from_row(r, vector_cols) for r in rows]
        refs.sort(key=lambda r: (r.created, r.id))
        return refs

    def _live(self, rows: builtins.list[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
        """Drop reference rows whose entity row does not exist (yet, or any more): references are
        committed before their entity and deleted after it, and a crash in between leaves orphans
        that must stay invisible until :meth:`Store.repair` removes them. Read after the rows."""
        if not rows:
            return rows
        ids = self.store.entities.to_lance().to_table(columns=["id"], filter=self._where()).column("id").to_pylist()
        live = set(ids)
        return [r for r in rows if r["entity_id"] in live]

    def reference(self, ref_id: str, *, with_images: bool = True) -> Reference:
        refs = self.references(ids=[ref_id], with_images=with_images)
        if not refs:
            raise NotFoundError(f"no reference {ref_id!r} in library {self.name!r}")
        return refs[0]

    def keyframes(
        self,
        story: str,
        *,
        before: int | None = None,
        at: int | None = None,
        with_images: bool = False,
        with_vectors: bool = True,
    ) -> builtins.list[Reference]:
        """Harvested keyframes of one story: all, those of shots before ``before``, or of shot ``at``."""
        clauses = ["source = 'harvested'", f"story = {sql_str(clean_text(story, 'story id'))}"]
        if before is not None:
            clauses.append(f"shot < {int(before)}")
        if at is not None:
            clauses.append(f"shot = {int(at)}")
        return self._reference_query(clauses, with_images=with_images, with_vectors=with_vectors, live_only=True)

    @property
    def shots(self) -> ShotLog:
        """The shot log of this library's story runs."""
        from .shots import ShotLog

        return ShotLog(self)

    def images(self, ref_ids: Iterable[str]) -> dict[str, bytes]:
        """The encoded image bytes of these references, by id (one read for all)."""
        ids = list(dict.fromkeys(ref_ids))
        if not ids:
            return {}
        rows = (
            self.store.references.search()
            .where(self._where(sql_in("id", ids)))
            .select(["id", "image"])
            .limit(None)
            .to_list()
        )
        return {r["id"]: r["image"] for r in rows}

    def text_search(self, prompt: str, *, k: int = 20, kind: str | None = None) -> builtins.list[tuple[str, float]]:
        """Entity ids of this library ranked by BM25 over name, aliases and description: (id, score)."""
        return [(h.entity_id, h.score) for h in self.store.text_index().search(self.name, prompt, k=k, kind=kind)]

    def count(self) -> dict[str, int]:
        entities = self.store.entities.count_rows(self._where())
        references = self.store.references.count_rows(self._where())
        return {"entities": entities, "references": references}

    # --- preparing writes (no store change) ---------------------------------------------------
    @staticmethod
    def _labelled(
        encoded: builtins.list[EncodedImage],
        images: Sequence[ImageInput],
        names: Sequence[str | None] | None,
        views: Sequence[str | None] | str | None,
    ) -> builtins.list[EncodedImage]:
        """Each image with the file name it came from (``names``, else a path's last part) and its
        view label (one for all, or one per image)."""
        count = len(encoded)
        names = list(names) if names is not None else [None] * count
        views = [views] * count if views is None or isinstance(views, str) else list(views)
        if len(names) != count or len(views) != count:
            raise InvalidInputError(f"got {len(names)} names and {len(views)} views for {count} images; give one each")
        sources = as_sequence(images)
        out = []
        for enc, source, name, view in zip(encoded, sources, names, views, strict=True):
            if name is None and isinstance(source, (str, os.PathLike)):
                name = os.fspath(source)
            out.append(dataclasses.replace(enc, name=clean_file_name(name), view=clean_view(view)))
        return out

    def _encode_all(self, images: Sequence[ImageInput]) -> builtins.list[EncodedImage]:
        # one batch, one pixel budget: decoded one at a time, each header checked against what is left
        return load_images(images)

    def _check_vectors(self, vectors: Mapping[str, Any], count: int) -> dict[str, np.ndarray]:
        columns = {c: int(m["dim"]) for c, m in self.store.vector_columns().items()}
        if vectors:  # columns of configured embedders count even before their first write
            columns.update({e.column_name: e.ndims for e in self.embedders})
        if not isinstance(vectors, Mapping):
            raise VectorError(f"vectors must map a column name to vectors, got {type(vectors).__name__}")
        out = {}
        for column, value in vectors.items():
            if column not in columns:
                raise VectorError(f"vector column {column!r} does not exist; known columns: {sorted(columns)}")
            dim = columns[column]
            try:
                arr = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise VectorError(f"vectors for {column!r} must be numbers, got {type(value).__name__}") from None
            if arr.ndim == 1:
                arr = arr[None, :]
            if arr.shape != (count, dim):
                raise VectorError(f"vectors for {column!r} have shape {arr.shape}, expected ({count}, {dim})")
            if not np.isfinite(arr).all():
                raise VectorError(f"vectors for {column!r} contain NaN or inf; give finite values")
            scale = np.abs(arr).max(axis=1, keepdims=True)  # scaling first: huge or tiny values keep their direction
            if (scale == 0).any():
                raise VectorError(f"vectors for {column!r} include an all-zero vector; it has no direction")
            arr = arr / scale
            out[column] = (arr / np.linalg.norm(arr, axis=1, keepdims=True)).astype(np.float32)
        return out

    def _make_references(
        self,
        entity: Entity,
        encoded: Sequence[EncodedImage],
        *,
        era: str,
        source: Source,
        story: str | None,
        shot: int | None,
        frames: Sequence[int | None],
        vectors: Mapping[str, np.ndarray],
        progress: Progress,
        embeddings: Mapping[str, Mapping[str, Embedding]] | None = None,
    ) -> builtins.list[Reference]:
        if not encoded:
            return []
        refs = [
            Reference(
                entity_id=entity.id,
                library=self.name,
                kind=entity.kind,
                era=era,
                source=source,
                image=enc.data,
                image_format=enc.format,
                width=enc.width,
                height=enc.height,
                sha256=enc.sha256,
                story=story,
                shot=shot,
                frame=frames[i],
                original_name=enc.name,
                view=enc.view,
            )
            for i, enc in enumerate(encoded)
        ]
        pil_images = None
        for emb in self.embedders:
            column = self.store.ensure_vector_column(emb, create=False)  # columns are added at write time
            if column in vectors:
                for ref, vec in zip(refs, vectors[column], strict=False):
                    ref.vectors[column] = vec
                continue
            if emb.modality == "face" and entity.kind != "character":
                continue  # faces index characters only
            if embeddings and column in embeddings:
                results = _embedded_before(embeddings[column], refs, column)
            else:
                if pil_images is None:
                    pil_images = [enc.to_pil() for enc in encoded]
                results = emb.embed(pil_images, progress=progress)
            for ref, res in zip(refs, results, strict=False):
                if res.vector is not None:
                    vec = np.asarray(res.vector, dtype=np.float32)
                    if vec.shape != (emb.ndims,) or not np.isfinite(vec).all():
                        raise VectorError(f"embedder {emb.spec} returned a bad vector of shape {vec.shape}")
                    ref.vectors[column] = vec
                if res.face_box is not None and ref.face_box is None:
                    ref.face_box = [float(x) for x in res.face_box]
                if res.quality is not None and ref.quality is None:
                    ref.quality = float(res.quality)
        for column, vecs in vectors.items():
            for ref, vec in zip(refs, vecs, strict=False):
                ref.vectors.setdefault(column, vec)
        return refs

    def prepare(
        self,
        name: str,
        kind: str,
        *,
        images: Sequence[ImageInput] = (),
        aliases: Sequence[str] = (),
        description: str = "",
        tags: Sequence[str] = (),
        attributes: Mapping[str, Any] | None = None,
        rights: Rights | Mapping[str, Any] | None = None,
        era: str = "default",
        vectors: Mapping[str, Any] | None = None,
        entity_id: str | None = None,
        progress: Progress = None,
        embeddings: Mapping[str, Mapping[str, Embedding]] | None = None,
        names: Sequence[str | None] | None = None,
        views: Sequence[str | None] | str | None = None,
    ) -> PreparedEntity:
        """Validate, decode and embed an entity and its images; writes nothing.

        ``embeddings`` (column -> image sha256 -> :class:`Embedding`) are what the configured
        embedders already made of these images elsewhere (batch ingest's workers): those columns
        are not embedded again, and their results are checked like fresh ones."""
        from pydantic import ValidationError

        kind = clean_kind(kind)
        era = clean_era(era)
        if rights is not None and not isinstance(rights, Rights):
            try:
                rights = Rights(**dict(rights))
            except ValidationError as exc:
                raise InvalidInputError(f"bad rights for {name!r}: {_reason(exc)}") from None
        try:
            entity = Entity(
                id=entity_id or new_id(),
                library=self.name,
                kind=kind,
                name=clean_name(name),
                aliases=list(aliases),
                description=description or "",
                tags=list(tags),
                attributes=dict(attributes or {}),
                rights=rights or Rights(),
            )
        except ValidationError as exc:
            raise InvalidInputError(f"bad entity {name!r}: {_reason(exc)}") from None
        if name_key(entity.name) in {name_key(a) for a in entity.aliases}:
            entity.aliases = [a for a in entity.aliases if name_key(a) != name_key(entity.name)]
        encoded = self._dedupe(self._labelled(self._encode_all(images), images, names, views))
        checked = self._check_vectors(vectors or {}, len(encoded))
        refs = self._make_references(
            entity,
            encoded,
            era=era,
            source="registered",
            story=None,
            shot=None,
            frames=[None] * len(encoded),
            vectors=checked,
            progress=progress,
            embeddings=embeddings,
        )
        return PreparedEntity(entity, refs)

    @staticmethod
    def _dedupe(encoded: builtins.list[EncodedImage]) -> builtins.list[EncodedImage]:
        seen: dict[str, EncodedImage] = {}
        for enc in encoded:
            seen.setdefault(enc.sha256, enc)
        return list(seen.values())

    # --- writing ------------------------------------------------------------------------------
    def _taken_keys(self, exclude_id: str | None = None) -> dict[str, str]:
        """Every name and alias key in this library -> the entity name that holds it."""
        rows = (
            self.store.entities.search()
            .where(self._where())
            .select(["id", "name", "name_key", "alias_keys"])
            .limit(None)
            .to_list()
        )
        taken: dict[str, str] = {}
        for row in rows:
            if row["id"] == exclude_id:
                continue
            taken[row["name_key"]] = row["name"]
            for key in row["alias_keys"] or []:
                taken[key] = row["name"]
        return taken

    def _check_free(self, entity: Entity, exclude_id: str | None = None) -> None:
        taken = self._taken_keys(exclude_id)
        for label, value in [("name", entity.name)] + [("alias", a) for a in entity.aliases]:
            holder = taken.get(name_key(value))
            if holder is not None:
                raise DuplicateEntityError(
                    f"{label} {value!r} is already used by {holder!r} in library {self.name!r}; choose another or update {holder!r}"
                )

    def commit(self, prepared: Sequence[PreparedEntity]) -> builtins.list[Entity]:
        """Write prepared entities: all name checks first, then references, then entity rows."""
        prepared = list(prepared)
        if not prepared:
            return []
        with self.store.write_lock():
            taken = self._taken_keys()
            batch_keys: dict[str, str] = {}
            for item in prepared:
                for value in item.entity.names:
                    key = name_key(value)
                    holder = taken.get(key) or batch_keys.get(key)
                    if holder is not None:
                        raise DuplicateEntityError(
                            f"name {value!r} is already used by {holder!r} in library {self.name!r}; choose another"
                        )
                    batch_keys[key] = item.entity.name
            self._ensure_columns([r for item in prepared for r in item.references])
            refs = self._reference_rows([r for item in prepared for r in item.references])
            if refs:
                self.store.retry(lambda: self.store.references.add(refs))
            try:
                rows = [item.entity.to_row() for item in prepared]
                self.store.retry(lambda: self.store.entities.add(rows))
            except BaseException:
                ids = [item.entity.id for item in prepared]
                self.store.references.delete(self._where(sql_in("entity_id", ids)))
                raise
            self._compact()
        return [item.entity for item in prepared]

    def _reference_rows(self, refs: Sequence[Reference]) -> builtins.list[dict[str, Any]]:
        """Rows that all name every vector column (None where a reference has no vector): a batch's
        columns are read off its first row, so a first image without a face would otherwise drop
        the face vectors of every later image."""
        columns = list(self.store.vector_columns())
        rows = [r.to_row() for r in refs]
        for row in rows:
            for column in columns:
                row.setdefault(column, None)
        return rows

    def _compact(self) -> None:
        for name in ("entities", "references"):
            self.store.maybe_compact(name)

    def _ensure_columns(self, refs: Sequence[Reference]) -> None:
        needed = {c for r in refs for c in r.vectors}
        for emb in self.embedders:
            if emb.column_name in needed:
                self.store.ensure_vector_column(emb)

    def register(
        self, name: str, kind: str, *, images: Sequence[ImageInput] = (), progress: Progress = None, **fields: Any
    ) -> Entity:
        """Register an entity with its reference images; all or nothing."""
        prepared = self.prepare(name, kind, images=images, progress=progress, **fields)
        return self.commit([prepared])[0]

    def add_images(
        self,
        entity: str | Entity,
        images: Sequence[ImageInput],
        *,
        era: str = "default",
        source: str = "registered",
        story: str | None = None,
        shot: int | None = None,
        frames: Sequence[int | None] | None = None,
        vectors: Mapping[str, Any] | None = None,
        progress: Progress = None,
        names: Sequence[str | None] | None = None,
        views: Sequence[str | None] | str | None = None,
    ) -> builtins.list[Reference]:
        """Add reference images to an entity in one atomic append. ``names`` are the images' file
        names (a path's own is kept without it), ``views`` one view label for all or one per image.
        An image whose bytes the entity already has is not stored again: the existing reference is
        returned in its place."""
        ent = entity if isinstance(entity, Entity) else self.get(entity)
        era = clean_era(era)
        source = clean_source(source)
        encoded_all = self._labelled(self._encode_all(images), images, names, views)
        frames = list(frames) if frames is not None else [None] * len(encoded_all)
        if len(frames) != len(encoded_all):
            raise InvalidInputError(f"got {len(frames)} frame numbers for {len(encoded_all)} images")
        if story is not None:
            story = clean_text(story, "story id")
        for label, value in [("shot", shot), *(("frame", f) for f in frames)]:
            if value is not None and (
                not isinstance(value, numbers.Integral) or isinstance(value, bool) or not 0 <= value < 2**31
            ):
                raise InvalidInputError(f"{label} must be an integer from 0 to 2**31-1, got {value!r}")
        checked = self._check_vectors(vectors or {}, len(encoded_all))
        existing = {r.sha256: r for r in self.references(ent, with_vectors=False)}
        keep = []
        seen: set[str] = set()
        for i, enc in enumerate(encoded_all):
            if enc.sha256 in existing or enc.sha256 in seen:
                continue
            seen.add(enc.sha256)
            keep.append(i)
        new_refs = self._make_references(
            ent,
            [encoded_all[i] for i in keep],
            era=era,
            source=source,
            story=story,
            shot=shot,
            frames=[frames[i] for i in keep],
            vectors={c: v[keep] for c, v in checked.items()},
            progress=progress,
        )
        if new_refs:
            with self.store.write_lock():
                if self.find(ent.id) is None:
                    raise EntityNotFoundError(f"entity {ent.name!r} was removed meanwhile; nothing added")
                self._ensure_columns(new_refs)
                rows = self._reference_rows(new_refs)
                self.store.retry(lambda: self.store.references.add(rows))
                if source == "registered":  # readers cache an entity's blueprints until it changes
                    self._rewrite(self.get(ent.id))
        by_sha = {r.sha256: r for r in new_refs}
        return [by_sha.get(enc.sha256) or existing[enc.sha256] for enc in encoded_all]

    def add_keyframes(
        self,
        story: str,
        shot: int,
        keyframes: Sequence[Keyframe],
        *,
        source: Source = "harvested",
    ) -> builtins.list[Reference]:
        """Store a shot's keyframes as harvested references of the entities each shows, in ONE
        append: each image is decoded and embedded once whatever the number of entities it shows
        (a story loop writes this every shot). A keyframe may name, per character, the face that
        proved it (a group shot's largest face may be someone else's)."""
        story = clean_text(story, "story id")
        if not isinstance(shot, numbers.Integral) or isinstance(shot, bool) or not 0 <= shot < 2**31:
            raise InvalidInputError(f"shot must be an integer from 0 to 2**31-1, got {shot!r}")
        keyframes = [k for k in keyframes if k.entities]
        if not keyframes:
            return []
        encoded = self._encode_all([k.image for k in keyframes])
        # faces are read only when some keyframe shows a character
        kind = "character" if any(e.kind == "character" for k in keyframes for e in k.entities) else "location"
        face_reader = Entity.model_construct(id="", library=self.name, kind=kind, name="", rights=Rights())
        templates = self._make_references(
            face_reader,
            encoded,
            era="default",
            source=clean_source(source),
            story=story,
            shot=shot,
            frames=[k.frame for k in keyframes],
            vectors={},
            progress=None,
        )
        faces = {e.column_name for e in self.embedders if e.modality == "face"}
        refs = [
            _harvested_for(template, entity, keyframe.faces.get(entity.id), faces)
            for template, keyframe in zip(templates, keyframes, strict=True)
            for entity in keyframe.entities
        ]
        with self.store.write_lock():
            live = self.entities_by_id({r.entity_id for r in refs})
            refs = [r for r in refs if r.entity_id in live]  # an entity removed meanwhile gets nothing
            if refs:
                self._ensure_columns(refs)
                rows = self._reference_rows(refs)
                self.store.retry(lambda: self.store.references.add(rows))
        return refs

    def _rewrite(self, entity: Entity) -> Entity:
        entity.updated = now()
        row = entity.to_row()
        self.store.retry(lambda: self.store.entities.merge_insert("id").when_matched_update_all().execute([row]))
        return entity

    def update(self, entity: str | Entity, **fields: Any) -> Entity:
        """Change description, aliases, tags, attributes, rights or kind; ``name`` goes through :meth:`rename`."""
        allowed = {"description", "aliases", "tags", "attributes", "rights", "kind"}
        unknown = set(fields) - allowed
        if unknown:
            raise InvalidInputError(
                f"cannot update {sorted(unknown)}; updatable fields: {sorted(allowed)} (use rename for the name)"
            )
        from pydantic import ValidationError

        with self.store.write_lock():
            current = self.get(entity.id if isinstance(entity, Entity) else entity)
            data = current.model_dump()
            if "rights" in fields and isinstance(fields["rights"], Rights):
                fields["rights"] = fields["rights"].model_dump()
            data.update(fields)
            try:
                updated = Entity(**data)
            except ValidationError as exc:
                raise InvalidInputError(f"bad update of {current.name!r}: {_reason(exc)}") from None
            if updated.kind != current.kind:
                raise InvalidInputError("the kind of an entity cannot change; remove and register it again")
            self._check_free(updated, exclude_id=current.id)
            return self._rewrite(updated)

    def rename(self, entity: str | Entity, new_name: str, *, keep_alias: bool = True) -> Entity:
        """Rename; the old name stays as an alias so old scripts still resolve."""
        with self.store.write_lock():
            current = self.get(entity.id if isinstance(entity, Entity) else entity)
            new_name = clean_name(new_name)
            aliases = [a for a in current.aliases if name_key(a) != name_key(new_name)]
            if keep_alias and name_key(current.name) != name_key(new_name):
                aliases.append(current.name)
            updated = current.model_copy(update={"name": new_name, "aliases": aliases})
            self._check_free(updated, exclude_id=current.id)
            return self._rewrite(updated)

    def remove(self, entity: str | Entity) -> Entity:
        """Remove an entity with its references and cached tokens. The entity row goes first,
        so a crash in between leaves only orphans that :meth:`Store.repair` deletes."""
        with self.store.write_lock():
            current = self.get(entity.id if isinstance(entity, Entity) else entity)
            self.store.retry(lambda: self.store.entities.delete(self._where(f"id = {sql_str(current.id)}")))
            self.store.retry(lambda: self.store.references.delete(self._where(f"entity_id = {sql_str(current.id)}")))
            self.store.retry(lambda: self.store.tokens.delete(self._where(f"entity_id = {sql_str(current.id)}")))
        return current

    def remove_references(self, ref_ids: Iterable[str]) -> int:
        ids = list(ref_ids)
        if not ids:
            return 0
        with self.store.write_lock():
            gone = self.references(ids=ids, with_vectors=False)
            self.store.references.delete(self._where(sql_in("id", ids)))
            self.store.tokens.delete(self._where(sql_in("reference_id", ids)))
            owners = {r.entity_id for r in gone if r.source == "registered"}
            for entity in self.entities_by_id(owners).values():  # readers cache blueprints until they change
                self._rewrite(entity)
        return len(gone)

    # --- vector search ------------------------------------------------------------------------
    def search(
        self,
        vector: Any,
        column: str | None = None,
        *,
        k: int = 10,
        kind: str | None = None,
        with_images: bool = False,
    ) -> builtins.list[tuple[float, Reference]]:
        """Nearest references by inner product on normalised vectors, via the FAISS hot index."""
        if column is None:
            if not self.embedders:
                raise InvalidInputError("this library has no embedders configured; nothing to search")
            column = self.embedders[0].column_name
        try:
            with np.errstate(over="ignore"):  # values beyond float32 become inf, refused by the index
                query = np.asarray(vector, dtype=np.float32)
        except (TypeError, ValueError):
            raise VectorError(f"query vector must be numbers, got {type(vector).__name__}") from None
        if query.ndim == 2 and query.shape[0] == 1:
            query = query[0]
        if query.ndim != 1:
            raise VectorError(f"query vector has shape {query.shape}, expected one vector of shape (dim,)")
        if not isinstance(column, str):
            raise InvalidInputError(f"column must be a string, got {type(column).__name__}")
        if column not in self.store.vector_columns() and column in [e.column_name for e in self.embedders]:
            return []  # configured, but nothing has been written to its column yet
        index = self.store.index(self.name, column)
        scores, keys = index.search(query, k, kind=kind)
        keys = [int(x) for x in keys[0] if x >= 0]
        if not keys:
            return []
        columns = REFERENCE_META_COLUMNS + (["image"] if with_images else [])
        where = self._where(sql_int_in("key", keys))
        query = self.store.references.search().where(where).select(columns).limit(None)
        rows = {r["key"]: r for r in self._live(readable_rows(query.to_arrow()))}
        out = []
        for score, key in zip(scores[0], keys, strict=False):
            if key in rows:
                out.append((float(score), Reference.from_row(rows[key], [])))
        return out

    # --- export / import ----------------------------------------------------------------------
    def export(self, path: str | os.PathLike, progress: Progress = None, *, force: bool = False) -> dict[str, int]:
        """Write this library to one archive file; an existing file that is not an archive is
        replaced only with ``force``."""
        from .archive import export_library

        return export_library(self, path, progress=progress, force=force)
