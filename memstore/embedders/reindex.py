"""Fill an embedder's vector column for references that were stored before it was configured.

Each batch is embedded first and then written in one ``merge_insert`` on ``id`` (one Lance commit),
so a crash leaves every reference either with its new vector or without it, and running again
finishes the job: only references whose column is still empty are embedded (``force`` redoes all).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import VectorError
from ..validation import sql_in
from .base import Embedder, get_embedder

Progress = Callable[[int], None] | None


def add_embedder(library: Any, embedder: Any) -> Embedder:
    """Configure ``embedder`` for the library (kept when its column is already configured) and
    create its column; returns the built embedder the library now uses."""
    emb = get_embedder(embedder)
    current = list(library.embedders)
    for existing in current:
        if existing.column_name == emb.column_name:
            library.store.ensure_vector_column(emb, create=False)  # same column: must be the same embedder
            return existing
    load_model(emb)  # missing weights fail here, before the configuration or the schema change
    library.set_embedders([*current, emb])
    return emb


def load_model(embedder: Embedder) -> None:
    """Load the embedder's model now (those without a model have nothing to load)."""
    load = getattr(embedder, "load", None)
    if callable(load):
        load()


def pending(library: Any, embedder: Embedder, *, force: bool = False) -> list[Any]:
    """References of the library the embedder should (re)compute: empty column, right kind."""
    column = embedder.column_name
    refs = library.references(with_vectors=True)
    if embedder.modality == "face":
        refs = [r for r in refs if r.kind == "character"]
    return [r for r in refs if force or column not in r.vectors]


def reindex(
    library: Any, embedder: Any = None, *, batch_size: int = 32, force: bool = False, progress: Progress = None
) -> dict[str, int]:
    """Compute missing vectors for ``embedder`` (added to the library's configuration when new)
    or, without one, for every configured embedder. Returns column -> references written."""
    embedders = [add_embedder(library, embedder)] if embedder is not None else list(library.embedders)
    written: dict[str, int] = {}
    for emb in embedders:
        column = library.store.ensure_vector_column(emb)
        todo = pending(library, emb, force=force)
        written[column] = 0
        for start in range(0, len(todo), max(1, batch_size)):
            batch = todo[start : start + batch_size]
            written[column] += _reindex_batch(library, emb, column, batch)
            if progress is not None:
                progress(len(batch))
    return written


def _reindex_batch(library: Any, emb: Embedder, column: str, batch: list[Any]) -> int:
    ids = [r.id for r in batch]
    full = library.references(ids=ids, with_images=True, with_vectors=False)  # removed ones drop out
    results = emb.embed([r.pil() for r in full])
    rows = []
    for ref, res in zip(full, results, strict=False):
        if res.vector is None:
            continue  # no face: the column stays empty, as at registration
        vec = np.asarray(res.vector, dtype=np.float32)
        if vec.shape != (emb.ndims,) or not np.isfinite(vec).all():
            raise VectorError(f"embedder {emb.spec} returned a bad vector of shape {vec.shape}")
        box = ref.face_box if ref.face_box is not None else res.face_box
        quality = ref.quality if ref.quality is not None else res.quality
        rows.append((ref.id, vec, box, quality))
    if not rows:
        return 0
    data = pa.table(
        {
            "id": pa.array([r[0] for r in rows], pa.string()),
            column: pa.array([r[1].tolist() for r in rows], pa.list_(pa.float32(), emb.ndims)),
            "face_box": pa.array(
                [None if r[2] is None else [float(x) for x in r[2]] for r in rows], pa.list_(pa.float32())
            ),
            "quality": pa.array([None if r[3] is None else float(r[3]) for r in rows], pa.float32()),
        }
    )
    store = library.store
    with store.write_lock():
        # A reference removed while we embedded must not come back: update matches only.
        live = {
            r["id"]
            for r in store.references.search()
            .where(library._where(sql_in("id", [r[0] for r in rows])))
            .select(["id"])
            .limit(None)
            .to_list()
        }
        data = data.filter(pa.array([i in live for i in data.column("id").to_pylist()]))
        if data.num_rows:
            store.retry(lambda: store.references.merge_insert("id").when_matched_update_all().execute(data))
    return data.num_rows
